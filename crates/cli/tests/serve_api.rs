//! `prom serve` over real HTTP: the OpenAI endpoints (chat and completions, streaming and not,
//! n > 1, logprobs, echo, batches), vLLM's tokenizer endpoints, errors, and `/metrics` afterwards.
//! One server for the whole file; each test starts from its own requests.

mod serve_common;

use std::sync::OnceLock;

use serde_json::{json, Value};
use serve_common::{Server, MODEL};

/// One server shared by the tests in this file, started on first use, killed at process exit.
fn server() -> &'static Server {
    static S: OnceLock<&'static Server> = OnceLock::new();
    S.get_or_init(|| Server::start_shared(&["--max-body-bytes", "100000", "--cors-origin", "https://app.example"]))
}

fn chat(content: &str, extra: Value) -> Value {
    let mut body = json!({"model": MODEL, "messages": [{"role": "user", "content": content}], "temperature": 0});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

fn tokenize(text: &str) -> Vec<u64> {
    let r = server().post("/tokenize", &json!({"prompt": text, "add_special_tokens": false}), None);
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["tokens"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap()).collect()
}

#[test]
fn chat_streaming_matches_non_streaming() {
    let s = server();
    let body = chat("Name a color.", json!({"max_tokens": 8, "ignore_eos": true}));
    let r = s.post("/v1/chat/completions", &body, None);
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["model"], MODEL);
    let text = v["choices"][0]["message"]["content"].as_str().unwrap().to_owned();
    assert!(!text.is_empty());
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 8);
    assert_eq!(v["usage"]["total_tokens"], v["usage"]["prompt_tokens"].as_u64().unwrap() + 8);

    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    sbody["stream_options"] = json!({"include_usage": true});
    let events = s.sse("/v1/chat/completions", &sbody);
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(events.iter().all(|e| e["object"] == "chat.completion.chunk"));
    let streamed: String =
        events.iter().filter_map(|e| e["choices"].get(0)?["delta"]["content"].as_str()).collect::<Vec<_>>().concat();
    assert_eq!(streamed, text, "greedy streaming and non-streaming differ");
    let finishes: Vec<&Value> =
        events.iter().filter_map(|e| e["choices"].get(0)).map(|c| &c["finish_reason"]).collect();
    assert_eq!(finishes.iter().filter(|f| !f.is_null()).count(), 1);
    let last = events.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["completion_tokens"], 8);
}

#[test]
fn request_ids_pass_through() {
    let r = ureq::post(&server().url("/v1/chat/completions"))
        .set("x-request-id", "test-req-42")
        .send_json(chat("Hi", json!({"max_tokens": 2})))
        .unwrap();
    assert_eq!(r.header("x-request-id"), Some("test-req-42"));
    let v: Value = r.into_json().unwrap();
    assert_eq!(v["id"], "chatcmpl-test-req-42");
    let fresh = server().get("/health");
    assert_eq!(fresh.request_id.map(|id| id.len()), Some(32), "a generated id");
    let odd = ureq::get(&server().url("/health")).set("x-request-id", &"x".repeat(500)).call().unwrap();
    assert_eq!(odd.header("x-request-id").map(str::len), Some(32), "an oversized id is replaced");
}

#[test]
fn n_greater_than_one() {
    let s = server();
    let body =
        chat("Tell me a word.", json!({"n": 3, "temperature": 1.0, "seed": 7, "max_tokens": 5, "ignore_eos": true}));
    let v = s.post("/v1/chat/completions", &body, None).json();
    let idx: Vec<u64> = v["choices"].as_array().unwrap().iter().map(|c| c["index"].as_u64().unwrap()).collect();
    assert_eq!(idx, vec![0, 1, 2]);
    assert_eq!(v["usage"]["completion_tokens"], 15);
    // Seeded: the same request gives the same choices.
    assert_eq!(s.post("/v1/chat/completions", &body, None).json()["choices"], v["choices"]);

    let body =
        json!({"prompt": "Once upon a time", "n": 2, "max_tokens": 4, "stream": true, "ignore_eos": true, "seed": 1});
    let events = s.sse("/v1/completions", &body);
    for i in 0..2 {
        let mine: Vec<&Value> = events.iter().map(|e| &e["choices"][0]).filter(|c| c["index"] == i).collect();
        assert_eq!(mine.iter().filter(|c| c["finish_reason"] == "length").count(), 1, "choice {i}: {events:?}");
    }
}

