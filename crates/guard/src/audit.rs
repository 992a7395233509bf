//! The audit log: one JSON line per rail decision, appended (O_APPEND, one write per line) to a
//! file that is never rewritten. A line holds the request id, route, profile, rail, check,
//! action and each finding's type, span and score — never the matched text, nor a hash of it
//! (a hash of a 9-digit SSN is trivially reversed).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::error::{Error, Result};
use crate::rails::{Decision, Rail};

pub struct AuditLog {
    path: PathBuf,
    file: Mutex<File>,
}

/// Who a decision was about.
#[derive(Debug, Clone, Copy)]
pub struct AuditContext<'a> {
    pub request_id: &'a str,
    pub route: &'a str,
    pub profile: &'a str,
}

impl AuditLog {
    pub fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| Error::Audit { path: path.display().to_string(), source })?;
        Ok(Self { path: path.to_owned(), file: Mutex::new(file) })
    }

    pub fn record(&self, ctx: &AuditContext, rail: Rail, decisions: &[Decision]) -> Result<()> {
        if decisions.is_empty() {
            return Ok(());
        }
        let ts = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        let mut lines = String::new();
        for d in decisions {
            let line = json!({
                "ts_ms": ts as u64,
                "request_id": ctx.request_id,
                "route": ctx.route,
                "profile": ctx.profile,
                "rail": rail.name(),
                "check": d.check.name(),
                "action": d.action.name(),
                "findings": d.findings,
            });
            lines.push_str(&line.to_string());
            lines.push('\n');
        }
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        f.write_all(lines.as_bytes()).map_err(|source| Error::Audit { path: self.path.display().to_string(), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RailsConfig;
    use crate::rails::{Guard, Signals};

    #[test]
    fn audit_lines_never_hold_the_value() {
        let dir = std::env::temp_dir().join(format!("prom-guard-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let _ = std::fs::remove_file(&path);
        let g = Guard::new(RailsConfig::from_yaml("input:\n  - {check: pii, action: redact}\n").unwrap());
        let text = "ssn 536-22-1234, card 4111 1111 1111 1111, mail jane@example.com";
        let v = g.check_input(&g.config.default, text, &Signals::default()).unwrap();
        let log = AuditLog::open(&path).unwrap();
        let ctx = AuditContext { request_id: "r1", route: "/v1/chat/completions", profile: "default" };
        log.record(&ctx, Rail::Input, &v.decisions).unwrap();
        log.record(&ctx, Rail::Input, &v.decisions).unwrap();
        let written = std::fs::read_to_string(&path).unwrap();
        assert_eq!(written.lines().count(), 2, "appended, one line per decision");
        for secret in ["536-22-1234", "4111", "jane@example.com", "536221234"] {
            assert!(!written.contains(secret), "{secret} leaked into {written}");
        }
        let v: serde_json::Value = serde_json::from_str(written.lines().next().unwrap()).unwrap();
        assert_eq!(v["findings"].as_array().unwrap().len(), 3);
        assert_eq!(v["findings"][0]["type"], "US_SSN");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
