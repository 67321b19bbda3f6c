//! Python's `str()`, `repr()` and `json.dumps()` for template values, so that templates print
//! exactly what jinja2 prints (`True`, `None`, `1e+16`, `{"a": 1}`), not Rust's spellings.

use minijinja::value::{Value, ValueKind};
use minijinja::{Error, ErrorKind};

/// Python's `str.isspace()` set (Rust's `char::is_whitespace` lacks U+001C..U+001F).
pub(crate) fn is_python_whitespace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `repr(float)`: shortest round-trip digits, fixed notation for exponents -4..16, else `1e+16`.
pub(crate) fn float_repr(value: f64) -> String {
    if value.is_nan() {
        return "nan".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.into();
    }
    // Rust's `{:e}` gives the same shortest round-trip digits as Python's repr.
    let sci = format!("{value:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let body = if (-4..16).contains(&exp) {
        if exp >= 0 {
            let int_len = exp as usize + 1;
            let padded = format!("{digits:0<int_len$}");
            let frac = &padded[int_len..];
            format!(
                "{}.{}",
                &padded[..int_len],
                if frac.is_empty() { "0" } else { frac }
            )
        } else {
            format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
        }
    } else {
        let frac = if digits.len() > 1 {
            format!(".{}", &digits[1..])
        } else {
            String::new()
        };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        format!("{}{frac}e{exp_sign}{:02}", &digits[..1], exp.abs())
    };
    format!("{sign}{body}")
}

fn as_float(value: &Value) -> Option<f64> {
    (value.kind() == ValueKind::Number && !value.is_integer())
        .then(|| f64::try_from(value.clone()).ok())
        .flatten()
}

/// Python `str(value)`; strings are returned unquoted.
pub(crate) fn python_str(value: &Value) -> String {
    match value.kind() {
        ValueKind::String => value.as_str().unwrap_or_default().to_string(),
        ValueKind::Undefined => String::new(),
        _ => python_repr(value),
    }
}

