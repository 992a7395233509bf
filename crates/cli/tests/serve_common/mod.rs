//! Driving a real `prom serve` process over HTTP: start it on a free port with the default model
//! (SmolLM2-135M Q4_1 from the artifacts dir, offline, a 256 MiB KV cache), and small blocking
//! helpers for JSON, SSE and `/metrics`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
#[cfg(target_os = "linux")]
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const MODEL: &str = "smol";

pub fn gguf() -> PathBuf {
    let artifacts = std::env::var_os("PROM_ARTIFACTS").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/prometheus/artifacts")
    });
    let p = artifacts.join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(p.is_file(), "{} not found: run scripts/fetch-artifacts.sh (or set PROM_ARTIFACTS)", p.display());
    p
}

pub struct Server {
    pub child: Child,
    pub base: String,
    /// Everything the server wrote to stderr so far (shown when a check fails).
    pub log: Arc<Mutex<String>>,
}

impl Server {
    /// `prom serve` with the default model plus `extra` flags; waits until it listens.
    pub fn start(extra: &[&str]) -> Server {
        let model = gguf();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_prom"));
        // SAFETY: prctl in the forked child before exec; no allocation, no locks. The server dies
        // with the thread that started it, even when the test process is killed.
        #[cfg(target_os = "linux")]
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd
            .args(["serve", "--offline", "-m"])
            .arg(&model)
            .args(["--kv-cache-memory", "256MiB", "--port", "0", "--served-model-name", MODEL])
            .args(extra)
            .env_remove("PROM_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn prom serve");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.trim().to_owned());
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let base = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(b) => b,
            Err(_) => {
                let _ = child.kill();
                panic!("prom serve did not start:\n{}", log.lock().unwrap());
            }
        };
        Server { child, base, log }
    }

    /// A server that lives as long as the test process: started from a thread that never ends
    /// (the child gets SIGKILL when its starting thread exits, i.e. at process exit).
    pub fn start_shared(extra: &'static [&'static str]) -> &'static Server {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let s: &'static Server = Box::leak(Box::new(Server::start(extra)));
            let _ = tx.send(s);
            loop {
                std::thread::park();
            }
        });
        rx.recv().expect("server thread")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn logs(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// POST JSON; (status, body, headers we check).
    pub fn post(&self, path: &str, body: &Value, key: Option<&str>) -> Reply {
        let mut req = ureq::post(&self.url(path));
        if let Some(k) = key {
            req = req.set("Authorization", &format!("Bearer {k}"));
        }
        reply(req.send_json(body.clone()))
    }

    pub fn post_raw(&self, path: &str, body: &[u8]) -> Reply {
        reply(ureq::post(&self.url(path)).set("Content-Type", "application/json").send_bytes(body))
    }

    pub fn get(&self, path: &str) -> Reply {
        reply(ureq::get(&self.url(path)).call())
    }

    pub fn request(&self, method: &str, path: &str) -> Reply {
        reply(ureq::request(method, &self.url(path)).call())
    }

    /// Opens an SSE stream; the caller reads events and may drop it midway (a disconnect).
    pub fn stream(&self, path: &str, body: &Value, key: Option<&str>) -> Sse {
        let mut req = ureq::post(&self.url(path));
        if let Some(k) = key {
            req = req.set("Authorization", &format!("Bearer {k}"));
        }
        match req.send_json(body.clone()) {
            Ok(r) => {
                assert_eq!(r.content_type(), "text/event-stream");
                Sse { lines: BufReader::new(r.into_reader()) }
            }
            Err(e) => panic!("stream request failed: {e}\n{}", self.logs()),
        }
    }

    /// All events of a stream, `[DONE]` excluded (asserted to be last).
    pub fn sse(&self, path: &str, body: &Value) -> Vec<Value> {
        let mut s = self.stream(path, body, None);
        let mut out = vec![];
        loop {
            match s.next_event() {
                Some(Event::Json(v)) => out.push(v),
                Some(Event::Done) => break,
                None => panic!("stream ended without [DONE] after {out:?}"),
            }
        }
        assert!(s.next_event().is_none(), "events after [DONE]");
        out
    }

    /// `/metrics` samples: `name{labels}` → value.
    pub fn metrics(&self) -> HashMap<String, f64> {
        let r = self.get("/metrics");
        assert_eq!(r.status, 200);
        parse_metrics(&r.text)
    }

    /// Polls `/metrics` until `ok` holds (or panics after `secs`).
    pub fn wait_metrics(
        &self,
        secs: u64,
        what: &str,
        ok: impl Fn(&HashMap<String, f64>) -> bool,
    ) -> HashMap<String, f64> {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            let m = self.metrics();
            if ok(&m) {
                return m;
            }
            if Instant::now() > end {
                panic!("{what}: not reached in {secs} s; metrics:\n{}", self.get("/metrics").text);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child process.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits for the process to exit; its exit code.
    pub fn wait_exit(&mut self, secs: u64) -> Option<i32> {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return st.code();
            }
            if Instant::now() > end {
                panic!("prom serve still running after {secs} s:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn parse_metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

pub struct Reply {
    pub status: u16,
    pub text: String,
    pub retry_after: Option<String>,
    pub request_id: Option<String>,
    pub content_type: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// Asserts an OpenAI error with `status` whose message contains each of `needles`.
    #[track_caller]
    pub fn error(&self, status: u16, needles: &[&str]) -> Value {
        assert_eq!(self.status, status, "{}", self.text);
        let v = self.json();
        let e = &v["error"];
        let msg = e["message"].as_str().unwrap_or_else(|| panic!("no error.message: {v}"));
        assert!(e["type"].is_string(), "{v}");
        for n in needles {
            assert!(msg.contains(n), "error message {msg:?} lacks {n:?}");
        }
        e.clone()
    }
}

fn reply(r: Result<ureq::Response, ureq::Error>) -> Reply {
    let resp = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("request failed: {e}"),
    };
    let status = resp.status();
    let retry_after = resp.header("retry-after").map(String::from);
    let request_id = resp.header("x-request-id").map(String::from);
    let content_type = resp.content_type().to_owned();
    let mut text = String::new();
    resp.into_reader().read_to_string(&mut text).expect("read body");
    Reply { status, text, retry_after, request_id, content_type }
}

pub enum Event {
    Json(Value),
    Done,
}

pub struct Sse {
    lines: BufReader<Box<dyn Read + Send + Sync>>,
}

impl Sse {
    /// The next `data:` event; `None` when the stream ends.
    pub fn next_event(&mut self) -> Option<Event> {
        let mut line = String::new();
        loop {
            line.clear();
            if self.lines.read_line(&mut line).ok()? == 0 {
                return None;
            }
            if let Some(data) = line.trim_end().strip_prefix("data: ") {
                if data == "[DONE]" {
                    return Some(Event::Done);
                }
                return Some(Event::Json(serde_json::from_str(data).expect("SSE data is JSON")));
            }
        }
    }
}
