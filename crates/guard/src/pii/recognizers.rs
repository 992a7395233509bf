//! The recognizer table: for each entity, its patterns (regex + base score), its validator and
//! its context words. Scores follow Presidio's conventions: a bare weak pattern scores below the
//! default threshold of 0.5 and needs a context word (+0.35) or a checksum (→ 1.0) to count.

use super::validators::{self as v, Validation};
use crate::finding::Entity;

pub struct PatternDef {
    pub name: &'static str,
    pub regex: &'static str,
    pub score: f32,
}

pub struct RecognizerDef {
    pub entity: Entity,
    pub patterns: &'static [PatternDef],
    pub validate: fn(&str) -> Validation,
    /// Words that raise the score when they appear shortly before the match.
    pub context: &'static [&'static str],
    /// Words that drop the match when they appear right before it ("version 1.2.3.4").
    pub negative: &'static [&'static str],
}

fn unknown(_: &str) -> Validation {
    Validation::Unknown
}

fn ip(s: &str) -> Validation {
    if s.contains(':') {
        v::ipv6(s)
    } else {
        v::ipv4(s)
    }
}

fn crypto(s: &str) -> Validation {
    if s.to_ascii_lowercase().starts_with("bc1") {
        v::bech32_address(s)
    } else {
        v::base58check_address(s)
    }
}

/// Phone numbers: 8 to 15 digits (E.164's limit), not one repeated digit.
fn phone(s: &str) -> Validation {
    let d: Vec<u8> = s.bytes().filter(u8::is_ascii_digit).collect();
    if !(8..=15).contains(&d.len()) || d.iter().all(|&b| b == d[0]) {
        Validation::Invalid
    } else {
        Validation::Unknown
    }
}

/// An IBAN pattern match is trimmed to the country's length before validation (see `Analyzer`).
fn iban(s: &str) -> Validation {
    v::iban(s)
}

