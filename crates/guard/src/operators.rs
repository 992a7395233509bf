//! Anonymizing operators in Presidio's manner: replace (default `<TYPE>`), redact, mask, hash
//! (SHA-256 over text + salt), encrypt/decrypt (AES-GCM; Presidio uses AES-CBC, GCM also
//! authenticates) and keep. Applied right to left over non-overlapping findings.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes128Gcm, Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::finding::Finding;

/// How one finding's text is rewritten.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Operator {
    /// `new_value`, or `<TYPE>` when absent.
    Replace {
        #[serde(default)]
        new_value: Option<String>,
    },
    /// Removes the text.
    Redact,
    /// Replaces `chars_to_mask` characters (all when absent) with `masking_char`, from the start
    /// or from the end.
    Mask {
        #[serde(default = "star")]
        masking_char: char,
        #[serde(default)]
        chars_to_mask: Option<usize>,
        #[serde(default)]
        from_end: bool,
    },
    /// Lower-case hex SHA-256 of text + salt (the salt from the rails config's `hash_salt`).
    Hash,
    /// AES-GCM under the config's `encryption_key`: url-safe base64 of nonce ‖ ciphertext ‖ tag.
    Encrypt,
    Keep,
}

fn star() -> char {
    '*'
}

impl Default for Operator {
    fn default() -> Self {
        Operator::Replace { new_value: None }
    }
}

/// Key material the hash and encrypt operators need.
#[derive(Clone, Default)]
pub struct Secrets {
    pub hash_salt: Vec<u8>,
    pub key: Option<AeadKey>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets { .. }") // never print key material
    }
}

/// An AES-128 or AES-256 key.
#[derive(Clone)]
pub struct AeadKey(Vec<u8>);

impl AeadKey {
    /// From raw bytes: 16 (AES-128) or 32 (AES-256).
    pub fn new(bytes: Vec<u8>) -> Result<Self> {
        match bytes.len() {
            16 | 32 => Ok(Self(bytes)),
            n => Err(Error::Config(format!("`encryption_key` must be 16 or 32 bytes (AES-128/256). Given: {n} bytes"))),
        }
    }

    /// From `base64:...`, `hex:...`, or a 16/32-character passphrase used as is.
    pub fn parse(s: &str) -> Result<Self> {
        let bytes = if let Some(b) = s.strip_prefix("base64:") {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .map_err(|e| Error::Config(format!("`encryption_key` is not valid base64: {e}")))?
        } else if let Some(h) = s.strip_prefix("hex:") {
            decode_hex(h.trim()).ok_or_else(|| Error::Config("`encryption_key` is not valid hex".into()))?
        } else {
            s.as_bytes().to_vec()
        };
        Self::new(bytes)
    }

    pub fn encrypt(&self, plain: &str) -> String {
        let nonce_bytes: [u8; 12] = rand::random();
        let nonce = Nonce::from_slice(&nonce_bytes);
        // Encryption with a valid key length cannot fail (only lengths are checked by aes-gcm).
        let ct = match self.0.len() {
            16 => Aes128Gcm::new_from_slice(&self.0).ok().and_then(|c| c.encrypt(nonce, plain.as_bytes()).ok()),
            _ => Aes256Gcm::new_from_slice(&self.0).ok().and_then(|c| c.encrypt(nonce, plain.as_bytes()).ok()),
        }
        .unwrap_or_default();
        let mut out = nonce_bytes.to_vec();
        out.extend(ct);
        URL_SAFE_NO_PAD.encode(out)
    }

    pub fn decrypt(&self, token: &str) -> Result<String> {
        let raw =
            URL_SAFE_NO_PAD.decode(token.trim()).map_err(|e| Error::Decrypt(format!("not url-safe base64: {e}")))?;
        if raw.len() < 12 + 16 {
            return Err(Error::Decrypt(format!("{} bytes is too short for nonce + tag", raw.len())));
        }
        let (nonce, ct) = raw.split_at(12);
        let nonce = Nonce::from_slice(nonce);
        let plain = match self.0.len() {
            16 => Aes128Gcm::new_from_slice(&self.0).ok().and_then(|c| c.decrypt(nonce, ct).ok()),
            _ => Aes256Gcm::new_from_slice(&self.0).ok().and_then(|c| c.decrypt(nonce, ct).ok()),
        }
        .ok_or_else(|| Error::Decrypt("authentication failed (wrong key or altered token)".into()))?;
        String::from_utf8(plain).map_err(|_| Error::Decrypt("plaintext is not UTF-8".into()))
    }
}

