//! `source::resolve` on local layouts: HF directories (single file, sharded, broken), GGUF files
//! and directories, a fake HF hub cache, and the failure messages when nothing is found.
//! Nothing here touches the network: hub downloads are either switched off or pointed at a
//! closed local port.

use std::fs;
use std::path::{Path, PathBuf};

use prom_models::source::{resolve, ModelFiles, ResolveOptions};
use prom_models::Error;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn touch(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn offline(hub_cache: &Path) -> ResolveOptions {
    ResolveOptions { offline: true, hub_cache: Some(hub_cache.to_path_buf()), ..Default::default() }
}

fn resolve_path(p: &Path) -> prom_models::Result<ModelFiles> {
    resolve(p.to_str().unwrap(), &offline(Path::new("/nonexistent-hub-cache")))
}

fn index_json(shards: &[&str]) -> String {
    let map: Vec<String> = shards.iter().enumerate().map(|(i, s)| format!("\"layer.{i}.weight\": \"{s}\"")).collect();
    format!("{{\"metadata\": {{\"total_size\": 1}}, \"weight_map\": {{{}}}}}", map.join(", "))
}

#[test]
fn hf_dir_with_single_safetensors() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    for f in ["config.json", "model.safetensors", "tokenizer.json", "generation_config.json"] {
        touch(&d.join(f), "{}");
    }
    let files = resolve_path(d).unwrap();
    assert_eq!(
        files,
        ModelFiles::HfDir {
            dir: d.to_path_buf(),
            config: d.join("config.json"),
            weights: vec![d.join("model.safetensors")],
            tokenizer_json: Some(d.join("tokenizer.json")),
            tokenizer_config: None,
            generation_config: Some(d.join("generation_config.json")),
            chat_template_jinja: None,
        }
    );
}

#[test]
fn hf_dir_with_sharded_safetensors() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (a, b) = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors");
    touch(&d.join("config.json"), "{}");
    // Three tensors over two shards, listed out of order: weights come back sorted and deduplicated.
    touch(&d.join("model.safetensors.index.json"), &index_json(&[b, a, b]));
    touch(&d.join(a), "");
    touch(&d.join(b), "");
    touch(&d.join("tokenizer_config.json"), "{}");
    touch(&d.join("chat_template.jinja"), "");
    let ModelFiles::HfDir { weights, tokenizer_config, chat_template_jinja, tokenizer_json, .. } =
        resolve_path(d).unwrap()
    else {
        panic!("expected an HF dir");
    };
    assert_eq!(weights, [d.join(a), d.join(b)]);
    assert_eq!(tokenizer_config, Some(d.join("tokenizer_config.json")));
    assert_eq!(chat_template_jinja, Some(d.join("chat_template.jinja")));
    assert_eq!(tokenizer_json, None);
}

