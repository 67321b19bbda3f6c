//! Request validation: every rule a client can break, each with a message naming the field.
//! Produces the engine-facing [`Limits`] and sampling parameters.

use serde_json::Value as Json;
use tokenspeed_scheduler::SamplingParams;

use crate::error::ApiError;
use crate::protocol::SamplingFields;

/// Most choices per prompt (`n`).
pub const MAX_N: u32 = 16;
/// Most `top_logprobs` / `logprobs` alternatives.
pub const MAX_TOP_LOGPROBS: u32 = 20;
/// Most stop strings.
pub const MAX_STOP_STRINGS: usize = 16;

const ROLES: [&str; 5] = ["system", "developer", "user", "assistant", "tool"];

/// Everything about a request's generation except its prompt.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Sampling parameters.
    pub sampling: SamplingParams,
    /// Stop strings.
    pub stop: Vec<String>,
    /// Extra stop token ids.
    pub stop_token_ids: Vec<u32>,
    /// Ignore EOS.
    pub ignore_eos: bool,
    /// Minimum generated tokens before a stop token counts.
    pub min_tokens: usize,
    /// Choices per prompt.
    pub n: usize,
    /// Requested output limit (`None`: up to the context length).
    pub max_tokens: Option<usize>,
    /// `(token id, value)` pairs added to the logits (vocabulary checked by the route).
    pub logit_bias: Vec<(u32, f32)>,
}

fn check_range(name: &str, value: Option<f32>, lo: f32, hi: f32) -> Result<(), ApiError> {
    match value {
        Some(v) if !(lo..=hi).contains(&v) || v.is_nan() => Err(ApiError::invalid(
            name,
            format!("{v} is out of range [{lo}, {hi}]"),
        )),
        _ => Ok(()),
    }
}

/// Checks the shared sampling fields; `max_tokens` is the route's resolved field and
/// `defaults` fill the sampling fields the request omits.
pub fn limits(
    fields: &SamplingFields,
    max_tokens: Option<i64>,
    defaults: &SamplingParams,
) -> Result<Limits, ApiError> {
    check_range("temperature", fields.temperature, 0.0, 2.0)?;
    check_range("min_p", fields.min_p, 0.0, 1.0)?;
    check_range("presence_penalty", fields.presence_penalty, -2.0, 2.0)?;
    check_range("frequency_penalty", fields.frequency_penalty, -2.0, 2.0)?;
    if let Some(top_p) = fields.top_p {
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(ApiError::invalid(
                "top_p",
                format!("{top_p} is not in (0, 1]"),
            ));
        }
    }
    if let Some(r) = fields.repetition_penalty {
        if !(r > 0.0 && r.is_finite()) {
            return Err(ApiError::invalid(
                "repetition_penalty",
                format!("{r} must be > 0"),
            ));
        }
    }
    let top_k = match fields.top_k {
        None => defaults.top_k,
        Some(-1) | Some(0) => 0,
        Some(k) if k > 0 => u32::try_from(k).unwrap_or(u32::MAX),
        Some(k) => {
            return Err(ApiError::invalid(
                "top_k",
                format!("{k} must be -1, 0 or > 0"),
            ))
        }
    };
    let seed = match fields.seed {
        Some(s) if s < 0 => return Err(ApiError::invalid("seed", format!("{s} must be >= 0"))),
        s => s.map(|s| s as u64),
    };
    let n = fields.n.unwrap_or(1);
    if !(1..=MAX_N).contains(&n) {
        return Err(ApiError::invalid(
            "n",
            format!("{n} is not in [1, {MAX_N}]"),
        ));
    }
    crate::unsupported::check(&fields.unsupported, n)?;
    let max_tokens = match max_tokens {
        Some(m) if m < 1 => {
            return Err(ApiError::invalid("max_tokens", format!("{m} must be >= 1")))
        }
        m => m.map(|m| usize::try_from(m).unwrap_or(usize::MAX)),
    };
    let stop = fields
        .stop
        .clone()
        .map(|s| s.into_vec())
        .unwrap_or_default();
    if stop.len() > MAX_STOP_STRINGS {
        return Err(ApiError::invalid(
            "stop",
            format!("{} stop strings, at most {MAX_STOP_STRINGS}", stop.len()),
        ));
    }
    if stop.iter().any(String::is_empty) {
        return Err(ApiError::invalid("stop", "stop strings must not be empty"));
    }
    let min_tokens = fields.min_tokens.unwrap_or(0) as usize;
    if let Some(max) = max_tokens {
        if min_tokens > max {
            return Err(ApiError::invalid(
                "min_tokens",
                format!("{min_tokens} is more than max_tokens={max}"),
            ));
        }
    }
    Ok(Limits {
        sampling: SamplingParams {
            temperature: fields.temperature.unwrap_or(defaults.temperature),
            top_p: fields.top_p.unwrap_or(defaults.top_p),
            top_k,
            min_p: fields.min_p.unwrap_or(defaults.min_p),
            presence_penalty: fields.presence_penalty.unwrap_or(defaults.presence_penalty),
            frequency_penalty: fields
                .frequency_penalty
                .unwrap_or(defaults.frequency_penalty),
            repetition_penalty: fields
                .repetition_penalty
                .unwrap_or(defaults.repetition_penalty),
            seed,
        },
        stop,
        stop_token_ids: fields.stop_token_ids.clone().unwrap_or_default(),
        ignore_eos: fields.ignore_eos,
        min_tokens,
        n: n as usize,
        max_tokens,
        logit_bias: logit_bias(fields.logit_bias.as_ref())?,
    })
}

