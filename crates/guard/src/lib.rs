//! Prometheus guardrails: PII and secret recognizers in Presidio's manner, anonymizing operators,
//! prompt-injection and jailbreak detection, canary tokens, and YAML rails that run them on
//! requests and responses — including streamed responses, scanned with lookback so a secret
//! split across chunks is caught before any of it is sent — with an audit log that never holds
//! the sensitive values.

pub mod canary;
mod error;
mod finding;
pub mod injection;
pub mod operators;
pub mod pii;

pub use error::{Error, Result};
pub use finding::{resolve_overlaps, Entity, Family, Finding, Kind};
pub use injection::InjectionDetector;
pub use operators::{anonymize, AeadKey, Operator, Secrets};
pub use pii::Analyzer;

pub mod audit;
pub mod config;
pub mod perplexity;
pub mod rails;
pub mod stream;

pub use audit::{AuditContext, AuditLog};
pub use config::{Action, Check, CheckKind, Policy, RailsConfig};
pub use rails::{Decision, Guard, Rail, Signals, Verdict};
pub use stream::{StreamOut, StreamScanner};
