//! Output rails on a stream. Text is released only once it is `lookback` bytes behind the end
//! of what has arrived, and a finding that reaches the end of the buffer (it may still be
//! growing: half a token, a private-key block without its END line) holds everything from its
//! start. So a secret split across chunks is seen whole before any of it is sent, as long as it
//! is shorter than the lookback. Released text is scanned again as context (word boundaries,
//! context words), never re-emitted.

use crate::config::{Action, Policy};
use crate::error::Result;
use crate::finding::Finding;
use crate::rails::{Decision, Guard, Signals};

/// Bytes of released text kept as context for the next scan.
const CONTEXT: usize = 64;

pub struct StreamScanner<'g> {
    guard: &'g Guard,
    policy: &'g Policy,
    canary: Option<String>,
    lookback: usize,
    /// Released text kept for context (raw; never sent again).
    context: String,
    /// Received, not yet released.
    pending: String,
    blocked: bool,
    decisions: Vec<Decision>,
}

/// What to send after a chunk.
#[derive(Debug, Default, PartialEq)]
pub struct StreamOut {
    /// Text safe to send now (redactions applied).
    pub emit: String,
    /// A blocking check fired: send nothing more; end the response.
    pub blocked: bool,
}

impl<'g> StreamScanner<'g> {
    pub fn new(guard: &'g Guard, policy: &'g Policy, canary: Option<String>) -> Self {
        Self {
            guard,
            policy,
            canary,
            lookback: guard.config.stream_lookback,
            context: String::new(),
            pending: String::new(),
            blocked: false,
            decisions: vec![],
        }
    }

    /// Every check that fired so far (for metrics and the audit log), one entry per check.
    pub fn decisions(&self) -> &[Decision] {
        &self.decisions
    }

    pub fn push(&mut self, chunk: &str) -> Result<StreamOut> {
        if self.blocked {
            return Ok(StreamOut { emit: String::new(), blocked: true });
        }
        self.pending.push_str(chunk);
        self.step(false)
    }

    /// The end of the stream: everything left is scanned and released.
    pub fn finish(&mut self) -> Result<StreamOut> {
        if self.blocked {
            return Ok(StreamOut { emit: String::new(), blocked: true });
        }
        self.step(true)
    }

    fn step(&mut self, last: bool) -> Result<StreamOut> {
        let ctx = self.context.len();
        let scan = format!("{}{}", self.context, self.pending);
        let canary = self.canary.clone();
        let signals = Signals { perplexity: None, canary: canary.as_deref() };
        let mut redact: Vec<Finding> = vec![];
        let policy = self.policy;
        for check in &policy.output {
            // Findings wholly inside the released context were decided already.
            let found: Vec<Finding> =
                self.guard.findings(check, &scan, &signals).into_iter().filter(|f| f.end > ctx).collect();
            if found.is_empty() {
                continue;
            }
            self.note(check.kind, check.action, &found);
            match check.action {
                Action::Block => {
                    self.blocked = true;
                    return Ok(StreamOut { emit: String::new(), blocked: true });
                }
                Action::Redact => redact.extend(found),
                Action::Warn => {}
            }
        }
        // In pending coordinates; a finding reaching back into released text is clipped.
        let mut spans: Vec<(usize, usize)> =
            redact.iter().map(|f| (f.start.saturating_sub(ctx), f.end - ctx)).collect();
        spans.sort();
        let len = self.pending.len();
        let mut cut = if last { len } else { len.saturating_sub(self.lookback) };
        if !last {
            for &(s, e) in &spans {
                if e >= len {
                    cut = cut.min(s); // may still grow: hold it whole
                } else if s < cut && e > cut {
                    cut = e; // complete: release it (redacted) in one piece
                }
            }
        }
        while !self.pending.is_char_boundary(cut) {
            cut -= 1;
        }
        let released: Vec<Finding> = redact
            .into_iter()
            .filter(|f| f.end - ctx <= cut)
            .map(|mut f| {
                f.start = f.start.saturating_sub(ctx);
                f.end -= ctx;
                f
            })
            .collect();
        let raw: String = self.pending.drain(..cut).collect();
        let emit = if released.is_empty() { raw.clone() } else { self.guard.redact(&raw, released)? };
        self.context.push_str(&raw);
        if self.context.len() > CONTEXT {
            let mut from = self.context.len() - CONTEXT;
            while !self.context.is_char_boundary(from) {
                from += 1;
            }
            self.context.drain(..from);
        }
        Ok(StreamOut { emit, blocked: false })
    }

    fn note(&mut self, check: crate::config::CheckKind, action: Action, found: &[Finding]) {
        match self.decisions.iter_mut().find(|d| d.check == check) {
            Some(d) => d.findings.extend(found.iter().cloned()),
            None => self.decisions.push(Decision { check, action, findings: found.to_vec() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RailsConfig;

    const TOKEN: &str = "ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8";

    fn guard(yaml: &str) -> Guard {
        Guard::new(RailsConfig::from_yaml(yaml).unwrap())
    }

    fn run(g: &Guard, chunks: &[&str]) -> (String, bool) {
        let mut s = StreamScanner::new(g, &g.config.default, None);
        let mut sent = String::new();
        for c in chunks {
            let o = s.push(c).unwrap();
            sent.push_str(&o.emit);
            if o.blocked {
                return (sent, true);
            }
        }
        let o = s.finish().unwrap();
        sent.push_str(&o.emit);
        (sent, o.blocked)
    }

    #[test]
    fn secret_split_across_chunks_is_redacted_before_sending() {
        let g = guard("output:\n  - {check: secrets, action: redact}\n");
        let text = format!("Here is the token: {TOKEN} — keep it safe.");
        // Every way of cutting the text in two, and byte-sized chunks.
        for cut in 1..text.len() {
            if !text.is_char_boundary(cut) {
                continue;
            }
            let (sent, blocked) = run(&g, &[&text[..cut], &text[cut..]]);
            assert!(!blocked);
            assert_eq!(sent, "Here is the token: <GITHUB_TOKEN> — keep it safe.", "cut at {cut}");
        }
        let chars: Vec<String> = text.chars().map(String::from).collect();
        let refs: Vec<&str> = chars.iter().map(String::as_str).collect();
        assert_eq!(run(&g, &refs).0, "Here is the token: <GITHUB_TOKEN> — keep it safe.");
    }

    #[test]
    fn text_flows_once_past_the_lookback_and_blocks_stop_the_stream() {
        let g = guard("stream_lookback: 32\noutput:\n  - {check: secrets, action: block}\n");
        let mut s = StreamScanner::new(&g, &g.config.default, None);
        let first = s.push(&"word ".repeat(20)).unwrap();
        assert_eq!(first.emit.len(), 100 - 32, "all but the lookback is released");
        let o = s.push(&format!("and {}", &TOKEN[..10])).unwrap();
        assert!(!o.blocked);
        let o = s.push(&TOKEN[10..]).unwrap();
        assert!(o.blocked);
        assert!(!format!("{}{}", first.emit, o.emit).contains("ghp_"));
        assert_eq!(s.decisions().len(), 1);
    }

    #[test]
    fn an_open_private_key_block_is_held_until_it_ends() {
        let g = guard("stream_lookback: 16\noutput:\n  - {check: secrets, action: redact}\n");
        let body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n".repeat(8);
        let chunks = ["ok: -----BEGIN PRIVATE KEY-----\n", body.as_str(), "-----END PRIVATE KEY-----\n", "done"];
        let (sent, _) = run(&g, &chunks);
        assert_eq!(sent, "ok: <PRIVATE_KEY>\ndone");
    }
}
