//! The OpenAPI 3.0 document served at `/openapi.json`, written by hand: one entry per route in
//! [`crate::app::ROUTES`] (a test holds the two together), with request schemas for the fields
//! the server reads and response schemas for what it answers. Extra request fields are allowed
//! (and ignored), as in OpenAI's API.

use serde_json::{json, Value};

fn schema(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn json_body(name: &str) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": schema(name)}}})
}

fn ok(desc: &str, name: &str) -> Value {
    json!({"description": desc, "content": {"application/json": {"schema": schema(name)}}})
}

fn error(desc: &str) -> Value {
    json!({"description": desc, "content": {"application/json": {"schema": schema("ErrorResponse")}}})
}

/// The error answers a generation endpoint can give.
fn generation_errors(mut responses: Value) -> Value {
    for (code, desc) in [
        ("400", "A field is invalid; the message names the field, the limit and the value"),
        ("401", "Missing or wrong API key"),
        ("404", "Unknown model"),
        ("413", "Body larger than the server's limit"),
        ("429", "The waiting queue is full; retry after the Retry-After header's seconds"),
        ("500", "Internal error"),
        ("503", "The server is shutting down"),
    ] {
        responses[code] = error(desc);
    }
    responses
}

fn sse_or(name: &str) -> Value {
    json!({
        "description": "The completion, or with `stream: true` server-sent events (`data: {chunk}` lines ending in `data: [DONE]`)",
        "content": {
            "application/json": {"schema": schema(name)},
            "text/event-stream": {"schema": {"type": "string"}},
        }
    })
}

fn get_json(summary: &str, desc: &str, name: &str) -> Value {
    json!({"get": {"summary": summary, "responses": {"200": ok(desc, name)}}})
}