#[test]
fn chat_logprobs() {
    let s = server();
    let body = chat("Say hello.", json!({"max_tokens": 6, "logprobs": true, "top_logprobs": 3, "ignore_eos": true}));
    let v = s.post("/v1/chat/completions", &body, None).json();
    let content = v["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(content.len(), 6);
    let mut text = String::new();
    for c in content {
        let lp = c["logprob"].as_f64().unwrap();
        assert!(lp <= 0.0);
        let top = c["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        assert!(top.windows(2).all(|w| w[0]["logprob"].as_f64() >= w[1]["logprob"].as_f64()));
        // Greedy: the chosen token is the most likely one.
        assert_eq!(c["token"], top[0]["token"]);
        assert_eq!(c["logprob"], top[0]["logprob"]);
        let bytes: Vec<u8> = c["bytes"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap() as u8).collect();
        text.push_str(&String::from_utf8_lossy(&bytes));
    }
    assert_eq!(text, v["choices"][0]["message"]["content"].as_str().unwrap());
    // top_logprobs without logprobs is an error naming it.
    let bad = chat("x", json!({"top_logprobs": 2}));
    let e = s.post("/v1/chat/completions", &bad, None).error(400, &["top_logprobs"]);
    assert_eq!(e["param"], "top_logprobs");
}

#[test]
fn completions_streaming_matches_non_streaming_and_batches() {
    let s = server();
    let body = json!({"model": MODEL, "prompt": "The capital of France is", "max_tokens": 6, "temperature": 0, "ignore_eos": true});
    let v = s.post("/v1/completions", &body, None).json();
    assert_eq!(v["object"], "text_completion");
    let text = v["choices"][0]["text"].as_str().unwrap().to_owned();
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    let events = s.sse("/v1/completions", &sbody);
    let streamed: String = events.iter().map(|e| e["choices"][0]["text"].as_str().unwrap()).collect();
    assert_eq!(streamed, text);

    // A batch of texts and a batch of token-id lists: choice = prompt * n + i.
    let ids = tokenize("The capital of France is");
    let batch = json!({"prompt": ["The capital of France is", "Hello"], "n": 2, "max_tokens": 3, "temperature": 0, "ignore_eos": true});
    let v = s.post("/v1/completions", &batch, None).json();
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 4);
    assert_eq!(choices[0]["text"], choices[1]["text"], "greedy n=2 choices agree");
    assert_eq!(v["usage"]["completion_tokens"], 12);
    let by_ids = json!({"prompt": [ids, ids], "max_tokens": 6, "temperature": 0, "ignore_eos": true});
    let v = s.post("/v1/completions", &by_ids, None).json();
    // The string prompt added BOS where the model wants it; SmolLM2 adds none, so the ids agree.
    assert_eq!(v["choices"][0]["text"], text);
    assert_eq!(v["choices"][1]["text"], text);
}

#[test]
fn echo_with_prompt_logprobs_like_openai() {
    let s = server();
    let ids = tokenize("The capital of France is");
    let body = json!({"prompt": ids, "max_tokens": 1, "logprobs": 2, "echo": true, "temperature": 0});
    let v = s.post("/v1/completions", &body, None).json();
    let lp = &v["choices"][0]["logprobs"];
    let n = ids.len();
    assert_eq!(lp["tokens"].as_array().unwrap().len(), n + 1);
    assert!(lp["token_logprobs"][0].is_null() && lp["top_logprobs"][0].is_null(), "first entry is null: {lp}");
    for i in 1..=n {
        let x = lp["token_logprobs"][i].as_f64().unwrap();
        assert!(x <= 0.0);
        let top = lp["top_logprobs"][i].as_object().unwrap();
        // The top 2 plus the token itself.
        assert!((2..=3).contains(&top.len()), "{top:?}");
        assert!(top.values().any(|t| t.as_f64() == Some(x)));
    }
    let offsets: Vec<u64> = lp["text_offset"].as_array().unwrap().iter().map(|o| o.as_u64().unwrap()).collect();
    assert_eq!(offsets[0], 0);
    assert!(offsets.windows(2).all(|w| w[0] <= w[1]));
    let text = v["choices"][0]["text"].as_str().unwrap();
    assert!(text.starts_with("The capital of France is"), "{text}");

    // The generated token's logprob equals the echoed logprob of the same token in a longer prompt.
    let gen_tok = lp["tokens"][n].as_str().unwrap().to_owned();
    let gen_lp = lp["token_logprobs"][n].as_f64().unwrap();
    let mut longer = ids.clone();
    longer.extend(tokenize(&gen_tok));
    assert_eq!(longer.len(), n + 1, "{gen_tok:?} is one token");
    let body = json!({"prompt": longer, "max_tokens": 0, "logprobs": 0, "echo": true});
    let v = s.post("/v1/completions", &body, None).json();
    let lp = &v["choices"][0]["logprobs"];
    assert_eq!(lp["tokens"].as_array().unwrap().len(), n + 1, "max_tokens 0 echoes the prompt only");
    assert_eq!(v["usage"]["completion_tokens"], 0);
    let echoed = lp["token_logprobs"][n].as_f64().unwrap();
    assert!((echoed - gen_lp).abs() < 1e-3, "echoed {echoed} vs generated {gen_lp}");

    // Streaming echo, with and without logprobs: the same text and (flattened) the same logprobs.
    for logprobs in [json!(2), json!(null)] {
        let body = json!({"prompt": ids, "max_tokens": 3, "logprobs": logprobs, "echo": true, "temperature": 0,
            "n": 2, "ignore_eos": true});
        let whole = s.post("/v1/completions", &body, None).json();
        let mut sbody = body.clone();
        sbody["stream"] = json!(true);
        let events = s.sse("/v1/completions", &sbody);
        for i in 0..2u64 {
            let mine: Vec<&Value> = events.iter().map(|e| &e["choices"][0]).filter(|c| c["index"] == i).collect();
            let text: String = mine.iter().map(|c| c["text"].as_str().unwrap()).collect();
            assert_eq!(text, whole["choices"][i as usize]["text"].as_str().unwrap(), "choice {i}");
            if logprobs.is_null() {
                continue;
            }
            let flat: Vec<Value> =
                mine.iter().flat_map(|c| c["logprobs"]["token_logprobs"].as_array().unwrap().clone()).collect();
            assert_eq!(&Value::Array(flat), &whole["choices"][i as usize]["logprobs"]["token_logprobs"]);
            let offsets: Vec<Value> =
                mine.iter().flat_map(|c| c["logprobs"]["text_offset"].as_array().unwrap().clone()).collect();
            assert_eq!(&Value::Array(offsets), &whole["choices"][i as usize]["logprobs"]["text_offset"]);
        }
    }
}

#[test]
fn tokenizer_endpoints_in_vllm_shapes() {
    let s = server();
    let r = s.post(
        "/tokenize",
        &json!({"prompt": "Hello world", "add_special_tokens": false, "return_token_strs": true}),
        None,
    );
    let v = r.json();
    let tokens = v["tokens"].clone();
    assert_eq!(v["count"].as_u64().unwrap() as usize, tokens.as_array().unwrap().len());
    assert_eq!(v["max_model_len"], 8192);
    assert_eq!(v["token_strs"].as_array().unwrap().concat_str(), "Hello world");
    let v = s.post("/detokenize", &json!({"tokens": tokens}), None).json();
    assert_eq!(v["prompt"], "Hello world");
    let v = s.post("/tokenize", &json!({"messages": [{"role": "user", "content": "Hi"}]}), None).json();
    assert!(v["count"].as_u64().unwrap() > 3);
    let info = s.get("/tokenizer_info").json();
    let eos = info["eos_token"].as_str().unwrap();
    // lm-eval's remote tokenizer: eos_token_id = encode(eos_token)[0].
    assert_eq!(tokenize(eos).len(), 1);
    assert!(info["chat_template"].as_str().is_some_and(|t| t.contains("messages")));
    s.post("/detokenize", &json!({"tokens": [1, 99999999]}), None).error(400, &["tokens", "99999999", "49152"]);
}

trait ConcatStr {
    fn concat_str(&self) -> String;
}
impl ConcatStr for Vec<Value> {
    fn concat_str(&self) -> String {
        self.iter().map(|x| x.as_str().unwrap()).collect()
    }
}

#[test]
fn errors_are_openai_json_naming_field_limit_and_value() {
    let s = server();
    let c = "/v1/chat/completions";
    let e = s.post(c, &chat("x", json!({"temperature": "hot"})), None).error(400, &["temperature", "hot"]);
    assert_eq!(e["param"], "temperature");
    let e = s.post(c, &chat("x", json!({"top_p": 1.5})), None).error(400, &["top_p", "1.5"]);
    assert_eq!(e["param"], "top_p");
    s.post(c, &chat("x", json!({"n": 500})), None).error(400, &["`n`", "128", "500"]);
    s.post(c, &json!({"messages": []}), None).error(400, &["messages"]);
    s.post(c, &json!({"messages": [{"content": "no role"}]}), None).error(400, &["messages[0].role"]);
    let e = s.post(c, &chat("x", json!({"model": "gpt-9"})), None).error(404, &["gpt-9", MODEL]);
    assert_eq!(e["code"], "model_not_found");
    s.post("/v1/completions", &json!({"prompt": "x", "logprobs": 21}), None).error(400, &["logprobs", "20", "21"]);
    s.post("/v1/completions", &json!({"prompt": [1, -5]}), None).error(400, &["prompt", "-5"]);
    s.post("/v1/completions", &json!({"prompt": "x", "logit_bias": {"zz": 1}}), None).error(400, &["logit_bias", "zz"]);
    // The prompt against the context, with the numbers.
    let long: Vec<u32> = vec![42; 8000];
    s.post("/v1/completions", &json!({"prompt": long, "max_tokens": 500}), None).error(400, &["8000", "500", "8192"]);
    s.post_raw(c, b"{not json").error(400, &["not valid JSON"]);
    s.post_raw(c, b"[1,2]").error(400, &["JSON object"]);
    // Body over --max-body-bytes 100000.
    let big = json!({"prompt": "a".repeat(200_000)});
    s.post_raw("/v1/completions", big.to_string().as_bytes()).error(413, &["100000"]);
    s.get("/no/such/route").error(404, &["/no/such/route"]);
    s.request("DELETE", "/v1/models").error(405, &["DELETE"]);
    s.get("/v1/models/other").error(404, &["other"]);
}

#[test]
fn info_routes_and_openapi_covers_every_route() {
    let s = server();
    assert_eq!(s.get("/health").json()["status"], "ok");
    assert_eq!(s.get("/ready").json()["status"], "ready");
    assert!(s.get("/version").json()["version"].is_string());
    let models = s.get("/v1/models").json();
    assert_eq!(models["data"][0]["id"], MODEL);
    assert_eq!(s.get(&format!("/v1/models/{MODEL}")).json()["id"], MODEL);
    let doc = s.get("/openapi.json").json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 12);
    for (path, ops) in paths {
        let path = path.replace("{model}", MODEL);
        for method in ops.as_object().unwrap().keys() {
            let r = match method.as_str() {
                "get" => s.get(&path),
                "post" => s.post(&path, &json!({}), None),
                m => panic!("unexpected method {m}"),
            };
            assert!(r.status != 404 && r.status != 405 && r.status < 500, "{method} {path}: {} {}", r.status, r.text);
        }
    }
}

