//! Refusing the OpenAI / vLLM fields TokenSpeed does not implement. A client that asks for
//! JSON output or guided decoding and silently gets free text is worse off than with a clear
//! 400, so each field is accepted only in its neutral form.

use serde_json::Value as Json;

use crate::error::ApiError;
use crate::protocol::UnsupportedFields;

/// Checks every field of `fields`; `n` is the request's resolved choice count.
pub fn check(fields: &UnsupportedFields, n: u32) -> Result<(), ApiError> {
    if let Some(format) = present(&fields.response_format) {
        match format.get("type").and_then(Json::as_str) {
            Some("text") => {}
            Some(kind) => {
                return Err(refused(
                    "response_format",
                    &format!("type {kind:?} (structured output) is not supported"),
                ))
            }
            None => {
                return Err(refused(
                    "response_format",
                    "must be an object with a `type`",
                ))
            }
        }
    }
    let guided = [
        ("guided_json", &fields.guided_json),
        ("guided_regex", &fields.guided_regex),
        ("guided_choice", &fields.guided_choice),
        ("guided_grammar", &fields.guided_grammar),
        ("structured_outputs", &fields.structured_outputs),
        ("audio", &fields.audio),
        ("prediction", &fields.prediction),
    ];
    if let Some((name, _)) = guided.iter().find(|(_, v)| present(v).is_some()) {
        return Err(refused(name, "is not supported"));
    }
    if present(&fields.suffix).is_some_and(|s| s.as_str() != Some("")) {
        return Err(refused("suffix", "is not supported"));
    }
    if let Some(best_of) = present(&fields.best_of) {
        if best_of.as_f64() != Some(f64::from(n)) {
            return Err(refused("best_of", "is not supported (only equal to n)"));
        }
    }
    if let Some(modalities) = present(&fields.modalities) {
        if *modalities != Json::Array(vec![Json::from("text")]) {
            return Err(refused("modalities", "only [\"text\"] is supported"));
        }
    }
    Ok(())
}

/// The value unless absent or null.
fn present(value: &Option<Json>) -> Option<&Json> {
    value.as_ref().filter(|v| !v.is_null())
}

fn refused(field: &str, why: &str) -> ApiError {
    ApiError::invalid(field, why.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check_json(body: Json) -> Result<(), String> {
        let fields: UnsupportedFields = serde_json::from_value(body).map_err(|e| e.to_string())?;
        check(&fields, 2).map_err(|e| e.to_string())
    }

    #[test]
    fn neutral_forms_pass() {
        for body in [
            json!({}),
            json!({"response_format": {"type": "text"}, "suffix": "",
                   "best_of": 2, "modalities": ["text"], "guided_json": null, "audio": null}),
            json!({"response_format": null, "best_of": 2.0}),
        ] {
            assert_eq!(check_json(body.clone()), Ok(()), "{body}");
        }
    }

    #[test]
    fn anything_else_is_refused_naming_the_field() {
        for (body, field) in [
            (
                json!({"response_format": {"type": "json_object"}}),
                "response_format",
            ),
            (
                json!({"response_format": {"type": "json_schema", "json_schema": {}}}),
                "response_format",
            ),
            (json!({"response_format": "json"}), "response_format"),
            (json!({"guided_json": {"type": "object"}}), "guided_json"),
            (json!({"guided_regex": "a+"}), "guided_regex"),
            (json!({"guided_choice": ["a", "b"]}), "guided_choice"),
            (json!({"guided_grammar": "root ::= x"}), "guided_grammar"),
            (
                json!({"structured_outputs": {"json": {}}}),
                "structured_outputs",
            ),
            (json!({"suffix": "end"}), "suffix"),
            (json!({"best_of": 3}), "best_of"),
            (json!({"modalities": ["text", "audio"]}), "modalities"),
            (json!({"audio": {"voice": "alloy"}}), "audio"),
            (
                json!({"prediction": {"type": "content", "content": "x"}}),
                "prediction",
            ),
        ] {
            let e = check_json(body.clone()).expect_err(&body.to_string());
            assert!(e.starts_with(&format!("{field}:")), "{body}: {e}");
        }
    }
}
