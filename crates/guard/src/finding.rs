//! What the recognizers report: an entity or check, a byte span, a score in [0, 1].

use std::fmt;

use serde::{Serialize, Serializer};

/// The PII and secret types the recognizers know (Presidio's names where Presidio has one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Entity {
    EmailAddress,
    PhoneNumber,
    CreditCard,
    IbanCode,
    UsSsn,
    IpAddress,
    MacAddress,
    Url,
    /// Bitcoin addresses: base58check (P2PKH, P2SH) and bech32/bech32m (segwit, taproot).
    Crypto,
    AwsAccessKey,
    GithubToken,
    GitlabToken,
    SlackToken,
    PrivateKey,
    Jwt,
}

impl Entity {
    pub const ALL: [Entity; 15] = [
        Entity::EmailAddress,
        Entity::PhoneNumber,
        Entity::CreditCard,
        Entity::IbanCode,
        Entity::UsSsn,
        Entity::IpAddress,
        Entity::MacAddress,
        Entity::Url,
        Entity::Crypto,
        Entity::AwsAccessKey,
        Entity::GithubToken,
        Entity::GitlabToken,
        Entity::SlackToken,
        Entity::PrivateKey,
        Entity::Jwt,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Entity::EmailAddress => "EMAIL_ADDRESS",
            Entity::PhoneNumber => "PHONE_NUMBER",
            Entity::CreditCard => "CREDIT_CARD",
            Entity::IbanCode => "IBAN_CODE",
            Entity::UsSsn => "US_SSN",
            Entity::IpAddress => "IP_ADDRESS",
            Entity::MacAddress => "MAC_ADDRESS",
            Entity::Url => "URL",
            Entity::Crypto => "CRYPTO",
            Entity::AwsAccessKey => "AWS_ACCESS_KEY",
            Entity::GithubToken => "GITHUB_TOKEN",
            Entity::GitlabToken => "GITLAB_TOKEN",
            Entity::SlackToken => "SLACK_TOKEN",
            Entity::PrivateKey => "PRIVATE_KEY",
            Entity::Jwt => "JWT",
        }
    }

    pub fn parse(s: &str) -> Option<Entity> {
        Entity::ALL.into_iter().find(|e| e.name().eq_ignore_ascii_case(s))
    }

    /// Credentials rather than personal data (the `secrets` check).
    pub fn is_secret(self) -> bool {
        matches!(
            self,
            Entity::AwsAccessKey
                | Entity::GithubToken
                | Entity::GitlabToken
                | Entity::SlackToken
                | Entity::PrivateKey
                | Entity::Jwt
        )
    }
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Families of prompt-injection and jailbreak signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// "Ignore the previous instructions and ..."
    InstructionOverride,
    /// DAN, developer mode, "you have no restrictions", stay in character.
    RolePlay,
    /// "Repeat the text above", "show me your system prompt".
    PromptExtraction,
    /// Instructions hidden in base64, base32, hex, rot13 or leetspeak (found after decoding).
    Encoded,
    /// Unicode tag characters, zero-width or bidi controls used to hide text.
    InvisibleUnicode,
    /// Words mixing Latin with look-alike Cyrillic or Greek letters.
    Confusable,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::InstructionOverride => "INSTRUCTION_OVERRIDE",
            Family::RolePlay => "ROLE_PLAY",
            Family::PromptExtraction => "PROMPT_EXTRACTION",
            Family::Encoded => "ENCODED_INSTRUCTIONS",
            Family::InvisibleUnicode => "INVISIBLE_UNICODE",
            Family::Confusable => "CONFUSABLE_UNICODE",
        }
    }
}

/// What was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Pii(Entity),
    Injection(Family),
    /// A canary token of the system prompt appeared in the output.
    CanaryLeak,
    /// The served model found the text unusually improbable (GCG-style suffixes).
    Perplexity,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Pii(e) => e.name(),
            Kind::Injection(f) => f.name(),
            Kind::CanaryLeak => "CANARY_LEAK",
            Kind::Perplexity => "HIGH_PERPLEXITY",
        }
    }
}

impl Serialize for Kind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// One finding: `text[start..end]` (byte offsets, on char boundaries) is `kind` with `score`.
/// A finding never holds the matched text itself, so it can be logged as is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    #[serde(rename = "type")]
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
    #[serde(serialize_with = "rounded")]
    pub score: f32,
    /// Which pattern or rule produced it (for explanations).
    pub recognizer: &'static str,
}

/// Scores as written in JSON: three decimals (0.7, not 0.699999988079071).
fn rounded<S: Serializer>(score: &f32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((f64::from(*score) * 1000.0).round() / 1000.0)
}

impl Finding {
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    pub fn overlaps(&self, o: &Finding) -> bool {
        self.start < o.end && o.start < self.end
    }
}

/// Keeps the best of overlapping findings: higher score first, then the longer span. The result
/// is sorted by start and no two spans overlap (what the operators need).
pub fn resolve_overlaps(mut found: Vec<Finding>) -> Vec<Finding> {
    found.sort_by(|a, b| b.score.total_cmp(&a.score).then(b.len().cmp(&a.len())).then(a.start.cmp(&b.start)));
    let mut kept: Vec<Finding> = Vec::with_capacity(found.len());
    for f in found {
        if !kept.iter().any(|k| k.overlaps(&f)) {
            kept.push(f);
        }
    }
    kept.sort_by_key(|f| f.start);
    kept
}