/// Python `repr(value)` (non-printable detection is limited to common control and space
/// characters).
pub(crate) fn python_repr(value: &Value) -> String {
    match value.kind() {
        ValueKind::Undefined => String::new(),
        ValueKind::None => "None".into(),
        ValueKind::Bool => if value.is_true() { "True" } else { "False" }.into(),
        ValueKind::Number => as_float(value).map_or_else(|| value.to_string(), float_repr),
        ValueKind::String => string_repr(value.as_str().unwrap_or_default()),
        ValueKind::Map => {
            let items: Vec<String> = map_items(value)
                .map(|(k, v)| format!("{}: {}", python_repr(&k), python_repr(&v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<String> = value
                .try_iter()
                .map(|iter| iter.map(|v| python_repr(&v)).collect())
                .unwrap_or_default();
            format!("[{}]", items.join(", "))
        }
        _ => value.to_string(),
    }
}

fn map_items(value: &Value) -> impl Iterator<Item = (Value, Value)> + '_ {
    value.try_iter().into_iter().flatten().map(move |key| {
        let item = value.get_item(&key).unwrap_or_default();
        (key, item)
    })
}

fn string_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => out.extend(['\\', c]),
            c if is_unprintable(c) => match c as u32 {
                n @ 0..=0xff => out.push_str(&format!("\\x{n:02x}")),
                n @ 0x100..=0xffff => out.push_str(&format!("\\u{n:04x}")),
                n => out.push_str(&format!("\\U{n:08x}")),
            },
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

fn is_unprintable(c: char) -> bool {
    matches!(c as u32, 0..=0x1f | 0x7f..=0xa0 | 0xad | 0x1680 | 0x2000..=0x200f | 0x2028..=0x202f
        | 0x205f..=0x2064 | 0x3000 | 0xfeff)
}

/// Options of Python's `json.dumps` that templates use.
pub(crate) struct JsonStyle {
    /// `indent`: the string repeated per nesting level, `None` for a single line.
    pub indent: Option<String>,
    /// `separators[0]`.
    pub item_sep: String,
    /// `separators[1]`.
    pub key_sep: String,
    /// `sort_keys`.
    pub sort_keys: bool,
    /// `ensure_ascii`.
    pub ensure_ascii: bool,
}

/// Python's `json.dumps(value, ...)` with the given style.
pub(crate) fn json_dumps(value: &Value, style: &JsonStyle) -> Result<String, Error> {
    let mut out = String::new();
    write_json(&mut out, value, style, 0)?;
    Ok(out)
}

fn newline(out: &mut String, style: &JsonStyle, level: usize) {
    if let Some(indent) = &style.indent {
        out.push('\n');
        out.push_str(&indent.repeat(level));
    }
}

fn write_json(
    out: &mut String,
    value: &Value,
    style: &JsonStyle,
    level: usize,
) -> Result<(), Error> {
    match value.kind() {
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => match as_float(value) {
            Some(f) if f.is_nan() => out.push_str("NaN"),
            Some(f) if f.is_infinite() => {
                out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" })
            }
            Some(f) => out.push_str(&float_repr(f)),
            None => out.push_str(&value.to_string()),
        },
        ValueKind::String => write_json_str(out, value.as_str().unwrap_or_default(), style),
        ValueKind::Seq | ValueKind::Iterable | ValueKind::Map => {
            let is_map = value.kind() == ValueKind::Map;
            let mut items: Vec<(Value, Value)> = if is_map {
                map_items(value).collect()
            } else {
                value.try_iter()?.map(|v| (Value::UNDEFINED, v)).collect()
            };
            if is_map && style.sort_keys {
                items.sort_by_key(|(k, _)| python_str(k));
            }
            let (open, close) = if is_map { ('{', '}') } else { ('[', ']') };
            out.push(open);
            for (i, (key, item)) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&style.item_sep);
                }
                newline(out, style, level + 1);
                if is_map {
                    let key = match key.kind() {
                        ValueKind::String => key.as_str().unwrap_or_default().to_string(),
                        ValueKind::None | ValueKind::Bool => json_dumps(key, style)?,
                        _ => python_str(key),
                    };
                    write_json_str(out, &key, style);
                    out.push_str(&style.key_sep);
                }
                write_json(out, item, style, level + 1)?;
            }
            if !items.is_empty() {
                newline(out, style, level);
            }
            out.push(close);
        }
        kind => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: object of type {kind} is not JSON serializable"),
            ))
        }
    }
    Ok(())
}

fn write_json_str(out: &mut String, s: &str, style: &JsonStyle) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (style.ensure_ascii && !c.is_ascii()) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_like_python() {
        let cases = [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-0.0, "-0.0"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (1.5e-7, "1.5e-07"),
            (0.0001, "0.0001"),
            (1e-5, "1e-05"),
            (123.456, "123.456"),
            (2.5e100, "2.5e+100"),
            (f64::MAX, "1.7976931348623157e+308"),
        ];
        for (value, expected) in cases {
            assert_eq!(float_repr(value), expected, "{value}");
        }
    }

    #[test]
    fn json_dumps_matches_python_defaults() {
        let value = Value::from_serialize(serde_json::json!(
            {"b": [1, 2.0, true, null], "a": "é\"\n\u{1}", "c": {}, "d": []}
        ));
        let style = |indent: Option<&str>, item_sep: &str| JsonStyle {
            indent: indent.map(str::to_string),
            item_sep: item_sep.into(),
            key_sep: ": ".into(),
            sort_keys: false,
            ensure_ascii: false,
        };
        assert_eq!(
            json_dumps(&value, &style(None, ", ")).unwrap(),
            r#"{"b": [1, 2.0, true, null], "a": "é\"\n\u0001", "c": {}, "d": []}"#
        );
        assert_eq!(
            json_dumps(&value, &style(Some("  "), ",")).unwrap(),
            "{\n  \"b\": [\n    1,\n    2.0,\n    true,\n    null\n  ],\n  \"a\": \"é\\\"\\n\\u0001\",\n  \"c\": {},\n  \"d\": []\n}"
        );
    }

    #[test]
    fn repr_of_containers() {
        let value = Value::from_serialize(serde_json::json!({"k": ["it's", 1.5, false, null]}));
        assert_eq!(python_repr(&value), r#"{'k': ["it's", 1.5, False, None]}"#);
    }
}