/// Most `logit_bias` entries: a bound keeps a request's sampling inputs small (OpenAI takes 300).
pub const MAX_LOGIT_BIAS: usize = 1024;

/// `logit_bias`: an object of token-id strings to numbers in [-100, 100].
fn logit_bias(bias: Option<&Json>) -> Result<Vec<(u32, f32)>, ApiError> {
    let map = match bias {
        None | Some(Json::Null) => return Ok(Vec::new()),
        Some(Json::Object(map)) => map,
        Some(_) => return Err(ApiError::invalid("logit_bias", "must be an object")),
    };
    if map.len() > MAX_LOGIT_BIAS {
        return Err(ApiError::invalid(
            "logit_bias",
            format!("{} entries, at most {MAX_LOGIT_BIAS}", map.len()),
        ));
    }
    map.iter()
        .map(|(key, value)| {
            let token = key.trim().parse::<u32>().map_err(|_| {
                ApiError::invalid("logit_bias", format!("key {key:?} is not a token id"))
            })?;
            match value.as_f64() {
                Some(v) if (-100.0..=100.0).contains(&v) => Ok((token, v as f32)),
                _ => Err(ApiError::invalid(
                    "logit_bias",
                    format!("value {value} for token {token} is not a number in [-100, 100]"),
                )),
            }
        })
        .collect()
}

/// The output limit of a prompt of `prompt_len` tokens: the requested one, which must fit in
/// the context with the prompt, or all the room left.
pub fn max_new_tokens(
    prompt_len: usize,
    requested: Option<usize>,
    min_tokens: usize,
    max_model_len: usize,
) -> Result<usize, ApiError> {
    let budget = output_budget(prompt_len, requested, max_model_len)?;
    if min_tokens > budget {
        return Err(ApiError::invalid(
            "min_tokens",
            format!("{min_tokens} is more than the {budget} tokens this request may generate"),
        ));
    }
    Ok(budget)
}

fn output_budget(
    prompt_len: usize,
    requested: Option<usize>,
    max_model_len: usize,
) -> Result<usize, ApiError> {
    if prompt_len == 0 {
        return Err(ApiError::bad_request("the prompt is empty (0 tokens)"));
    }
    if prompt_len >= max_model_len {
        return Err(ApiError::bad_request(format!(
            "the prompt has {prompt_len} tokens, which leaves no room to generate within \
             max_model_len={max_model_len}"
        )));
    }
    let room = max_model_len - prompt_len;
    match requested {
        None => Ok(room),
        Some(m) if m <= room => Ok(m),
        Some(m) => Err(ApiError::invalid(
            "max_tokens",
            format!(
                "{m} tokens requested, but the prompt has {prompt_len} tokens and \
                 max_model_len={max_model_len} leaves room for {room}"
            ),
        )),
    }
}

