//! The minijinja environment that renders like transformers' `_compile_jinja_template`:
//! `trim_blocks`, `lstrip_blocks`, loop controls, `raise_exception`, `strftime_now`, their
//! `tojson`, Python's string methods (minijinja-contrib `pycompat`) and Python's `str()` when
//! printing values.

use minijinja::value::{Kwargs, Value};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior};

use super::json::tojson;
use super::python;
use super::strftime::{strftime, Clock};

/// The error kind `raise_exception` produces; its detail is the template's message verbatim.
pub(crate) const RAISED: ErrorKind = ErrorKind::InvalidOperation;
pub(crate) const RAISED_PREFIX: &str = "raise_exception: ";

pub(crate) fn hf_environment(clock: Clock) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(false);
    // jinja2's default `Undefined`: prints as "", iterates as empty, fails on attribute access.
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.set_formatter(|out, _state, value| {
        out.write_str(&python::py_str(value)).map_err(|e| Error::new(ErrorKind::WriteFailure, e.to_string()))
    });

    env.add_filter("tojson", tojson);
    // Filters that turn any value into text with `str()`, where minijinja would print `true`/`none`.
    env.add_filter("string", |v: Value| Value::from(python::py_str(&v)));
    env.add_filter("trim", |v: Value, chars: Option<String>| python::trim(&v, chars.as_deref()));
    env.add_filter("join", join);
    env.add_test("sequence", |v: Value| python::is_sequence(&v));
    env.add_test("iterable", |v: Value| python::is_iterable(&v));
    env.add_test("number", |v: Value| python::is_number(&v));
    env.add_test("integer", |v: Value| python::is_integer(&v));
    env.add_test("float", |v: Value| python::is_float(&v));

    env.add_function("raise_exception", |msg: Value| -> Result<Value, Error> {
        Err(Error::new(RAISED, format!("{RAISED_PREFIX}{}", python::py_str(&msg))))
    });
    set_clock(&mut env, clock);
    env
}

/// jinja2's `join(value, d='', attribute=None)`: `d.join(str(item) for item in value)`, where
/// `attribute` (dotted, or an index) picks a field of each item first.
fn join(value: Value, sep: Option<String>, kwargs: Kwargs) -> Result<String, Error> {
    let attribute: Option<Value> = kwargs.get("attribute")?;
    kwargs.assert_all_used()?;
    let mut out = String::new();
    for (i, item) in value.try_iter()?.enumerate() {
        if i > 0 {
            out.push_str(sep.as_deref().unwrap_or(""));
        }
        let item = match &attribute {
            None => item,
            Some(attr) => match attr.as_str() {
                Some(path) => path.split('.').try_fold(item, |v, part| match part.parse::<usize>() {
                    Ok(idx) => v.get_item(&Value::from(idx)),
                    Err(_) => v.get_attr(part),
                })?,
                None => item.get_item(attr)?,
            },
        };
        out.push_str(&python::py_str(&item));
    }
    Ok(out)
}

pub(crate) fn set_clock(env: &mut Environment<'static>, clock: Clock) {
    env.add_function("strftime_now", move |format: String| strftime(&format, clock));
}

/// Rewrites transformers' `{% generation %}…{% endgeneration %}` (its `AssistantTracker`
/// extension, which only records where assistant text starts and ends) to `{% with %}…{% endwith %}`:
/// the same output and, like the call block it compiles to, its own scope. Whitespace control
/// markers are kept; line numbers do not change.
pub(crate) fn rewrite_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        out.push_str(&rest[..start]);
        let tag = &rest[start..];
        match tag.find("%}") {
            Some(end) => {
                let inner = &tag[2..end];
                let lead = inner.strip_prefix(['-', '+']).map_or("", |_| &inner[..1]);
                let body = &inner[lead.len()..];
                let trail = body.strip_suffix(['-', '+']).map_or("", |_| &body[body.len() - 1..]);
                let word = body[..body.len() - trail.len()].trim();
                let replacement = match word {
                    "generation" => Some("with"),
                    "endgeneration" => Some("endwith"),
                    _ => None,
                };
                match replacement {
                    Some(word) => out.push_str(&format!("{{%{lead} {word} {trail}%}}")),
                    None => out.push_str(&tag[..end + 2]),
                }
                rest = &tag[end + 2..];
            }
            None => {
                out.push_str(tag);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_tags_become_with_blocks() {
        let src = "{%- generation -%}x{% endgeneration %}{% if a %}{%+ generation%}";
        assert_eq!(rewrite_generation_tags(src), "{%- with -%}x{% endwith %}{% if a %}{%+ with %}");
    }

    #[test]
    fn other_tags_are_untouched() {
        let src = "{% if generation %}{{ '%}' }}{% endif %}{% unterminated";
        assert_eq!(rewrite_generation_tags(src), src);
    }
}
