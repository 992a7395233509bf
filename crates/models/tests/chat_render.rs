//! Behaviour of [`ChatTemplate`] beyond the golden templates: errors, the Python-compatible
//! filters and tests, variables, and loading templates from HF files.
//!
//! Expected strings marked "transformers" were produced by transformers 5.24 / jinja2 3.1.6
//! (`_compile_jinja_template(src).render(**ctx)`).

use std::time::{Duration, UNIX_EPOCH};

use prom_models::chat::{ChatMessage, ChatTemplate, RenderOptions, CHATML_TEMPLATE};
use prom_models::Error;
use serde_json::{json, Map, Value};

fn render_with(src: &str, vars: Value) -> Result<String, Error> {
    let extra: Map<String, Value> = vars.as_object().cloned().unwrap_or_default();
    ChatTemplate::new(src, None, None)?.render(&[], &RenderOptions { extra, ..Default::default() })
}

fn render(src: &str) -> String {
    render_with(src, json!({})).unwrap_or_else(|e| panic!("{src}: {e}"))
}

#[test]
fn syntax_error_names_the_line() {
    let err =
        ChatTemplate::new("{% for m in messages %}\n{{ m.content }}\n{% if %}\n{% endfor %}", None, None).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::ChatTemplate(_)), "{err:?}");
    assert!(msg.contains("line 3"), "{msg}");
}

#[test]
fn raise_exception_surfaces_the_templates_message() {
    let src = "{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}";
    let t = ChatTemplate::new(src, None, None).unwrap();
    let err = t.render(&[ChatMessage::system("x").into()], &RenderOptions::default()).unwrap_err().to_string();
    assert!(err.contains("System role not supported") && err.contains("template raised"), "{err}");
    assert!(t.render(&[ChatMessage::user("x").into()], &RenderOptions::default()).is_ok());
}

#[test]
fn prints_values_like_python_str() {
    // transformers
    assert_eq!(
        render(
            r#"{{ [true, none, 1.0, "it's", {'a': 1e20, 'b': 0.00001, 'c': 123456789.125}, 'x\ty\u00a0', 'say "hi"'] }}"#
        ),
        r#"[True, None, 1.0, "it's", {'a': 1e+20, 'b': 1e-05, 'c': 123456789.125}, 'x\ty\xa0', 'say "hi"']"#
    );
}

#[test]
fn type_tests_follow_python() {
    let src = "{{ d is sequence }}|{{ s is sequence }}|{{ u is sequence }}|{{ u is iterable }}|{{ none is iterable }}|\
               {{ true is number }}|{{ 1.0 is float }}|{{ 1 is integer }}|{{ true is integer }}|{{ d is mapping }}";
    // transformers
    assert_eq!(
        render_with(src, json!({"d": {}, "s": "x"})).unwrap(),
        "True|True|True|True|False|True|True|True|False|True"
    );
}

#[test]
fn string_filters_use_python_str() {
    let src = r#"{{ [1, true, none]|join(", ") }}|{{ none|trim }}|{{ [{"a": {"b": 1}}, {"a": {"b": false}}]|join("-", attribute="a.b") }}|{{ true|string }}|{{ "xxhixx"|trim("x") }}"#;
    // transformers
    assert_eq!(render(src), "1, True, None|None|1-False|True|hi");
}

