//! `prom serve` under pressure, over real HTTP: API keys, the bounded queue (429 + Retry-After),
//! client disconnects freeing their KV blocks, and SIGTERM draining in-flight requests.

mod serve_common;

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::json;
use serve_common::{Event, Server};

const KEY: &str = "sk-test-one";

/// A generation that runs until stopped: long enough to outlive any check here.
fn long(stream: bool) -> serde_json::Value {
    json!({"prompt": "Count to a thousand:", "max_tokens": 4000, "ignore_eos": true, "stream": stream})
}

#[test]
fn api_keys_queue_limit_and_disconnects() {
    let dir = std::env::temp_dir().join(format!("prom-serve-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let keys = dir.join("keys.txt");
    std::fs::File::create(&keys).unwrap().write_all(b"# keys\nsk-from-file\n\n").unwrap();
    // One running slot and one waiting slot: the third sequence is refused.
    let s = Server::start(&[
        "--api-key",
        KEY,
        "--api-key-file",
        keys.to_str().unwrap(),
        "--max-num-seqs",
        "1",
        "--max-queue",
        "1",
    ]);
    let _ = std::fs::remove_dir_all(&dir);
    let small = json!({"prompt": "Hi", "max_tokens": 2});

    // API keys: 401 JSON without or with a wrong key; either configured key works.
    let e = s.post("/v1/completions", &small, None).error(401, &["API key"]);
    assert_eq!(e["code"], "invalid_api_key");
    s.post("/v1/completions", &small, Some("sk-wrong")).error(401, &["Incorrect API key"]);
    s.post("/v1/completions", &small, Some("sk-test-one-longer")).error(401, &[]);
    assert_eq!(s.post("/v1/completions", &small, Some(KEY)).status, 200);
    assert_eq!(s.post("/v1/completions", &small, Some("sk-from-file")).status, 200);
    assert_eq!(s.get("/v1/models").status, 401);
    for open in ["/health", "/ready", "/metrics", "/version", "/openapi.json"] {
        assert_eq!(s.get(open).status, 200, "{open} needs no key");
    }

    // Fill the running slot and the queue; the next request gets 429 with Retry-After.
    let mut a = s.stream("/v1/completions", &long(true), Some(KEY));
    let mut b = s.stream(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 4000, "ignore_eos": true, "stream": true}),
        Some(KEY),
    );
    assert!(matches!(a.next_event(), Some(Event::Json(_))));
    assert!(matches!(b.next_event(), Some(Event::Json(_))));
    let r = s.post("/v1/completions", &small, Some(KEY));
    let e = r.error(429, &["capacity", "2"]);
    assert_eq!(e["type"], "rate_limit_error");
    let secs: u64 = r.retry_after.expect("Retry-After header").parse().unwrap();
    assert!((1..=60).contains(&secs));
    // A request larger than the whole capacity is a 400, not a 429 that could never succeed.
    let big_n = json!({"prompt": "Hi", "max_tokens": 2, "n": 3});
    s.post("/v1/completions", &big_n, Some(KEY)).error(400, &["3 sequences", "capacity of 2"]);
    let m = s.wait_metrics(20, "one running, one waiting", |m| {
        m["prom_num_requests_running"] == 1.0 && m["prom_num_requests_waiting"] == 1.0
    });
    assert_eq!(m["prom_server_requests_in_flight"], 2.0);
    assert!(m["prom_kv_cache_usage_ratio"] > 0.0);
    assert!(m["prom_http_requests_total{route=\"/v1/completions\",status=\"429\"}"] >= 1.0);

    // Read a few tokens, then disconnect both: their requests are aborted and their blocks freed.
    for _ in 0..3 {
        assert!(matches!(a.next_event(), Some(Event::Json(_))));
    }
    drop(a);
    drop(b);
    let m = s.wait_metrics(20, "disconnects abort and free blocks", |m| {
        m["prom_num_requests_running"] == 0.0
            && m["prom_num_requests_waiting"] == 0.0
            && m["prom_server_requests_in_flight"] == 0.0
            && m["prom_kv_cache_usage_ratio"] == 0.0
    });
    assert!(m["prom_request_finished_total{finish_reason=\"abort\"}"] >= 2.0);

    // A non-streaming client that gives up (read timeout) is aborted too.
    let agent = ureq::AgentBuilder::new().timeout_read(Duration::from_millis(500)).build();
    let r = agent.post(&s.url("/v1/completions")).set("Authorization", &format!("Bearer {KEY}")).send_json(long(false));
    assert!(r.is_err(), "the request should have timed out on the client");
    s.wait_metrics(20, "a non-streaming disconnect aborts", |m| {
        m["prom_num_requests_running"] == 0.0 && m["prom_server_requests_in_flight"] == 0.0
    });
    assert_eq!(s.post("/v1/completions", &small, Some(KEY)).status, 200, "capacity is back");
}

#[test]
fn sigterm_drains_in_flight_requests_then_exits() {
    let mut s = Server::start(&["--shutdown-timeout", "60", "--log-prompts"]);
    let body = json!({"prompt": "Once upon a time, said the logged prompt", "max_tokens": 48, "ignore_eos": true, "stream": true});
    let mut st = s.stream("/v1/completions", &body, None);
    assert!(matches!(st.next_event(), Some(Event::Json(_))));
    s.signal(libc::SIGTERM);
    // The in-flight stream runs to its end.
    let (mut tokens_text, mut finish) = (String::new(), None);
    loop {
        match st.next_event() {
            Some(Event::Json(v)) => {
                let c = &v["choices"][0];
                tokens_text.push_str(c["text"].as_str().unwrap_or(""));
                if !c["finish_reason"].is_null() {
                    finish = Some(c["finish_reason"].clone());
                }
            }
            Some(Event::Done) => break,
            None => panic!("stream cut during the drain:\n{}", s.logs()),
        }
    }
    assert_eq!(finish, Some(json!("length")));
    assert_eq!(s.wait_exit(30), Some(0), "clean exit after the drain:\n{}", s.logs());
    // New connections are refused once it is gone.
    assert!(ureq::get(&s.url("/health")).call().is_err());
    assert!(s.logs().contains("draining"), "{}", s.logs());
    assert!(s.logs().contains("said the logged prompt"), "--log-prompts logs the prompt:\n{}", s.logs());
}

#[test]
fn sigterm_gives_up_after_the_shutdown_timeout() {
    let mut s = Server::start(&["--shutdown-timeout", "1"]);
    let mut st = s.stream("/v1/completions", &long(true), None);
    assert!(matches!(st.next_event(), Some(Event::Json(_))));
    let t = Instant::now();
    s.signal(libc::SIGTERM);
    assert_eq!(s.wait_exit(20), Some(0), "{}", s.logs());
    assert!(t.elapsed() < Duration::from_secs(10), "took {:?}", t.elapsed());
    // The abandoned stream ends without [DONE].
    let mut done = false;
    while let Some(e) = st.next_event() {
        done |= matches!(e, Event::Done);
    }
    assert!(!done, "a 4000-token request cannot have finished within the 1 s drain");
    assert!(s.logs().contains("shutdown timeout"), "{}", s.logs());
}