pub const RECOGNIZERS: &[RecognizerDef] = &[
    RecognizerDef {
        entity: Entity::EmailAddress,
        patterns: &[PatternDef {
            name: "email",
            regex: r"\b[A-Za-z0-9][A-Za-z0-9._%+\-]*@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)+\b",
            score: 0.5,
        }],
        validate: v::email,
        context: &["email", "mail", "e-mail", "contact", "address"],
        negative: &[],
    },
    RecognizerDef {
        entity: Entity::CreditCard,
        patterns: &[PatternDef {
            name: "card (weak)",
            regex: r"\b(?:4\d{3}|5[1-5]\d{2}|2[2-7]\d{2}|6(?:011|5\d{2})|3[47]\d{2}|3(?:0[0-5]|[68]\d)\d|35\d{2})(?:[ \-]?\d{2,6}){2,4}\b",
            score: 0.3,
        }],
        validate: v::credit_card,
        context: &["credit", "card", "visa", "mastercard", "amex", "cc", "payment", "debit"],
        negative: &[],
    },
    RecognizerDef {
        entity: Entity::IbanCode,
        patterns: &[PatternDef {
            name: "iban",
            regex: r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b",
            score: 0.5,
        }],
        validate: iban,
        context: &["iban", "bank", "transaction", "account", "transfer"],
        negative: &[],
    },
    RecognizerDef {
        entity: Entity::UsSsn,
        patterns: &[
            PatternDef { name: "ssn (dashed)", regex: r"\b\d{3}-\d{2}-\d{4}\b", score: 0.5 },
            PatternDef { name: "ssn (spaced or dotted)", regex: r"\b\d{3}[ .]\d{2}[ .]\d{4}\b", score: 0.3 },
            PatternDef { name: "ssn (digits)", regex: r"\b\d{9}\b", score: 0.05 },
        ],
        validate: v::us_ssn,
        context: &["ssn", "social", "security", "ssns", "ss#", "ssid"],
        negative: &[],
    },
    RecognizerDef {
        entity: Entity::PhoneNumber,
        patterns: &[
            PatternDef {
                name: "phone (E.164 / international)",
                regex: r"(?:\+[1-9]\d{0,2}[ .\-]?|\b00[1-9]\d{0,2} )(?:\(\d{1,4}\)[ .\-]?)?\d{1,4}(?:[ .\-]?\d{2,4}){1,4}\b",
                score: 0.7,
            },
            PatternDef {
                name: "phone (NANP)",
                regex: r"(?:\(\b[2-9]\d{2}\)\s?|\b[2-9]\d{2}[ .\-])[2-9]\d{2}[ .\-]\d{4}\b",
                score: 0.6,
            },
            PatternDef {
                name: "phone (national, trunk 0)",
                regex: r"\b0\d{1,4}[ \-]\d{3,4}[ \-]?\d{3,4}\b",
                score: 0.4,
            },
            PatternDef { name: "phone (digits)", regex: r"\b\d{10,11}\b", score: 0.2 },
        ],
        validate: phone,
        context: &[
            "phone",
            "call",
            "tel",
            "telephone",
            "mobile",
            "cell",
            "fax",
            "number",
            "reach",
            "text",
            "whatsapp",
            "ring",
            "dial",
        ],
        negative: &["order", "invoice", "ticket", "ref", "tracking", "isbn", "id"],
    },
    RecognizerDef {
        entity: Entity::IpAddress,
        patterns: &[
            PatternDef {
                name: "ipv4",
                regex: r"\b(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\b",
                score: 0.6,
            },
            PatternDef {
                name: "ipv6",
                regex: r"(?i)(?:\b[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){7}\b|(?:\b[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){0,6})?::(?:[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){0,6}\b)?)",
                score: 0.6,
            },
        ],
        validate: ip,
        context: &["ip", "address", "host", "server", "ipv4", "ipv6", "from", "connect"],
        negative: &["version", "ver", "v", "build", "release", "sdk", "firmware", "oid"],
    },
    RecognizerDef {
        entity: Entity::MacAddress,
        patterns: &[
            PatternDef { name: "mac (colons)", regex: r"(?i)\b[0-9a-f]{2}(?::[0-9a-f]{2}){5}\b", score: 0.6 },
            PatternDef { name: "mac (dashes)", regex: r"(?i)\b[0-9a-f]{2}(?:-[0-9a-f]{2}){5}\b", score: 0.6 },
            PatternDef { name: "mac (cisco)", regex: r"(?i)\b[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}\b", score: 0.5 },
        ],
        validate: unknown,
        context: &["mac", "hardware", "ethernet", "wifi", "nic", "device"],
        negative: &[],
    },
    RecognizerDef {
        entity: Entity::Url,
        patterns: &[
            PatternDef { name: "url (scheme)", regex: r#"(?i)\b(?:https?|ftp|wss?)://[^\s<>"'`)\]]+"#, score: 0.85 },
            PatternDef {
                name: "url (www)",
                regex: r#"(?i)\bwww\.[a-z0-9\-]+(?:\.[a-z0-9\-]+)+(?:/[^\s<>"'`)\]]*)?"#,
                score: 0.7,
            },
            PatternDef {
                name: "url (domain)",
                regex: r#"(?i)\b[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?)*\.(?:com|org|net|io|dev|ai|app|edu|gov|info|biz|co\.uk|co|uk|de|fr|eu|us|ca)\b(?:/[^\s<>"'`)\]]*)?"#,
                score: 0.5,
            },
        ],
        validate: unknown,
        context: &["url", "link", "website", "site", "visit", "homepage", "domain"],
        negative: &[],
    },
    RecognizerDef {
        entity: Entity::Crypto,
        patterns: &[
            PatternDef { name: "bitcoin (base58check)", regex: r"\b[13][a-km-zA-HJ-NP-Z1-9]{25,34}\b", score: 0.5 },
            PatternDef { name: "bitcoin (bech32)", regex: r"(?i)\bbc1[ac-hj-np-z02-9]{8,87}\b", score: 0.5 },
        ],
        validate: crypto,
        context: &["bitcoin", "btc", "wallet", "crypto", "address"],
        negative: &[],
    },
    RecognizerDef {
        entity: Entity::AwsAccessKey,
        patterns: &[PatternDef {
            name: "aws access key id",
            regex: r"\b(?:AKIA|ASIA|ABIA|ACCA|AIDA|AROA)[0-9A-Z]{16}\b",
            score: 0.9,
        }],
        validate: unknown,
        context: &["aws", "access", "key", "secret", "amazon"],
        negative: &[],
    },
    RecognizerDef {
        entity: Entity::GithubToken,
        patterns: &[
            PatternDef { name: "github token", regex: r"\bgh[pousr]_[A-Za-z0-9]{36,251}\b", score: 0.95 },
            PatternDef { name: "github fine-grained pat", regex: r"\bgithub_pat_[A-Za-z0-9_]{60,255}\b", score: 0.95 },
        ],
        validate: unknown,
        context: &["github", "token", "gh"],
        negative: &[],
    },
    RecognizerDef {
        entity: Entity::GitlabToken,
        patterns: &[PatternDef {
            name: "gitlab token",
            regex: r"\bgl(?:pat|dt|rt|ptt|ft|soat|oas|cbt|imt|agent)-[A-Za-z0-9_\-]{20,}",
            score: 0.95,
        }],
        validate: unknown,
        context: &["gitlab", "token"],
        negative: &[],
    },
    RecognizerDef {
        entity: Entity::SlackToken,
        patterns: &[
            PatternDef {
                name: "slack token",
                regex: r"\bxox[abposr]-(?:[0-9A-Za-z]+-){1,4}[0-9A-Za-z]{8,}\b",
                score: 0.95,
            },
            PatternDef { name: "slack app token", regex: r"\bxapp-\d-[A-Z0-9]+-\d+-[a-z0-9]{16,}\b", score: 0.95 },
            PatternDef {
                name: "slack webhook",
                regex: r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/]{20,}",
                score: 0.95,
            },
        ],
        validate: unknown,
        context: &["slack", "token", "webhook"],
        negative: &[],
    },
    RecognizerDef {
        entity: Entity::PrivateKey,
        // An open block (no END yet: a stream still arriving) matches to the end of its body.
        patterns: &[PatternDef {
            name: "private key block",
            regex: r"-----BEGIN(?: [A-Z0-9]+)* PRIVATE KEY(?: BLOCK)?-----(?:[\s\S]*?-----END(?: [A-Z0-9]+)* PRIVATE KEY(?: BLOCK)?-----|[A-Za-z0-9+/=:,\-\s]*)",
            score: 1.0,
        }],
        validate: unknown,
        context: &[],
        negative: &[],
    },
    RecognizerDef {
        entity: Entity::Jwt,
        patterns: &[PatternDef {
            name: "jwt",
            regex: r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{16,}",
            score: 0.6,
        }],
        validate: v::jwt,
        context: &["jwt", "token", "bearer", "authorization"],
        negative: &[],
    },
];