#[test]
fn tojson_matches_python_json_dumps() {
    let x = json!({"x": {"name": "Zürich", "n": [1, 2.5, null, true], "e": {}, "l": [], "q": "a\"b\\c\n<&>'"}});
    let cases = [
        ("{{ x|tojson }}", r#"{"name": "Zürich", "n": [1, 2.5, null, true], "e": {}, "l": [], "q": "a\"b\\c\n<&>'"}"#),
        (
            "{{ x|tojson(indent=2, sort_keys=true) }}",
            "{\n  \"e\": {},\n  \"l\": [],\n  \"n\": [\n    1,\n    2.5,\n    null,\n    true\n  ],\n  \"name\": \"Zürich\",\n  \"q\": \"a\\\"b\\\\c\\n<&>'\"\n}",
        ),
        (
            "{{ x|tojson(ensure_ascii=true, separators=(',', ':')) }}",
            r#"{"name":"Z\u00fcrich","n":[1,2.5,null,true],"e":{},"l":[],"q":"a\"b\\c\n<&>'"}"#,
        ),
        ("{{ x.n|tojson(indent='\t') }}", "[\n\t1,\n\t2.5,\n\tnull,\n\ttrue\n]"),
    ];
    for (src, want) in cases {
        assert_eq!(render_with(src, x.clone()).unwrap(), want, "{src}");
    }
    // transformers
    assert_eq!(
        render("{{ [1e16, 1e15, 0.0001, 1e-05, 1.5, 100.0]|tojson }}"),
        "[1e+16, 1000000000000000.0, 0.0001, 1e-05, 1.5, 100.0]"
    );
    let err = render_with("{{ nope|tojson }}", json!({})).unwrap_err().to_string();
    assert!(err.contains("not JSON serializable"), "{err}");
}

#[test]
fn special_tokens_and_extra_variables() {
    let src =
        "{{ bos_token is defined }}|{{ eos_token }}|{{ enable_thinking }}|{{ tools is none }}|{{ documents is none }}";
    let t = ChatTemplate::new(src, None, Some("</s>")).unwrap();
    let mut extra = Map::new();
    extra.insert("enable_thinking".into(), json!(false));
    assert_eq!(
        t.render(&[], &RenderOptions { extra: extra.clone(), ..Default::default() }).unwrap(),
        "False|</s>|False|True|True"
    );
    // Extra variables override special tokens, as `{**special_tokens_map, **kwargs}` does.
    extra.insert("eos_token".into(), json!("<|eot|>"));
    assert!(t
        .render(&[], &RenderOptions { extra: extra.clone(), ..Default::default() })
        .unwrap()
        .contains("|<|eot|>|"));
    // ...but not the render arguments themselves.
    extra.insert("messages".into(), json!([]));
    let err = t.render(&[], &RenderOptions { extra, ..Default::default() }).unwrap_err().to_string();
    assert!(err.contains("`messages`"), "{err}");
}

#[test]
fn generation_blocks_loop_controls_and_strftime() {
    let src = "{% for m in messages %}{% generation %}{{ m.content }}{% endgeneration %}{% if loop.index == 2 %}{% break %}{% endif %}{% endfor %}|{{ strftime_now('%d %b %Y') }}";
    let t =
        ChatTemplate::new(src, None, None).unwrap().with_fixed_time(UNIX_EPOCH + Duration::from_secs(1_753_522_200));
    let msgs: Vec<Value> = ["a", "b", "c"].map(|c| ChatMessage::user(c).into()).to_vec();
    assert_eq!(t.render(&msgs, &RenderOptions::default()).unwrap(), "ab|26 Jul 2025");
}

#[test]
fn nulls_are_dropped_and_reasoning_aliased() {
    let t = ChatTemplate::new(
        "{% for m in messages %}{{ m.content is defined }} {{ m.thinking }} {{ m.reasoning_content }}{% endfor %}",
        None,
        None,
    )
    .unwrap();
    let msg = json!({"role": "assistant", "content": null, "reasoning": "hmm"});
    assert_eq!(t.render(&[msg], &RenderOptions::default()).unwrap(), "False hmm hmm");
}

#[test]
fn chatml_fallback() {
    let t = ChatTemplate::chatml().unwrap();
    let msgs = [ChatMessage::user("Hi"), ChatMessage::assistant("Hello"), ChatMessage::user("Bye")].map(Value::from);
    assert_eq!(
        t.render(&msgs, &RenderOptions::default()).unwrap(),
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n"
    );
    assert!(CHATML_TEMPLATE.contains("add_generation_prompt"));
}

#[test]
fn templates_from_hf_files() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tokenizer_config.json");
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();

    // A list of named templates, AddedToken-style special tokens, `null` tokens left undefined.
    write(
        "tokenizer_config.json",
        r#"{"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>", "unk_token": null,
            "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "{{ bos_token }}D{{ eos_token }}{{ unk_token is defined }}"}]}"#,
    );
    let t = ChatTemplate::from_tokenizer_config(&config).unwrap().unwrap();
    assert_eq!(t.render(&[], &RenderOptions::default()).unwrap(), "<s>D</s>False");

    // `chat_template.jinja` wins over the config's template.
    write("chat_template.jinja", "J{{ eos_token }}");
    let t = ChatTemplate::from_hf_files(Some(&config), Some(&dir.path().join("chat_template.jinja"))).unwrap().unwrap();
    assert_eq!(t.render(&[], &RenderOptions::default()).unwrap(), "J</s>");

    // No template at all is not an error: the caller decides on the ChatML fallback.
    write("tokenizer_config.json", r#"{"eos_token": "</s>"}"#);
    assert!(ChatTemplate::from_tokenizer_config(&config).unwrap().is_none());

    // Wrong types name the field and the file.
    write("tokenizer_config.json", r#"{"eos_token": 2, "chat_template": "x"}"#);
    let err = ChatTemplate::from_tokenizer_config(&config).err().unwrap();
    assert!(matches!(&err, Error::Config { field, .. } if field == "eos_token"), "{err:?}");
    assert!(err.to_string().contains("tokenizer_config.json"), "{err}");
    write("tokenizer_config.json", r#"{"chat_template": 3}"#);
    assert!(
        matches!(ChatTemplate::from_tokenizer_config(&config), Err(Error::Config { field, .. }) if field == "chat_template")
    );
}

#[test]
fn templates_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ChatTemplate>();
}
