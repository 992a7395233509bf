//! Jinja templates over a document, as lm-eval evaluates `doc_to_text`, `doc_to_target` and
//! `doc_to_choice`: strict undefined, trailing newlines kept, Python string/dict methods
//! (minijinja-contrib's pycompat) plus `list.index`. A field that is a bare column name reads
//! that column; a template that is one `{{ expression }}` yields the expression's value (a list,
//! an int), which lm-eval gets by `ast.literal_eval` of the rendered text.

use minijinja::value::{Value, ValueKind};
use minijinja::{Environment, ErrorKind, State, UndefinedBehavior};
use serde_json::Value as Json;

use crate::{EvalError, Result};

pub struct Templates {
    env: Environment<'static>,
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

fn list_index(state: &State, value: &Value, method: &str, args: &[Value]) -> Result<Value, minijinja::Error> {
    if method == "index" && value.kind() == ValueKind::Seq {
        let needle = args.first().ok_or_else(|| minijinja::Error::new(ErrorKind::MissingArgument, "index()"))?;
        let items = value.try_iter()?;
        return items
            .enumerate()
            .find(|(_, v)| v == needle)
            .map(|(i, _)| Value::from(i))
            .ok_or_else(|| minijinja::Error::new(ErrorKind::InvalidOperation, format!("{needle} is not in list")));
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

impl Templates {
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        env.set_unknown_method_callback(list_index);
        env.add_filter("regex_replace", |s: String, pat: String, rep: String| -> Result<String, minijinja::Error> {
            let re = regex::Regex::new(&pat)
                .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
            Ok(re.replace_all(&s, rep.replace("\\", "$").as_str()).into_owned())
        });
        Self { env }
    }

    fn err(src: &str, e: impl std::fmt::Display) -> EvalError {
        let mut template: String = src.chars().take(60).collect();
        if template.len() < src.len() {
            template.push('…');
        }
        EvalError::Template { template, msg: format!("{e:#}") }
    }

    /// Renders `src` against `doc` to text.
    pub fn render(&self, src: &str, doc: &Json) -> Result<String> {
        self.env.render_str(src, Value::from_serialize(doc)).map_err(|e| Self::err(src, e))
    }

    /// The value of a doc_to_* field: a column name, one `{{ expression }}`, or text to render.
    pub fn eval(&self, src: &str, doc: &Json) -> Result<Json> {
        if let Some(v) = doc.get(src) {
            return Ok(v.clone());
        }
        let t = src.trim();
        if let Some(expr) = t.strip_prefix("{{").and_then(|s| s.strip_suffix("}}")) {
            if !expr.contains("{{") && !expr.contains("}}") {
                let compiled = self.env.compile_expression(expr.trim()).map_err(|e| Self::err(src, e))?;
                let v = compiled.eval(Value::from_serialize(doc)).map_err(|e| Self::err(src, e))?;
                return serde_json::to_value(&v).map_err(|e| Self::err(src, e));
            }
        }
        self.render(src, doc).map(Json::String)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn arc_style_fields() {
        let t = Templates::new();
        let doc = json!({"question": "Q?", "choices": {"text": ["a", "b"], "label": ["A", "B"]}, "answerKey": "B"});
        assert_eq!(t.render("Question: {{question}}\nAnswer:", &doc).unwrap(), "Question: Q?\nAnswer:");
        assert_eq!(t.eval("{{choices.label.index(answerKey)}}", &doc).unwrap(), json!(1));
        assert_eq!(t.eval("{{choices.text}}", &doc).unwrap(), json!(["a", "b"]));
        assert_eq!(t.eval("answerKey", &doc).unwrap(), json!("B"));
    }

    #[test]
    fn piqa_list_literal_and_python_methods() {
        let t = Templates::new();
        let doc = json!({"sol1": "x", "sol2": "y", "answer": "long #### 42 "});
        assert_eq!(t.eval("{{[sol1, sol2]}}", &doc).unwrap(), json!(["x", "y"]));
        assert_eq!(t.eval("{{answer.split('#### ')[-1].strip()}}", &doc).unwrap(), json!("42"));
    }

    #[test]
    fn undefined_fields_are_errors_naming_the_template() {
        let e = Templates::new().render("{{nope}}", &json!({})).unwrap_err();
        assert!(e.to_string().contains("{{nope}}"), "{e}");
    }
}