/// Checks the chat messages' shape (the template checks the rest).
pub fn messages(messages: &[Json]) -> Result<(), ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "must hold at least one message",
        ));
    }
    for (i, message) in messages.iter().enumerate() {
        let param = format!("messages[{i}]");
        let Some(object) = message.as_object() else {
            return Err(ApiError::invalid(&param, "must be an object"));
        };
        let role = object.get("role").and_then(Json::as_str).unwrap_or("");
        if !ROLES.contains(&role) {
            return Err(ApiError::invalid(
                &format!("{param}.role"),
                format!("{:?} is not one of {ROLES:?}", object.get("role")),
            ));
        }
        match object.get("content") {
            None | Some(Json::Null) | Some(Json::String(_)) => {}
            Some(Json::Array(parts)) => {
                for (j, part) in parts.iter().enumerate() {
                    if part.get("type").and_then(Json::as_str) != Some("text")
                        || !part.get("text").is_some_and(Json::is_string)
                    {
                        return Err(ApiError::invalid(
                            &format!("{param}.content[{j}]"),
                            "only {\"type\": \"text\", \"text\": ...} parts are supported",
                        ));
                    }
                }
            }
            Some(_) => {
                return Err(ApiError::invalid(
                    &format!("{param}.content"),
                    "must be a string or a list of text parts",
                ))
            }
        }
    }
    Ok(())
}

/// Checks OpenAI tool definitions.
pub fn tools(tools: &[Json]) -> Result<(), ApiError> {
    for (i, tool) in tools.iter().enumerate() {
        let param = format!("tools[{i}]");
        if tool.get("type").and_then(Json::as_str) != Some("function") {
            return Err(ApiError::invalid(
                &format!("{param}.type"),
                "must be \"function\"",
            ));
        }
        let Some(function) = tool.get("function").and_then(Json::as_object) else {
            return Err(ApiError::invalid(
                &format!("{param}.function"),
                "must be an object",
            ));
        };
        let name = function.get("name").and_then(Json::as_str).unwrap_or("");
        let valid_name = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !valid_name {
            return Err(ApiError::invalid(
                &format!("{param}.function.name"),
                "must be 1-64 characters of a-z, A-Z, 0-9, '_', '-', '.'",
            ));
        }
        match function.get("parameters") {
            None | Some(Json::Null) => {}
            Some(Json::Object(schema)) => {
                let kind = schema.get("type");
                if kind.is_some_and(|k| k != "object") {
                    return Err(ApiError::invalid(
                        &format!("{param}.function.parameters.type"),
                        "a function's parameters schema must have type \"object\"",
                    ));
                }
                if schema.get("properties").is_some_and(|p| !p.is_object()) {
                    return Err(ApiError::invalid(
                        &format!("{param}.function.parameters.properties"),
                        "must be an object",
                    ));
                }
            }
            Some(_) => {
                return Err(ApiError::invalid(
                    &format!("{param}.function.parameters"),
                    "must be a JSON schema object",
                ))
            }
        }
    }
    Ok(())
}

/// A conversation as chat and /tokenize take it: messages, tools, and the history's tool calls.
pub fn conversation(messages: &[Json], tools: Option<&[Json]>) -> Result<(), ApiError> {
    self::messages(messages)?;
    if let Some(tools) = tools {
        self::tools(tools)?;
    }
    history_tool_calls(messages, tools)
}

