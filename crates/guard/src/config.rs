//! The rails YAML: input and output rails, each a list of checks with a threshold and an action,
//! a default policy plus profiles chosen by API key or route, operators per entity, key material.
//!
//! ```yaml
//! refusal: "Sorry, I can't help with that request."
//! hash_salt: "a-salt-of-16-bytes-or-more"
//! encryption_key_env: PROM_GUARD_KEY     # or encryption_key: "base64:..."
//! audit_log: /var/log/prom/guard.jsonl
//! stream_lookback: 256                    # bytes held back from a stream while scanning
//! operators:
//!   CREDIT_CARD: {type: mask, masking_char: "*", chars_to_mask: 12}
//!   EMAIL_ADDRESS: {type: hash}
//! input:
//!   - {check: injection, threshold: 0.5, action: block}
//!   - {check: pii, entities: [EMAIL_ADDRESS, US_SSN], action: redact}
//! output:
//!   - {check: secrets, action: redact}
//!   - {check: canary, action: block}
//! profiles:
//!   - name: internal
//!     api_keys: [sk-internal]
//!     input: [{check: injection, action: warn}]
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::finding::Entity;
use crate::operators::{AeadKey, Operator, Secrets};

pub const DEFAULT_REFUSAL: &str = "I'm sorry, but I can't help with that request.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Refuse the request (input) or stop the response (output).
    Block,
    /// Rewrite the findings with their operators and go on.
    Redact,
    /// Record (metrics, audit) and go on unchanged.
    Warn,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Block => "block",
            Action::Redact => "redact",
            Action::Warn => "warn",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CheckKind {
    /// PII and secrets (all entities unless `entities` narrows them).
    Pii,
    /// Only the secret entities (keys, tokens, private keys, JWTs).
    Secrets,
    Injection,
    /// The served model's perplexity of the prompt (input only; needs a server).
    Perplexity,
    /// A canary token embedded in the system prompt appears in the output (output only).
    Canary,
}

impl CheckKind {
    pub fn name(self) -> &'static str {
        match self {
            CheckKind::Pii => "pii",
            CheckKind::Secrets => "secrets",
            CheckKind::Injection => "injection",
            CheckKind::Perplexity => "perplexity",
            CheckKind::Canary => "canary",
        }
    }
}

/// One check of a rail.
#[derive(Debug, Clone)]
pub struct Check {
    pub kind: CheckKind,
    /// Findings scoring below this are ignored. For `perplexity`, the perplexity limit.
    pub threshold: f32,
    pub action: Action,
    /// For `pii`/`secrets`: the entity types to look for.
    pub entities: Option<Vec<Entity>>,
}

/// The rails that apply to one request.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub name: String,
    pub input: Vec<Check>,
    pub output: Vec<Check>,
}

impl Policy {
    pub fn needs_perplexity(&self) -> bool {
        self.input.iter().any(|c| c.kind == CheckKind::Perplexity)
    }

    pub fn wants_canary(&self) -> bool {
        self.output.iter().any(|c| c.kind == CheckKind::Canary)
    }
}

/// Which requests a profile applies to: any of its keys, and (when given) any of its routes.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    pub api_keys: Vec<String>,
    pub routes: Vec<String>,
}

impl Matcher {
    fn matches(&self, key: Option<&str>, route: &str) -> bool {
        let key_ok = self.api_keys.is_empty() || key.is_some_and(|k| self.api_keys.iter().any(|a| a == k));
        let route_ok = self.routes.is_empty() || self.routes.iter().any(|r| r == route);
        key_ok && route_ok
    }
}

/// A parsed, checked rails configuration.
#[derive(Debug, Clone)]
pub struct RailsConfig {
    pub refusal: String,
    pub secrets: Secrets,
    pub audit_log: Option<PathBuf>,
    pub stream_lookback: usize,
    pub operators: BTreeMap<Entity, Operator>,
    pub default: Policy,
    pub profiles: Vec<(Matcher, Policy)>,
}