#[test]
fn index_naming_a_missing_shard_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    touch(&d.join("config.json"), "{}");
    touch(
        &d.join("model.safetensors.index.json"),
        &index_json(&["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]),
    );
    touch(&d.join("model-00001-of-00002.safetensors"), "");
    let err = resolve_path(d).unwrap_err();
    assert!(matches!(err, Error::BadFile { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("model-00002-of-00002.safetensors"), "{msg}");
    assert!(!msg.contains("model-00001-of-00002"), "only the missing shard is named: {msg}");
    assert!(msg.contains("model.safetensors.index.json"), "{msg}");
}

#[test]
fn hf_dir_without_weights_says_what_it_looked_for() {
    let tmp = tempfile::tempdir().unwrap();
    touch(&tmp.path().join("config.json"), "{}");
    touch(&tmp.path().join("pytorch_model.bin"), "");
    let msg = resolve_path(tmp.path()).unwrap_err().to_string();
    assert!(msg.contains("model.safetensors") && msg.contains("PyTorch"), "{msg}");
}

#[test]
fn gguf_files_and_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let one = d.join("one");
    touch(&one.join("m.Q4_0.gguf"), "GGUF");
    touch(&one.join("README.md"), "");
    assert_eq!(resolve_path(&one).unwrap(), ModelFiles::Gguf { path: one.join("m.Q4_0.gguf") });
    assert_eq!(resolve_path(&one.join("m.Q4_0.gguf")).unwrap(), ModelFiles::Gguf { path: one.join("m.Q4_0.gguf") });

    let two = d.join("two");
    touch(&two.join("a.gguf"), "");
    touch(&two.join("b.gguf"), "");
    let msg = resolve_path(&two).unwrap_err().to_string();
    assert!(msg.contains("a.gguf") && msg.contains("b.gguf"), "{msg}");

    let empty = d.join("empty");
    fs::create_dir_all(&empty).unwrap();
    let msg = resolve_path(&empty).unwrap_err().to_string();
    assert!(msg.contains("config.json") && msg.contains(".gguf"), "{msg}");

    let msg = resolve_path(&one.join("README.md")).unwrap_err().to_string();
    assert!(msg.contains("not a .gguf"), "{msg}");

    // A mistyped .gguf path is reported as a path, not looked up on the hub.
    let msg = resolve_path(&d.join("nope/model.gguf")).unwrap_err().to_string();
    assert!(msg.contains("no such file") && !msg.contains("huggingface.co"), "{msg}");
}

/// `models--org--name/refs/<rev>` → `snapshots/<commit>/`, as huggingface_hub writes it.
fn fake_hub_repo(hub: &Path, repo: &str, rev: &str, files: &[(&str, &str)]) -> PathBuf {
    let repo_dir = hub.join(format!("models--{}", repo.replace('/', "--")));
    touch(&repo_dir.join("refs").join(rev), &format!("{COMMIT}\n"));
    let snapshot = repo_dir.join("snapshots").join(COMMIT);
    for (name, text) in files {
        touch(&snapshot.join(name), text);
    }
    snapshot
}

#[test]
fn hub_cache_snapshots() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = tmp.path();
    let snap = fake_hub_repo(
        hub,
        "org/name",
        "main",
        &[("config.json", "{}"), ("model.safetensors", ""), ("tokenizer.json", "{}")],
    );
    let ModelFiles::HfDir { dir, weights, tokenizer_json, .. } = resolve("org/name", &offline(hub)).unwrap() else {
        panic!("expected an HF dir");
    };
    assert_eq!(dir, snap);
    assert_eq!(weights, [snap.join("model.safetensors")]);
    assert_eq!(tokenizer_json, Some(snap.join("tokenizer.json")));

    // A branch other than main, and a commit hash (no ref file, the snapshot is named after it).
    fake_hub_repo(hub, "org/name", "v2", &[]);
    assert!(matches!(resolve("org/name@v2", &offline(hub)), Ok(ModelFiles::HfDir { .. })));
    assert!(matches!(resolve(&format!("org/name@{COMMIT}"), &offline(hub)), Ok(ModelFiles::HfDir { .. })));

    // A GGUF repo: one file named explicitly; several without a name is an error listing them.
    let gsnap = fake_hub_repo(hub, "org/name-GGUF", "main", &[("m.Q4_0.gguf", ""), ("m.Q8_0.gguf", "")]);
    assert_eq!(
        resolve("org/name-GGUF:m.Q8_0.gguf", &offline(hub)).unwrap(),
        ModelFiles::Gguf { path: gsnap.join("m.Q8_0.gguf") }
    );
    let msg = resolve("org/name-GGUF", &offline(hub)).unwrap_err().to_string();
    assert!(msg.contains("m.Q4_0.gguf") && msg.contains("m.Q8_0.gguf") && msg.contains("org/name-GGUF:"), "{msg}");
}

#[test]
fn offline_miss_lists_every_place_looked() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = tmp.path();
    let err = resolve("org/missing", &offline(hub)).unwrap_err();
    assert!(matches!(err, Error::ModelNotFound(_)), "{err:?}");
    let msg = err.to_string();
    eprintln!("{msg}");
    let ref_path = hub.join("models--org--missing/refs/main");
    for needle in [
        "model `org/missing` not found",
        "path org/missing: no such file or directory",
        ref_path.to_str().unwrap(),
        "https://huggingface.co/org/missing@main: not tried (offline mode requested)",
    ] {
        assert!(msg.contains(needle), "missing {needle:?} in:\n{msg}");
    }
}

#[test]
fn incomplete_hub_snapshot_offline_names_the_missing_shard() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = tmp.path();
    fake_hub_repo(
        hub,
        "org/big",
        "main",
        &[
            ("config.json", "{}"),
            ("model.safetensors.index.json", &index_json(&["s1.safetensors", "s2.safetensors"])),
            ("s1.safetensors", ""),
        ],
    );
    let msg = resolve("org/big", &offline(hub)).unwrap_err().to_string();
    assert!(msg.contains("incomplete") && msg.contains("s2.safetensors") && msg.contains("not tried"), "{msg}");
}

#[test]
fn unreachable_hub_is_reported_quickly_with_the_url() {
    if std::env::var_os("HF_HUB_OFFLINE").is_some() {
        eprintln!("skipped: HF_HUB_OFFLINE is set, so the hub is never tried");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // Port 9 (discard) on localhost: nothing listens, the connection is refused at once.
    let opts = ResolveOptions {
        hub_cache: Some(tmp.path().to_path_buf()),
        endpoint: Some("http://127.0.0.1:9".into()),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let msg = resolve("org/name", &opts).unwrap_err().to_string();
    assert!(started.elapsed().as_secs() < 5, "took {:?}", started.elapsed());
    eprintln!("{msg}");
    assert!(msg.contains("http://127.0.0.1:9/org/name@main: hub unreachable"), "{msg}");
}

#[test]
fn not_a_path_nor_a_hub_id() {
    let msg = resolve("no-such-model", &offline(Path::new("/x"))).unwrap_err().to_string();
    assert!(msg.contains("no such file") && msg.contains("not a hub id"), "{msg}");
}
