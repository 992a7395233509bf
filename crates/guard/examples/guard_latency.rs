//! Guard latency: a full input-rail check (injection + PII + secrets) and output-rail check on
//! texts of a given size, repeated; prints p50 and p99 in microseconds as JSON. Run by
//! bench/guard_latency.sh.
//!
//!     cargo run --release -p prom-guard --example guard_latency -- 1024 2000

use std::time::Instant;

use prom_guard::{Guard, RailsConfig, Signals};

/// Ordinary chat text with a little PII in it, repeated to the size asked for.
const SAMPLE: &str = "Thanks for the update on the migration. I looked at the logs from the staging cluster and \
the errors started after the 2.4.1 deploy on 2024-03-18. Could you send the dashboard link to \
maria.lopez@example.org and call me on +44 20 7946 0958 if the fix slips? The order 48213-77 is \
unrelated. ";

fn main() {
    let mut args = std::env::args().skip(1);
    let size: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1024);
    let iters: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let rails = "input:\n  - {check: injection, action: block}\n  - {check: pii, action: redact}\n\
                 output:\n  - {check: pii, action: redact}\n";
    let guard = Guard::new(RailsConfig::from_yaml(rails).expect("rails"));
    let mut text = SAMPLE.repeat(size / SAMPLE.len() + 1);
    text.truncate(size);
    while !text.is_char_boundary(text.len()) {
        text.pop();
    }
    let policy = &guard.config.default;
    let mut times = Vec::with_capacity(iters);
    for i in 0..iters + iters / 10 {
        let t = Instant::now();
        let v = guard.check_input(policy, &text, &Signals::default()).expect("input rail");
        let o = guard.check_output(policy, &text, &Signals::default()).expect("output rail");
        let dt = t.elapsed().as_secs_f64() * 1e6;
        assert!(!v.blocked && !o.text.is_empty());
        if i >= iters / 10 {
            times.push(dt); // the first 10% warm caches
        }
    }
    times.sort_by(f64::total_cmp);
    let q = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    println!(
        "{{\"bytes\": {}, \"iters\": {iters}, \"p50_us\": {:.1}, \"p99_us\": {:.1}}}",
        text.len(),
        q(0.5),
        q(0.99)
    );
}
