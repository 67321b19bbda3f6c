//! The minijinja environment configured the way transformers configures jinja2 for chat
//! templates (`utils/chat_template_utils.py`): `trim_blocks`, `lstrip_blocks`, loop controls,
//! no autoescape, a `tojson` that is Python's `json.dumps` (no HTML escaping, `", "` and `": "`
//! separators, insertion order), `raise_exception`, and Python's spelling when values print.

use crate::pyfmt::{is_python_whitespace, json_dumps, python_repr, python_str, JsonStyle};
use minijinja::value::{from_args, Kwargs, Value, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, Output, State};

/// A fresh environment with the chat-template filters, functions and formatting.
pub(crate) fn chat_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(false);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_formatter(python_formatter);
    env.set_unknown_method_callback(python_methods);
    env.add_filter("tojson", tojson);
    env.add_filter("string", |value: &Value| python_str(value));
    env.add_filter("trim", trim);
    env.add_function("raise_exception", raise_exception);
    env
}

/// `{{ value }}` prints like jinja2: `True`, `None`, `1e+16`, `['a', 1]`.
fn python_formatter(out: &mut Output, state: &State, value: &Value) -> Result<(), Error> {
    let is_float = value.kind() == ValueKind::Number && !value.is_integer();
    match value.kind() {
        ValueKind::None | ValueKind::Bool | ValueKind::Seq | ValueKind::Map => {
            out.write_str(&python_repr(value)).map_err(Error::from)
        }
        ValueKind::Number if is_float => out.write_str(&python_repr(value)).map_err(Error::from),
        _ => minijinja::escape_formatter(out, state, value),
    }
}

/// `tojson(indent=None, separators=None, sort_keys=False, ensure_ascii=False)` as in
/// transformers (its own filter, which calls `json.dumps`).
fn tojson(value: &Value, indent: Option<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let indent = match kwargs.get::<Option<Value>>("indent")?.or(indent) {
        Some(v) if v.is_none() => None,
        Some(v) if v.is_integer() => Some(" ".repeat(i64::try_from(v)?.max(0) as usize)),
        Some(v) if v.kind() == ValueKind::String => {
            Some(v.as_str().unwrap_or_default().to_string())
        }
        Some(v) => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: bad indent {v}"),
            ))
        }
        None => None,
    };
    let default_item_sep = if indent.is_some() { "," } else { ", " };
    let (item_sep, key_sep) = match kwargs.get::<Option<Vec<String>>>("separators")? {
        Some(seps) if seps.len() == 2 => (seps[0].clone(), seps[1].clone()),
        Some(_) => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be a pair",
            ))
        }
        None => (default_item_sep.to_string(), ": ".to_string()),
    };
    let style = JsonStyle {
        indent,
        item_sep,
        key_sep,
        sort_keys: kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false),
        ensure_ascii: kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false),
    };
    kwargs.assert_all_used()?;
    Ok(Value::from(json_dumps(value, &style)?))
}

/// jinja2's `trim(chars=None)`: Python's `str.strip`.
fn trim(value: &Value, chars: Option<String>) -> String {
    let text = python_str(value);
    match chars {
        Some(chars) => text.trim_matches(|c| chars.contains(c)).to_string(),
        None => text.trim_matches(is_python_whitespace).to_string(),
    }
}

/// `raise_exception(message)`: aborts rendering with the template's own message.
fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// Python methods on values (`.startswith`, `.split`, `.items()`, ...) through
/// minijinja-contrib's pycompat, with Python's whitespace for the argument-less strip/split.
fn python_methods(
    state: &State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    if let (Some(s), true) = (value.as_str(), args.is_empty()) {
        match method {
            "strip" => return Ok(Value::from(s.trim_matches(is_python_whitespace))),
            "lstrip" => return Ok(Value::from(s.trim_start_matches(is_python_whitespace))),
            "rstrip" => return Ok(Value::from(s.trim_end_matches(is_python_whitespace))),
            "split" => {
                let parts = s.split(is_python_whitespace).filter(|p| !p.is_empty());
                return Ok(parts.map(Value::from).collect());
            }
            _ => {}
        }
    }
    if value.kind() == ValueKind::String && method == "split" {
        // Python's str.split(None, maxsplit) also splits on whitespace; pycompat handles the rest.
        let (sep, _max): (Option<Value>, Option<i64>) = from_args(args)?;
        if sep.as_ref().is_some_and(|s| s.as_str() == Some("")) {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "split: empty separator",
            ));
        }
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}