#[test]
fn metrics_after_requests() {
    let s = server();
    let v = s.post("/v1/completions", &json!({"prompt": "Hello", "max_tokens": 3, "ignore_eos": true}), None);
    assert_eq!(v.status, 200);
    let r = s.get("/metrics");
    assert!(r.content_type.starts_with("text/plain"));
    for name in [
        "prom_time_to_first_token_seconds",
        "prom_inter_token_latency_seconds",
        "prom_e2e_request_latency_seconds",
        "prom_request_queue_time_seconds",
    ] {
        assert!(r.text.contains(&format!("# TYPE {name} histogram")), "{name}");
    }
    let m = s.wait_metrics(10, "idle engine", |m| m["prom_num_requests_running"] == 0.0);
    assert!(m["prom_generation_tokens_total"] >= 3.0);
    assert!(m["prom_prompt_tokens_total"] >= 1.0);
    assert!(m["prom_time_to_first_token_seconds_count"] >= 1.0);
    assert!(m["prom_e2e_request_latency_seconds_count"] >= 1.0);
    assert!(m["prom_request_finished_total{finish_reason=\"length\"}"] >= 1.0);
    assert!(m["prom_http_requests_total{route=\"/v1/completions\",status=\"200\"}"] >= 1.0);
    assert_eq!(m["prom_num_requests_waiting"], 0.0);
    assert!(m["prom_kv_cache_blocks"] > 0.0);
    assert!((0.0..=1.0).contains(&m["prom_prefix_cache_hit_rate"]));
    let inf = m["prom_time_to_first_token_seconds_bucket{le=\"+Inf\"}"];
    assert_eq!(inf, m["prom_time_to_first_token_seconds_count"]);
}

