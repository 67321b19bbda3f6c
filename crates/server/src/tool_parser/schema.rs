//! Parameter types from the request's tool definitions, and typing of raw XML values by them.

use serde_json::{Map, Value as Json};
use std::collections::HashMap;

/// Declared JSON-schema type of each parameter of each tool: `types[tool][param]`.
#[derive(Debug, Default, Clone)]
pub(crate) struct ToolSchemas {
    types: HashMap<String, HashMap<String, String>>,
}

impl ToolSchemas {
    /// Reads OpenAI tool definitions (`{"type": "function", "function": {...}}` or bare functions).
    pub(crate) fn new(tools: &[Json]) -> Self {
        let mut types = HashMap::new();
        for tool in tools {
            let function = tool.get("function").unwrap_or(tool);
            let Some(name) = function.get("name").and_then(Json::as_str) else {
                continue;
            };
            let properties = function
                .pointer("/parameters/properties")
                .and_then(Json::as_object);
            let params = properties
                .into_iter()
                .flatten()
                .filter_map(|(param, schema)| Some((param.clone(), declared_type(schema)?)));
            types.insert(name.to_string(), params.collect());
        }
        Self { types }
    }

    /// The declared type of a parameter, if any.
    pub(crate) fn param_type(&self, tool: &str, param: &str) -> Option<&str> {
        self.types.get(tool)?.get(param).map(String::as_str)
    }
}

/// `"type": "integer"`, `"type": ["integer", "null"]`, or the first typed `anyOf`/`oneOf` branch.
fn declared_type(schema: &Json) -> Option<String> {
    match schema.get("type") {
        Some(Json::String(t)) => Some(t.clone()),
        Some(Json::Array(ts)) => ts
            .iter()
            .filter_map(Json::as_str)
            .find(|t| *t != "null")
            .map(str::to_string),
        _ => ["anyOf", "oneOf"]
            .iter()
            .filter_map(|key| schema.get(*key)?.as_array())
            .flatten()
            .find_map(declared_type),
    }
}

/// Types a raw parameter value: by the declared type when it parses as that type; otherwise
/// JSON, then Python literals (`True`, `False`, `None`), else the text itself (as vLLM's
/// `qwen3_coder`, SGLang and Qwen-Agent do; values are taken literally, no entity decoding).
pub(crate) fn typed_value(raw: &str, declared: Option<&str>) -> Json {
    let text = raw.trim();
    let parsed = match declared {
        Some("string") => return Json::String(raw.to_string()),
        Some("integer") => text.parse::<i64>().ok().map(Json::from),
        Some("number") => text.parse::<i64>().ok().map(Json::from).or_else(|| {
            text.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(Json::from)
        }),
        Some("boolean") => match text.to_ascii_lowercase().as_str() {
            "true" => Some(Json::Bool(true)),
            "false" => Some(Json::Bool(false)),
            _ => None,
        },
        Some("object") => serde_json::from_str::<Map<String, Json>>(text)
            .ok()
            .map(Json::Object),
        Some("array") => serde_json::from_str::<Vec<Json>>(text)
            .ok()
            .map(Json::Array),
        Some("null") => matches!(text, "null" | "None").then_some(Json::Null),
        _ => None,
    };
    parsed.unwrap_or_else(|| {
        serde_json::from_str(text).unwrap_or_else(|_| match text {
            "True" => Json::Bool(true),
            "False" => Json::Bool(false),
            "None" => Json::Null,
            _ => Json::String(raw.to_string()),
        })
    })
}
