//! The download path of `source::resolve`, against a fake hub on a local port that speaks the
//! three requests `hf-hub` makes: repo info (`/api/models/<repo>/revision/<rev>`), file metadata
//! (`/resolve/` with `Range: bytes=0-0`) and the ranged file download. No real network.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;

use prom_models::source::{resolve, ModelFiles, ResolveOptions};

const COMMIT: &str = "fedcba9876543210fedcba9876543210fedcba98";

/// repo id → files (name → contents).
type Repos = BTreeMap<&'static str, Vec<(&'static str, &'static str)>>;

/// Serves `repos` on 127.0.0.1 until the test process exits; returns the endpoint URL.
fn fake_hub(repos: Repos) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = serve(stream, &repos);
        }
    });
    endpoint
}

fn serve(mut stream: TcpStream, repos: &Repos) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
    // `Range: bytes=0-0` (hf-hub's metadata request) or `bytes=N-` (the download).
    let mut range: Option<(usize, Option<usize>)> = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((start, end)) = line
            .to_ascii_lowercase()
            .strip_prefix("range: bytes=")
            .and_then(|v| v.trim().split_once('-').map(|(a, b)| (a.to_string(), b.to_string())))
        {
            range = start.parse().ok().map(|s| (s, end.parse().ok()));
        }
    }
    let respond = |stream: &mut TcpStream, status: &str, headers: &[(String, String)], body: &[u8]| {
        let mut head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)
    };

    for (repo, files) in repos {
        if path == format!("/api/models/{repo}/revision/main") {
            let siblings: Vec<String> = files.iter().map(|(f, _)| format!("{{\"rfilename\": \"{f}\"}}")).collect();
            let body = format!("{{\"sha\": \"{COMMIT}\", \"siblings\": [{}]}}", siblings.join(", "));
            return respond(&mut stream, "200 OK", &[], body.as_bytes());
        }
        for (name, contents) in files {
            if path == format!("/{repo}/resolve/main/{name}") {
                let bytes = contents.as_bytes();
                let (start, last) = range.unwrap_or((0, None));
                let start = start.min(bytes.len());
                let end = last.map_or(bytes.len(), |l| l + 1).min(bytes.len());
                let headers = [
                    ("x-repo-commit".to_string(), COMMIT.to_string()),
                    ("etag".to_string(), format!("\"etag-{}\"", name.replace('.', "-"))),
                    ("content-range".to_string(), format!("bytes {start}-{}/{}", end.saturating_sub(1), bytes.len())),
                ];
                return respond(&mut stream, "206 Partial Content", &headers, &bytes[start..end]);
            }
        }
    }
    respond(&mut stream, "404 Not Found", &[], b"{\"error\": \"Repository not found\"}")
}

fn online(hub_cache: &Path, endpoint: &str) -> ResolveOptions {
    ResolveOptions {
        hub_cache: Some(hub_cache.to_path_buf()),
        endpoint: Some(endpoint.to_string()),
        progress: false,
        ..Default::default()
    }
}

#[test]
fn downloads_a_sharded_hf_repo_then_resolves_it_offline() {
    if std::env::var_os("HF_HUB_OFFLINE").is_some() {
        eprintln!("skipped: HF_HUB_OFFLINE is set");
        return;
    }
    let index = r#"{"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}"#;
    let endpoint = fake_hub(Repos::from([(
        "org/sharded",
        vec![
            ("config.json", "{\"model_type\": \"llama\"}"),
            ("model.safetensors.index.json", index),
            ("model-00001-of-00002.safetensors", "shard one"),
            ("model-00002-of-00002.safetensors", "shard two"),
            ("tokenizer.json", "{}"),
            ("README.md", "not needed"),
        ],
    )]));
    let cache = tempfile::tempdir().unwrap();
    let files = resolve("org/sharded", &online(cache.path(), &endpoint)).unwrap_or_else(|e| panic!("{e}"));
    let snapshot = cache.path().join("models--org--sharded/snapshots").join(COMMIT);
    let ModelFiles::HfDir { dir, weights, tokenizer_json, generation_config, .. } = files else {
        panic!("expected an HF dir, got {files:?}")
    };
    assert_eq!(dir, snapshot);
    assert_eq!(
        weights,
        [snapshot.join("model-00001-of-00002.safetensors"), snapshot.join("model-00002-of-00002.safetensors")]
    );
    assert_eq!(std::fs::read_to_string(&weights[1]).unwrap(), "shard two");
    assert_eq!(tokenizer_json, Some(snapshot.join("tokenizer.json")));
    assert_eq!(generation_config, None);
    assert!(!snapshot.join("README.md").exists(), "only model files are fetched");

    // Now cached: resolves without the network.
    let offline = ResolveOptions { offline: true, ..online(cache.path(), &endpoint) };
    assert!(matches!(resolve("org/sharded", &offline), Ok(ModelFiles::HfDir { .. })));
}

#[test]
fn downloads_the_single_gguf_of_a_gguf_repo() {
    if std::env::var_os("HF_HUB_OFFLINE").is_some() {
        return;
    }
    let endpoint =
        fake_hub(Repos::from([("org/tiny-GGUF", vec![("README.md", "x"), ("tiny.Q4_0.gguf", "GGUF bytes")])]));
    let cache = tempfile::tempdir().unwrap();
    let ModelFiles::Gguf { path } = resolve("org/tiny-GGUF", &online(cache.path(), &endpoint)).unwrap() else {
        panic!("expected a GGUF");
    };
    assert_eq!(std::fs::read_to_string(path).unwrap(), "GGUF bytes");
}

#[test]
fn missing_repo_names_the_url_and_the_error() {
    if std::env::var_os("HF_HUB_OFFLINE").is_some() {
        return;
    }
    let endpoint = fake_hub(Repos::new());
    let cache = tempfile::tempdir().unwrap();
    let msg = resolve("org/nothing", &online(cache.path(), &endpoint)).unwrap_err().to_string();
    assert!(msg.contains(&format!("{endpoint}/api/models/org/nothing/revision/main")) && msg.contains("404"), "{msg}");
}
