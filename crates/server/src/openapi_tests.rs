//! The documentation-only request schemas agree with what `validate` accepts: every value the
//! document lists is accepted, and values just outside it are rejected.

use super::ApiDoc;
use crate::validate;
use serde_json::{json, Value};
use utoipa::OpenApi;

fn schemas() -> Value {
    serde_json::to_value(ApiDoc::openapi()).unwrap()["components"]["schemas"].clone()
}

fn strings(values: &Value) -> Vec<String> {
    let list = values.as_array().expect("a list");
    list.iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn every_documented_role_and_part_type_is_accepted() {
    let schemas = schemas();
    let variants = schemas["ChatMessageSchema"]["oneOf"].as_array().unwrap();
    let roles: Vec<String> = variants
        .iter()
        .flat_map(|v| strings(&v["properties"]["role"]["enum"]))
        .collect();
    assert_eq!(
        roles,
        ["system", "developer", "user", "assistant", "tool"],
        "{variants:?}"
    );
    let part_types = strings(&schemas["TextTypeSchema"]["enum"]);
    for role in &roles {
        for part_type in &part_types {
            let message = json!({"role": role, "content": [{"type": part_type, "text": "hi"}]});
            let accepted = validate::messages(std::slice::from_ref(&message));
            assert!(accepted.is_ok(), "{message}");
        }
        // Content may be omitted or null (documented as optional and nullable).
        validate::messages(&[json!({"role": role})]).unwrap();
        validate::messages(&[json!({"role": role, "content": null})]).unwrap();
    }
    for undocumented in ["function", "image_url"] {
        assert!(validate::messages(&[json!({"role": undocumented, "content": ""})]).is_err());
        let part = json!({"role": "user", "content": [{"type": undocumented, "text": "x"}]});
        assert!(validate::messages(&[part]).is_err());
    }
}

#[test]
fn documented_tools_and_tool_choices_are_accepted() {
    let schemas = schemas();
    let tool_type = strings(&schemas["FunctionTypeSchema"]["enum"]);
    assert_eq!(tool_type, ["function"]);
    let name = &schemas["FunctionDefinitionSchema"]["properties"]["name"];
    assert_eq!(name["pattern"], "^[A-Za-z0-9_.-]{1,64}$");
    let longest = "a".repeat(64);
    let tools: Vec<Value> = ["get_weather", "a.b-c_9", longest.as_str()]
        .iter()
        .map(|n| {
            json!({"type": "function", "function": {"name": n, "description": "d",
                 "parameters": {"type": "object", "properties": {}}}})
        })
        .collect();
    validate::tools(&tools).unwrap();
    for (bad, why) in [
        (
            json!({"type": "function", "function": {"name": "a".repeat(65)}}),
            "too long",
        ),
        (
            json!({"type": "function", "function": {"name": "a b"}}),
            "pattern",
        ),
        (
            json!({"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}),
            "type",
        ),
        (
            json!({"type": "function", "function": {"name": "f", "parameters": {"properties": []}}}),
            "properties",
        ),
    ] {
        assert!(validate::tools(&[bad]).is_err(), "{why}");
    }
    let modes = strings(&schemas["ToolChoiceModeSchema"]["enum"]);
    assert_eq!(modes, ["none", "auto", "required"]);
    for mode in &modes {
        validate::tool_choice(Some(&json!(mode)), Some(&tools)).unwrap();
    }
    for named in [
        json!({"type": "function", "function": {"name": "get_weather"}}),
        json!({"function": {"name": "get_weather"}}), // `type` is optional
    ] {
        let choice = validate::tool_choice(Some(&named), Some(&tools)).unwrap();
        assert_eq!(choice, validate::ToolChoice::Named("get_weather".into()));
    }
    let named = &schemas["NamedToolChoiceSchema"];
    assert_eq!(strings(&named["required"]), ["function"]);
}

#[test]
fn assistant_tool_calls_take_string_or_object_arguments() {
    let schemas = schemas();
    let kinds = &schemas["ToolArgumentsSchema"]["oneOf"];
    assert_eq!(
        kinds[0]["$ref"],
        "#/components/schemas/JsonObjectTextSchema"
    );
    assert_eq!(kinds[1]["type"], "object");
    let text = &schemas["JsonObjectTextSchema"];
    assert_eq!(text["type"], "string");
    assert_eq!(text["pattern"], r"^[ \t\n\r]*\{[\s\S]*\}[ \t\n\r]*$");
    let template = crate::template::ChatTemplate::builtin_qwen3_5();
    let render = |arguments: Value| {
        let messages = [
            json!({"role": "user", "content": "weather?"}),
            json!({"role": "assistant", "content": null, "reasoning_content": "r",
                   "tool_calls": [{"id": "call_0", "type": "function",
                                   "function": {"name": "get_weather", "arguments": arguments}}]}),
            json!({"role": "tool", "tool_call_id": "call_0", "content": "sunny"}),
        ];
        validate::messages(&messages)?;
        validate::history_tool_calls(&messages, None)?;
        let input = crate::template::ChatInput {
            messages: &messages,
            tools: None,
            add_generation_prompt: true,
            kwargs: None,
        };
        template
            .render(&input)
            .map_err(|e| crate::error::ApiError::bad_request(e.to_string()))
    };
    // Texts outside the pattern (not braced by `{`...`}` up to JSON whitespace) are 400.
    for outside in ["[1]", "1", "\"{}\"", "null", "x{}", "{} x", ""] {
        assert!(render(json!(outside)).is_err(), "{outside:?}");
    }
    for arguments in [
        json!("{\"city\": \"Paris\"}"),
        json!(" \n\t{\"city\":\"Paris\"}\r\n"),
        json!({"city": "Paris"}),
    ] {
        let prompt = render(arguments).unwrap();
        assert!(
            prompt.contains("<parameter=city>\nParis\n</parameter>"),
            "{prompt}"
        );
    }
}