/// Checks the tool calls of assistant messages: `tool_calls` is a list of calls each naming a
/// function, and with `tools` given, a declared one (a call to an undeclared function is a
/// client bug that would otherwise be rendered into the prompt as if it had happened).
pub fn history_tool_calls(messages: &[Json], tools: Option<&[Json]>) -> Result<(), ApiError> {
    let declared: Option<Vec<&str>> = tools.map(|tools| {
        tools
            .iter()
            .filter_map(|t| t.pointer("/function/name").and_then(Json::as_str))
            .collect()
    });
    for (i, message) in messages.iter().enumerate() {
        let calls = match message.get("tool_calls") {
            None | Some(Json::Null) => continue,
            Some(Json::Array(calls)) => calls,
            Some(_) => {
                return Err(ApiError::invalid(
                    &format!("messages[{i}].tool_calls"),
                    "must be a list of calls",
                ))
            }
        };
        for (j, call) in calls.iter().enumerate() {
            let param = format!("messages[{i}].tool_calls[{j}].function.name");
            let Some(name) = call.pointer("/function/name").and_then(Json::as_str) else {
                return Err(ApiError::invalid(&param, "must be a string"));
            };
            if let Some(declared) = &declared {
                if !declared.contains(&name) {
                    return Err(ApiError::invalid(
                        &param,
                        format!("'{name}' is not one of the declared tools {declared:?}"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// What `tool_choice` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// Parse calls if the model makes them (the default).
    Auto,
    /// Do not parse calls: everything is content.
    None,
    /// The model must call one of the tools.
    Required,
    /// The model must call this tool.
    Named(String),
}

impl ToolChoice {
    /// Whether the answer must be a call.
    pub fn forces_call(&self) -> bool {
        matches!(self, Self::Required | Self::Named(_))
    }
}

/// Parses `tool_choice` (`"auto"`, `"none"`, `"required"` or
/// `{"type": "function", "function": {"name": ...}}`) against the request's `tools`.
pub fn tool_choice(choice: Option<&Json>, tools: Option<&[Json]>) -> Result<ToolChoice, ApiError> {
    let parsed = match choice {
        None | Some(Json::Null) => ToolChoice::Auto,
        Some(Json::String(s)) if s == "auto" => ToolChoice::Auto,
        Some(Json::String(s)) if s == "none" => ToolChoice::None,
        Some(Json::String(s)) if s == "required" => ToolChoice::Required,
        Some(Json::Object(o)) => match o.get("function").and_then(|f| f.get("name")) {
            Some(Json::String(name)) if o.get("type").is_none_or(|t| t == "function") => {
                ToolChoice::Named(name.clone())
            }
            _ => {
                return Err(ApiError::invalid(
                    "tool_choice",
                    "an object must be {\"type\": \"function\", \"function\": {\"name\": ...}}",
                ))
            }
        },
        Some(other) => {
            return Err(ApiError::invalid(
                "tool_choice",
                format!("{other} is not \"auto\", \"none\", \"required\" or a named function"),
            ))
        }
    };
    let names: Vec<&str> = tools
        .unwrap_or_default()
        .iter()
        .filter_map(|t| t.get("function")?.get("name")?.as_str())
        .collect();
    match &parsed {
        ToolChoice::Required if names.is_empty() => Err(ApiError::invalid(
            "tool_choice",
            "\"required\" needs a non-empty `tools` list",
        )),
        ToolChoice::Named(name) if !names.contains(&name.as_str()) => Err(ApiError::invalid(
            "tool_choice",
            format!("function '{name}' is not in `tools`"),
        )),
        _ => Ok(parsed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(body: serde_json::Value) -> SamplingFields {
        serde_json::from_value(body).expect("sampling fields")
    }

    #[test]
    fn omitted_sampling_fields_take_the_server_defaults() {
        let model = SamplingParams {
            temperature: 0.6,
            top_p: 0.95,
            top_k: 20,
            min_p: 0.05,
            repetition_penalty: 1.1,
            ..SamplingParams::default()
        };
        let omitted = limits(&fields(serde_json::json!({})), None, &model).unwrap();
        assert_eq!(omitted.sampling, model);
        let given = serde_json::json!({"temperature": 0.0, "top_p": 1.0, "top_k": -1,
                                       "min_p": 0.0, "repetition_penalty": 1.0});
        let given = limits(&fields(given), None, &model).unwrap().sampling;
        let plain = SamplingParams::default();
        assert_eq!((given.top_p, given.top_k, given.min_p), (1.0, 0, 0.0));
        assert_eq!((given.temperature, given.repetition_penalty), (0.0, 1.0));
        let none = limits(&fields(serde_json::json!({})), None, &plain).unwrap();
        assert_eq!(none.sampling, plain);
    }
}