#[test]
fn cors_for_the_configured_origin_only() {
    let r = ureq::get(&server().url("/v1/models")).set("Origin", "https://app.example").call().unwrap();
    assert_eq!(r.header("access-control-allow-origin"), Some("https://app.example"));
    let r = ureq::get(&server().url("/v1/models")).set("Origin", "https://evil.example").call().unwrap();
    assert_eq!(r.header("access-control-allow-origin"), None);
    let pre = ureq::request("OPTIONS", &server().url("/v1/chat/completions"))
        .set("Origin", "https://app.example")
        .set("Access-Control-Request-Method", "POST")
        .set("Access-Control-Request-Headers", "authorization,content-type")
        .call()
        .unwrap();
    assert_eq!(pre.header("access-control-allow-origin"), Some("https://app.example"));
    assert!(pre.header("access-control-allow-methods").is_some_and(|m| m.contains("POST")));
}

#[test]
fn logs_keep_request_ids_but_not_prompts() {
    let s = server();
    let secret = "zebra-unicorn-prompt-7731";
    let r = ureq::post(&s.url("/v1/completions"))
        .set("x-request-id", "log-check-1")
        .send_json(json!({"prompt": secret, "max_tokens": 2}))
        .unwrap();
    assert_eq!(r.status(), 200);
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !s.logs().contains("log-check-1") && std::time::Instant::now() < end {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let logs = s.logs();
    assert!(logs.contains("log-check-1"), "the request id is logged:\n{logs}");
    assert!(!logs.contains(secret), "prompt text leaked into the logs without --log-prompts:\n{logs}");
}