impl RailsConfig {
    pub fn from_yaml(text: &str) -> Result<Self> {
        let raw: Raw = serde_yaml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        raw.resolve()
    }

    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.display().to_string(), source })?;
        Self::from_yaml(&text).map_err(|e| match e {
            Error::Config(m) => Error::Config(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// The policy for a request: the first profile whose keys and routes match, else the default.
    pub fn policy(&self, api_key: Option<&str>, route: &str) -> &Policy {
        self.profiles.iter().find(|(m, _)| m.matches(api_key, route)).map_or(&self.default, |(_, p)| p)
    }

    pub fn operator(&self, e: Entity) -> &Operator {
        const DEFAULT: Operator = Operator::Replace { new_value: None };
        self.operators.get(&e).unwrap_or(&DEFAULT)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    hash_salt: Option<String>,
    #[serde(default)]
    encryption_key: Option<String>,
    #[serde(default)]
    encryption_key_env: Option<String>,
    #[serde(default)]
    audit_log: Option<PathBuf>,
    #[serde(default)]
    stream_lookback: Option<usize>,
    #[serde(default)]
    operators: BTreeMap<String, Operator>,
    #[serde(default)]
    input: Vec<RawCheck>,
    #[serde(default)]
    output: Vec<RawCheck>,
    #[serde(default)]
    profiles: Vec<RawProfile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    check: String,
    #[serde(default)]
    threshold: Option<f32>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    entities: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: String,
    #[serde(default)]
    api_keys: Vec<String>,
    #[serde(default)]
    routes: Vec<String>,
    #[serde(default)]
    input: Option<Vec<RawCheck>>,
    #[serde(default)]
    output: Option<Vec<RawCheck>>,
}

fn checks(raw: &[RawCheck], rail: &str) -> Result<Vec<Check>> {
    raw.iter()
        .enumerate()
        .map(|(i, c)| {
            let at = format!("{rail}[{i}]");
            let kind = match c.check.as_str() {
                "pii" => CheckKind::Pii,
                "secrets" => CheckKind::Secrets,
                "injection" => CheckKind::Injection,
                "perplexity" if rail == "input" => CheckKind::Perplexity,
                "canary" if rail == "output" => CheckKind::Canary,
                other => {
                    return Err(Error::Config(format!(
                        "{at}.check must be one of pii, secrets, injection{}. Given: {other:?}",
                        if rail == "input" { ", perplexity" } else { ", canary" }
                    )))
                }
            };
            let action = match c.action.as_deref().unwrap_or("block") {
                "block" => Action::Block,
                "redact" => Action::Redact,
                "warn" => Action::Warn,
                other => {
                    return Err(Error::Config(format!("{at}.action must be block, redact or warn. Given: {other:?}")))
                }
            };
            if action == Action::Redact && !matches!(kind, CheckKind::Pii | CheckKind::Secrets | CheckKind::Canary) {
                return Err(Error::Config(format!(
                    "{at}: action redact needs findings to rewrite (pii, secrets, canary); {} can block or warn",
                    kind.name()
                )));
            }
            let default = if kind == CheckKind::Perplexity { 1000.0 } else { 0.5 };
            let threshold = c.threshold.unwrap_or(default);
            let bad = if kind == CheckKind::Perplexity { threshold <= 1.0 } else { !(0.0..=1.0).contains(&threshold) };
            if bad || !threshold.is_finite() {
                let want = if kind == CheckKind::Perplexity { "a perplexity > 1" } else { "in [0, 1]" };
                return Err(Error::Config(format!("{at}.threshold must be {want}. Given: {threshold}")));
            }
            let entities = match &c.entities {
                None => None,
                Some(list) => Some(
                    list.iter()
                        .map(|e| {
                            Entity::parse(e).ok_or_else(|| {
                                Error::Config(format!(
                                    "{at}.entities: unknown entity {e:?} (known: {})",
                                    entity_names()
                                ))
                            })
                        })
                        .collect::<Result<Vec<_>>>()?,
                ),
            };
            Ok(Check { kind, threshold, action, entities })
        })
        .collect()
}

fn entity_names() -> String {
    Entity::ALL.iter().map(|e| e.name()).collect::<Vec<_>>().join(", ")
}

impl Raw {
    fn resolve(self) -> Result<RailsConfig> {
        let hash_salt = match self.hash_salt {
            Some(s) if s.len() < 16 => {
                return Err(Error::Config(format!("hash_salt must be at least 16 bytes. Given: {} bytes", s.len())))
            }
            Some(s) => s.into_bytes(),
            None => rand::random::<[u8; 32]>().to_vec(),
        };
        let key = match (self.encryption_key, self.encryption_key_env) {
            (Some(_), Some(_)) => {
                return Err(Error::Config("give encryption_key or encryption_key_env, not both".into()))
            }
            (Some(k), None) => Some(AeadKey::parse(&k)?),
            (None, Some(var)) => {
                let k = std::env::var(&var).map_err(|_| {
                    Error::Config(format!("encryption_key_env: the environment variable {var} is not set"))
                })?;
                Some(AeadKey::parse(&k)?)
            }
            (None, None) => None,
        };
        let mut operators = BTreeMap::new();
        for (name, op) in self.operators {
            let e = Entity::parse(&name).ok_or_else(|| {
                Error::Config(format!("operators: unknown entity {name:?} (known: {})", entity_names()))
            })?;
            if op == Operator::Encrypt && key.is_none() {
                return Err(Error::Config(format!(
                    "operators.{name}: encrypt needs encryption_key or encryption_key_env"
                )));
            }
            operators.insert(e, op);
        }
        let default = Policy {
            name: "default".into(),
            input: checks(&self.input, "input")?,
            output: checks(&self.output, "output")?,
        };
        let mut profiles = vec![];
        for (i, p) in self.profiles.into_iter().enumerate() {
            if p.api_keys.is_empty() && p.routes.is_empty() {
                return Err(Error::Config(format!("profiles[{i}] ({}) needs api_keys or routes to match", p.name)));
            }
            let input = match &p.input {
                Some(c) => checks(c, "input")?,
                None => default.input.clone(),
            };
            let output = match &p.output {
                Some(c) => checks(c, "output")?,
                None => default.output.clone(),
            };
            profiles.push((Matcher { api_keys: p.api_keys, routes: p.routes }, Policy { name: p.name, input, output }));
        }
        let stream_lookback = self.stream_lookback.unwrap_or(256);
        if stream_lookback < 16 {
            return Err(Error::Config(format!("stream_lookback must be at least 16 bytes. Given: {stream_lookback}")));
        }
        Ok(RailsConfig {
            refusal: self.refusal.unwrap_or_else(|| DEFAULT_REFUSAL.into()),
            secrets: Secrets { hash_salt, key },
            audit_log: self.audit_log,
            stream_lookback,
            operators,
            default,
            profiles,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_policies_and_profiles() {
        let c = RailsConfig::from_yaml(
            "input:\n  - {check: injection, action: block}\n  - {check: pii, entities: [EMAIL_ADDRESS], action: redact}\n\
             output:\n  - {check: secrets, action: redact}\n\
             operators:\n  CREDIT_CARD: {type: mask, chars_to_mask: 12}\n\
             profiles:\n  - {name: internal, api_keys: [sk-in], input: []}\n  - {name: raw, routes: [/v1/completions], output: []}\n",
        )
        .unwrap();
        assert_eq!(c.default.input.len(), 2);
        assert_eq!(c.policy(Some("sk-in"), "/v1/chat/completions").name, "internal");
        assert!(c.policy(Some("sk-in"), "/v1/chat/completions").input.is_empty());
        assert_eq!(c.policy(Some("other"), "/v1/completions").name, "raw");
        assert_eq!(c.policy(None, "/v1/chat/completions").name, "default");
        assert!(matches!(c.operator(Entity::CreditCard), Operator::Mask { chars_to_mask: Some(12), .. }));
        assert_eq!(c.operator(Entity::EmailAddress), &Operator::Replace { new_value: None });
    }

    #[test]
    fn errors_name_the_field_and_value() {
        let e = |y: &str| RailsConfig::from_yaml(y).unwrap_err().to_string();
        assert!(e("input:\n  - {check: pii, action: shout}")
            .contains("input[0].action must be block, redact or warn. Given: \"shout\""));
        assert!(
            e("input:\n  - {check: pii, threshold: 1.5}").contains("input[0].threshold must be in [0, 1]. Given: 1.5")
        );
        assert!(e("output:\n  - {check: pii, entities: [NAME]}").contains("unknown entity \"NAME\""));
        assert!(e("input:\n  - {check: canary}").contains("input[0].check must be one of"));
        assert!(e("hash_salt: short").contains("at least 16 bytes"));
        assert!(e("operators:\n  JWT: {type: encrypt}").contains("encrypt needs encryption_key"));
        assert!(e("input:\n  - {check: injection, action: redact}").contains("action redact needs findings"));
        assert!(e("bogus: 1").contains("unknown field"));
    }
}