pub fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Operator {
    /// The replacement for `text` (the finding's span), of type `type_name`.
    pub fn apply(&self, text: &str, type_name: &str, secrets: &Secrets) -> Result<String> {
        Ok(match self {
            Operator::Replace { new_value } => new_value.clone().unwrap_or_else(|| format!("<{type_name}>")),
            Operator::Redact => String::new(),
            Operator::Mask { masking_char, chars_to_mask, from_end } => {
                let n = text.chars().count();
                let k = chars_to_mask.unwrap_or(n).min(n);
                let masked = |i: usize| if *from_end { i >= n - k } else { i < k };
                text.chars().enumerate().map(|(i, c)| if masked(i) { *masking_char } else { c }).collect()
            }
            Operator::Hash => {
                let mut h = Sha256::new();
                h.update(text.as_bytes());
                h.update(&secrets.hash_salt);
                hex(&h.finalize())
            }
            Operator::Encrypt => {
                let key = secrets.key.as_ref().ok_or_else(|| {
                    Error::Config("the `encrypt` operator needs `encryption_key` in the rails config".into())
                })?;
                key.encrypt(text)
            }
            Operator::Keep => text.to_owned(),
        })
    }
}

/// Applies `op_for(finding)` to each finding of `text` (non-overlapping, as the analyzer returns
/// them) and returns the new text.
pub fn anonymize<'a>(
    text: &str,
    findings: &[Finding],
    secrets: &Secrets,
    op_for: impl Fn(&Finding) -> &'a Operator,
) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for f in findings {
        if f.start < at || f.end > text.len() {
            continue; // overlapping or stale: skip rather than corrupt the text
        }
        out.push_str(&text[at..f.start]);
        out.push_str(&op_for(f).apply(&text[f.start..f.end], f.kind.name(), secrets)?);
        at = f.end;
    }
    out.push_str(&text[at..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presidio_operators() {
        let s =
            Secrets { hash_salt: b"0123456789abcdef".to_vec(), key: Some(AeadKey::parse("0123456789abcdef").unwrap()) };
        let t = "4111111111111111";
        assert_eq!(Operator::default().apply(t, "CREDIT_CARD", &s).unwrap(), "<CREDIT_CARD>");
        assert_eq!(Operator::Redact.apply(t, "X", &s).unwrap(), "");
        let m = Operator::Mask { masking_char: '#', chars_to_mask: Some(12), from_end: false };
        assert_eq!(m.apply(t, "X", &s).unwrap(), "############1111");
        let m = Operator::Mask { masking_char: '*', chars_to_mask: Some(3), from_end: true };
        assert_eq!(m.apply("héllo", "X", &s).unwrap(), "hé***");
        // sha256("abc" + salt) computed independently with Python's hashlib.
        let h = Operator::Hash.apply("abc", "X", &s).unwrap();
        assert_eq!(h, "a98e029ed029d04e9897394ec35a4f73ccbe4fc01b386f19835ee5cbca762360");
        assert_ne!(h, Operator::Hash.apply("abd", "X", &s).unwrap());
        let enc = Operator::Encrypt.apply(t, "X", &s).unwrap();
        assert_ne!(enc, Operator::Encrypt.apply(t, "X", &s).unwrap(), "fresh nonce per call");
        assert_eq!(s.key.as_ref().unwrap().decrypt(&enc).unwrap(), t);
        let other = AeadKey::parse("fedcba9876543210fedcba9876543210").unwrap();
        assert!(other.decrypt(&enc).is_err());
        assert_eq!(Operator::Keep.apply(t, "X", &s).unwrap(), t);
        assert!(AeadKey::parse("short").is_err());
        assert!(Operator::Encrypt.apply(t, "X", &Secrets::default()).is_err());
    }
}