/// The document for a model with `vocab_size` token ids and a context of `max_model_len` tokens
/// (the limits token ids and `max_tokens` are checked against).
pub fn document(vocab_size: usize, max_model_len: usize) -> Value {
    let nullable_num = json!({"type": "number", "nullable": true});
    let range = |min: f64, max: f64| json!({"type": "number", "nullable": true, "minimum": min, "maximum": max});
    let max_id = vocab_size.saturating_sub(1);
    let nullable_int = json!({"type": "integer", "nullable": true});
    let stop = json!({"nullable": true, "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]});
    let sampling = json!({
        "model": {"type": "string", "nullable": true, "description": "Must be the served model's name when given"},
        "max_tokens": {"type": "integer", "minimum": 0, "maximum": max_model_len, "nullable": true},
        "max_completion_tokens": {"type": "integer", "minimum": 0, "maximum": max_model_len, "nullable": true},
        "n": {"type": "integer", "minimum": 1, "maximum": 128, "nullable": true},
        "temperature": {"type": "number", "nullable": true, "minimum": 0},
        "top_p": {"type": "number", "nullable": true, "minimum": 0, "exclusiveMinimum": true, "maximum": 1},
        "min_p": range(0.0, 1.0),
        "top_k": {"type": "integer", "nullable": true, "description": "-1 or 0 turns it off (vLLM)"},
        "presence_penalty": range(-2.0, 2.0), "frequency_penalty": range(-2.0, 2.0),
        "repetition_penalty": {"type": "number", "nullable": true, "minimum": 0, "exclusiveMinimum": true},
        "logit_bias": {"type": "object", "nullable": true, "description": "token id (a decimal string) to bias",
            "additionalProperties": {"type": "number", "minimum": -100, "maximum": 100}},
        "seed": nullable_int,
        "stop": stop,
        "stop_token_ids": {"type": "array", "nullable": true, "items": {"type": "integer", "minimum": 0, "maximum": max_id}},
        "stream": {"type": "boolean", "nullable": true},
        "stream_options": {"type": "object", "nullable": true, "properties": {"include_usage": {"type": "boolean", "nullable": true}}},
        "min_tokens": {"type": "integer", "minimum": 0, "nullable": true},
        "ignore_eos": {"type": "boolean", "nullable": true},
        "priority": nullable_int,
        "user": {"type": "string", "nullable": true},
    });
    let with = |extra: Value, required: &[&str]| {
        let mut props = sampling.clone();
        for (k, v) in extra.as_object().into_iter().flatten() {
            props[k] = v.clone();
        }
        let mut s = json!({"type": "object", "properties": props});
        if !required.is_empty() {
            s["required"] = json!(required);
        }
        s
    };
    let token_ids =
        json!({"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0, "maximum": max_id}});
    let message = json!({"type": "object", "required": ["role"], "properties": {
        "role": {"type": "string"},
        "content": {"nullable": true, "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object",
            "required": ["type", "text"], "properties": {"type": {"type": "string", "enum": ["text"]}, "text": {"type": "string"}}}}]},
    }});
    let usage = json!({"type": "object", "required": ["prompt_tokens", "completion_tokens", "total_tokens"], "properties": {
        "prompt_tokens": {"type": "integer"}, "completion_tokens": {"type": "integer"}, "total_tokens": {"type": "integer"},
        "prompt_tokens_details": {"type": "object", "properties": {"cached_tokens": {"type": "integer"}}},
    }});
    let finish = json!({"type": "string", "enum": ["stop", "length"], "nullable": true});
    let components = json!({
        "ChatCompletionRequest": with(json!({
            "messages": {"type": "array", "minItems": 1, "items": message},
            "logprobs": {"type": "boolean", "nullable": true},
            "top_logprobs": {"type": "integer", "minimum": 0, "maximum": 20, "nullable": true},
            "add_generation_prompt": {"type": "boolean", "nullable": true},
            "chat_template_kwargs": {"type": "object", "nullable": true},
        }), &["messages"]),
        "CompletionRequest": with(json!({
            "prompt": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}, token_ids,
                {"type": "array", "items": token_ids}]},
            "echo": {"type": "boolean", "nullable": true},
            "logprobs": {"type": "integer", "minimum": 0, "maximum": 20, "nullable": true},
            "suffix": {"type": "string", "nullable": true},
            "best_of": nullable_int,
        }), &["prompt"]),
        "ChatCompletion": {"type": "object", "required": ["id", "object", "created", "model", "choices", "usage"], "properties": {
            "id": {"type": "string"}, "object": {"type": "string", "enum": ["chat.completion"]},
            "created": {"type": "integer"}, "model": {"type": "string"}, "usage": schema("Usage"),
            "choices": {"type": "array", "items": {"type": "object", "properties": {
                "index": {"type": "integer"}, "finish_reason": finish,
                "message": {"type": "object", "properties": {"role": {"type": "string"}, "content": {"type": "string"}}},
                "logprobs": {"type": "object", "nullable": true, "properties": {"content": {"type": "array", "items": {"type": "object",
                    "properties": {"token": {"type": "string"}, "logprob": {"type": "number"},
                        "bytes": {"type": "array", "items": {"type": "integer"}},
                        "top_logprobs": {"type": "array", "items": {"type": "object"}}}}}}},
            }}},
        }},
        "Completion": {"type": "object", "required": ["id", "object", "created", "model", "choices", "usage"], "properties": {
            "id": {"type": "string"}, "object": {"type": "string", "enum": ["text_completion"]},
            "created": {"type": "integer"}, "model": {"type": "string"}, "usage": schema("Usage"),
            "choices": {"type": "array", "items": {"type": "object", "properties": {
                "index": {"type": "integer"}, "text": {"type": "string"}, "finish_reason": finish,
                "logprobs": {"type": "object", "nullable": true, "properties": {
                    "tokens": {"type": "array", "items": {"type": "string"}},
                    "token_logprobs": {"type": "array", "items": nullable_num},
                    "top_logprobs": {"type": "array", "items": {"type": "object", "nullable": true, "additionalProperties": {"type": "number"}}},
                    "text_offset": {"type": "array", "items": {"type": "integer"}},
                }},
            }}},
        }},
        "Usage": usage,
        "TokenizeRequest": {"type": "object", "properties": {
            "model": {"type": "string", "nullable": true}, "prompt": {"type": "string"},
            "messages": {"type": "array", "items": message},
            "add_special_tokens": {"type": "boolean", "nullable": true},
            "add_generation_prompt": {"type": "boolean", "nullable": true},
            "return_token_strs": {"type": "boolean", "nullable": true},
        }},
        "TokenizeResponse": {"type": "object", "required": ["count", "max_model_len", "tokens"], "properties": {
            "count": {"type": "integer"}, "max_model_len": {"type": "integer"}, "tokens": token_ids,
            "token_strs": {"type": "array", "nullable": true, "items": {"type": "string"}},
        }},
        "DetokenizeRequest": {"type": "object", "required": ["tokens"], "properties": {
            "model": {"type": "string", "nullable": true}, "tokens": token_ids}},
        "DetokenizeResponse": {"type": "object", "required": ["prompt"], "properties": {"prompt": {"type": "string"}}},
        "TokenizerInfo": {"type": "object", "properties": {
            "tokenizer_class": {"type": "string"}, "bos_token": {"type": "string", "nullable": true},
            "eos_token": {"type": "string", "nullable": true}, "chat_template": {"type": "string", "nullable": true},
            "model_max_length": {"type": "integer"}, "vocab_size": {"type": "integer"}}},
        "Model": {"type": "object", "required": ["id", "object"], "properties": {
            "id": {"type": "string"}, "object": {"type": "string"}, "created": {"type": "integer"},
            "owned_by": {"type": "string"}, "max_model_len": {"type": "integer"}}},
        "ModelList": {"type": "object", "properties": {"object": {"type": "string"}, "data": {"type": "array", "items": schema("Model")}}},
        "Status": {"type": "object", "properties": {"status": {"type": "string"}}},
        "Version": {"type": "object", "properties": {"version": {"type": "string"}}},
        "ErrorResponse": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object",
            "required": ["message", "type"], "properties": {
                "message": {"type": "string"}, "type": {"type": "string"},
                "param": {"type": "string", "nullable": true}, "code": {"type": "string", "nullable": true}}}}},
    });
    let keyed_errors = json!({"401": error("Missing or wrong API key")});
    let mut tokenize_responses = generation_errors(json!({"200": ok("The tokens", "TokenizeResponse")}));
    tokenize_responses.as_object_mut().map(|m| m.remove("429"));
    let mut detokenize_responses = generation_errors(json!({"200": ok("The text", "DetokenizeResponse")}));
    detokenize_responses.as_object_mut().map(|m| m.remove("429"));
    let mut models = get_json("List the served model", "The served model", "ModelList");
    models["get"]["responses"]["401"] = keyed_errors["401"].clone();
    let mut info =
        get_json("The tokenizer's special tokens and chat template (vLLM)", "Tokenizer facts", "TokenizerInfo");
    info["get"]["responses"]["401"] = keyed_errors["401"].clone();
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Prometheus",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "OpenAI-compatible inference server (`prom serve`). Generation and tokenizer routes take \
                `Authorization: Bearer <key>` when the server has API keys.",
        },
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": {
            "/v1/chat/completions": {"post": {
                "summary": "Chat completion (OpenAI); streaming with `stream: true`",
                "security": [{"bearer": []}, {}],
                "requestBody": json_body("ChatCompletionRequest"),
                "responses": generation_errors(json!({"200": sse_or("ChatCompletion")})),
            }},
            "/v1/completions": {"post": {
                "summary": "Text completion (OpenAI); prompts as text, token ids or batches; `echo` with prompt logprobs",
                "security": [{"bearer": []}, {}],
                "requestBody": json_body("CompletionRequest"),
                "responses": generation_errors(json!({"200": sse_or("Completion")})),
            }},
            "/v1/models": models,
            "/v1/models/{model}": {"get": {
                "summary": "One model",
                "parameters": [{"name": "model", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": {"200": ok("The model", "Model"), "401": error("Missing or wrong API key"), "404": error("Unknown model")},
            }},
            "/tokenize": {"post": {"summary": "Tokenize text or a chat (vLLM)", "requestBody": json_body("TokenizeRequest"),
                "responses": tokenize_responses}},
            "/detokenize": {"post": {"summary": "Token ids to text (vLLM)", "requestBody": json_body("DetokenizeRequest"),
                "responses": detokenize_responses}},
            "/tokenizer_info": info,
            "/health": get_json("Liveness: the process answers", "Alive", "Status"),
            "/ready": {"get": {"summary": "Readiness: the model is loaded and the server is not draining",
                "responses": {"200": ok("Ready", "Status"), "503": ok("Draining", "Status")}}},
            "/metrics": {"get": {"summary": "Prometheus metrics (text format 0.0.4)", "responses": {"200": {
                "description": "Metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/version": get_json("Server version", "The version", "Version"),
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3 document",
                "content": {"application/json": {"schema": {"type": "object"}}}}}}},
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_every_route_and_nothing_else() {
        let doc = document(100, 64);
        let mut documented: Vec<(String, String)> = vec![];
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for method in ops.as_object().unwrap().keys() {
                documented.push((method.clone(), path.clone()));
            }
        }
        documented.sort();
        let mut routes: Vec<(String, String)> =
            crate::app::ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
        routes.sort();
        assert_eq!(documented, routes);
    }

    #[test]
    fn every_ref_resolves() {
        let doc = document(100, 64);
        let text = doc.to_string();
        for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &part[..part.find('"').unwrap()];
            assert!(doc["components"]["schemas"].get(name).is_some(), "dangling $ref {name}");
        }
    }
}
