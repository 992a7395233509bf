//! Python's `str()`/`repr()` of template values, and the jinja2 tests whose answers follow Python's
//! type system rather than minijinja's.
//!
//! Jinja2 prints a value with `str()`: `True`, `None`, `['a', 1.0]`, `{'k': 'v'}`. minijinja prints
//! `true`, `none`, `["a", 1.0]`. Templates print whole lists or dicts surprisingly often (tool
//! schemas, content parts), so our output formatter and `|string` go through [`py_str`].
//! Out of scope: the `~` operator still uses minijinja's own string conversion.

use minijinja::value::{Value, ValueKind};

/// `str(value)` as Python would print it; undefined prints as the empty string (jinja2's `Undefined`).
pub(crate) fn py_str(value: &Value) -> String {
    let mut out = String::new();
    match value.kind() {
        ValueKind::Undefined => {}
        ValueKind::String => out.push_str(value.as_str().unwrap_or_default()),
        _ => write_repr(&mut out, value),
    }
    out
}

/// `repr(value)`; used for the items of lists and dicts, whose `str()` is their `repr()`.
pub(crate) fn write_repr(out: &mut String, value: &Value) {
    match value.kind() {
        ValueKind::Undefined => {}
        ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::Number => out.push_str(&py_number(value)),
        ValueKind::String => write_str_repr(out, value.as_str().unwrap_or_default()),
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            if let Ok(iter) = value.try_iter() {
                for (i, item) in iter.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_repr(out, &item);
                }
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            if let Ok(iter) = value.try_iter() {
                for (i, key) in iter.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_repr(out, &key);
                    out.push_str(": ");
                    write_repr(out, &value.get_item(&key).unwrap_or_default());
                }
            }
            out.push('}');
        }
        _ => out.push_str(&value.to_string()),
    }
}

/// An int prints its digits; a float prints like Python's `float.__repr__`.
pub(crate) fn py_number(value: &Value) -> String {
    if value.is_integer() {
        return value.to_string();
    }
    match f64::try_from(value.clone()) {
        Ok(f) => py_float_repr(f),
        Err(_) => value.to_string(),
    }
}

/// `repr(float)`: the shortest round-tripping digits, positional for exponents in [-4, 16),
/// otherwise `1e+16` / `1.5e-05`, always with a `.0` when positional and integral.
pub(crate) fn py_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0".into() } else { "0.0".into() };
    }
    // Rust's `{:e}` gives the same shortest round-trip digits Python uses, e.g. "-1.5e-5".
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let decpt = exp + 1; // value = 0.<digits> * 10^decpt
    let sign = if f < 0.0 { "-" } else { "" };
    if decpt <= -4 || decpt > 16 {
        let (first, rest) = digits.split_at(1);
        let mant = if rest.is_empty() { first.to_string() } else { format!("{first}.{rest}") };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{mant}e{esign}{:02}", exp.abs());
    }
    let body = if decpt <= 0 {
        format!("0.{}{}", "0".repeat(decpt.unsigned_abs() as usize), digits)
    } else {
        let decpt = decpt as usize;
        if digits.len() <= decpt {
            format!("{}{}.0", digits, "0".repeat(decpt - digits.len()))
        } else {
            format!("{}.{}", &digits[..decpt], &digits[decpt..])
        }
    };
    format!("{sign}{body}")
}

/// `repr(str)`: single quotes unless the text has a `'` and no `"`; escapes backslashes, the
/// quote, `\n\r\t` and non-printable characters.
fn write_str_repr(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if !is_printable(c) => {
                let n = c as u32;
                if n < 0x100 {
                    out.push_str(&format!("\\x{n:02x}"));
                } else if n < 0x10000 {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// An approximation of `str.isprintable` (Unicode categories Cc, Cf, Co, Cs, Zl, Zp and Zs other
/// than the space are not printable) covering the characters that occur in practice; unassigned
/// code points (Cn) are treated as printable.
fn is_printable(c: char) -> bool {
    let n = c as u32;
    !matches!(n,
        0x00..=0x1f | 0x7f..=0xa0 | 0xad
        | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x1680 | 0x180e
        | 0x2000..=0x200f | 0x2028..=0x202f | 0x205f..=0x2064 | 0x2066..=0x206f
        | 0x3000 | 0xd800..=0xf8ff | 0xfeff | 0xfff9..=0xfffb
        | 0x110bd | 0x1bca0..=0x1bca3 | 0x1d173..=0x1d17a
        | 0xe0001 | 0xe0020..=0xe007f | 0xf0000..=0x10ffff)
}

/// Python's `str.isspace`: Rust's `char::is_whitespace` plus the four ASCII separators U+001C..U+001F.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// jinja2's `trim(value, chars=None)`: `str(value).strip(chars)`.
pub(crate) fn trim(value: &Value, chars: Option<&str>) -> String {
    let s = py_str(value);
    match chars {
        Some(chars) => s.trim_matches(|c| chars.contains(c)).to_string(),
        None => s.trim_matches(is_py_space).to_string(),
    }
}

// jinja2's type tests, which follow Python: `bool` is a number, strings and dicts are sequences,
// `Undefined` is iterable (and a sequence: it has `__len__` and `__getitem__`).

pub(crate) fn is_sequence(v: &Value) -> bool {
    matches!(v.kind(), ValueKind::String | ValueKind::Seq | ValueKind::Map | ValueKind::Undefined)
        || v.as_bytes().is_some()
}

pub(crate) fn is_iterable(v: &Value) -> bool {
    // minijinja iterates `none` as empty; Python's `iter(None)` raises.
    v.is_undefined() || (!v.is_none() && v.try_iter().is_ok())
}

pub(crate) fn is_number(v: &Value) -> bool {
    matches!(v.kind(), ValueKind::Number | ValueKind::Bool)
}

pub(crate) fn is_integer(v: &Value) -> bool {
    v.is_integer()
}

pub(crate) fn is_float(v: &Value) -> bool {
    v.kind() == ValueKind::Number && !v.is_integer()
}
