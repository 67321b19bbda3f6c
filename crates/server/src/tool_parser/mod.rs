//! Tool calls in model output: the Qwen3.5 XML dialect ([`qwen_xml`]) and the Hermes JSON
//! dialect of Qwen2.5/Qwen3 ([`hermes`]), both wrapped in `<tool_call>…</tool_call>`.
//!
//! A parser takes text deltas and returns [`ToolCallEvent`]s: content, then per call its id and
//! name, argument JSON fragments (which concatenate to the final `arguments` string) and an end.
//! The whole-text result is the same stream collected ([`parse_complete`]), so streamed and
//! non-streamed responses agree, whatever the chunking (a property test checks this). Text
//! before a call stays content; whitespace right after a call is dropped; a `<tool_call>` that
//! does not hold a well-formed call is passed through as content, with no text lost.

pub mod hermes;
pub mod qwen_xml;
mod schema;

#[cfg(test)]
mod tests;

use crate::text_buffer::partial_marker_len;
use serde_json::Value as Json;
use std::str::FromStr;

/// Opening tag of a call in both dialects.
pub(crate) const CALL_START: &str = "<tool_call>";
/// Closing tag of a call in both dialects.
pub(crate) const CALL_END: &str = "</tool_call>";

/// One step of a parsed output stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolCallEvent {
    /// Plain text for the `content` field.
    Content(String),
    /// A call begins (OpenAI streams its id and name first, with empty arguments).
    Start {
        /// Position of the call in this output (0, 1, ...).
        index: usize,
        /// The call id (`call_...`).
        id: String,
        /// The function name.
        name: String,
    },
    /// The next piece of the call's arguments JSON.
    Arguments {
        /// Which call.
        index: usize,
        /// Text to append to `arguments`.
        fragment: String,
    },
    /// The call's arguments are complete.
    End {
        /// Which call.
        index: usize,
    },
}

/// A finished tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    /// The call id.
    pub id: String,
    /// The function name.
    pub name: String,
    /// The arguments as a JSON object text.
    pub arguments: String,
}

/// Content and calls of a whole output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedOutput {
    /// The text that is not a call.
    pub content: String,
    /// The calls in order.
    pub calls: Vec<ToolCall>,
}

/// A streaming tool-call parser.
pub trait ToolCallParser: Send {
    /// Feeds the next text delta.
    fn push(&mut self, delta: &str) -> Vec<ToolCallEvent>;
    /// Ends the output: releases held text and closes a call cut off by the length limit.
    fn finish(&mut self) -> Vec<ToolCallEvent>;
}

/// The tool-call dialects (`--tool-call-parser`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolParserKind {
    /// `<function=NAME><parameter=ARG>VALUE</parameter></function>` (Qwen3.5/3.6, Qwen3-Coder).
    QwenXml,
    /// `{"name": ..., "arguments": {...}}` (Qwen2.5, Qwen3).
    Hermes,
}

impl FromStr for ToolParserKind {
    type Err = String;

    /// Accepts the names vLLM and SGLang use for the same dialects.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "qwen_xml" | "qwen3_xml" | "qwen3_coder" | "qwen3_5" => Ok(Self::QwenXml),
            "hermes" | "qwen" | "qwen25" | "qwen3" => Ok(Self::Hermes),
            _ => Err(format!(
                "unknown tool-call parser '{name}' (expected qwen3_coder/qwen_xml or hermes/qwen25)"
            )),
        }
    }
}

impl ToolParserKind {
    /// The dialect a model family was trained on, from `config.json`'s `model_type`.
    pub fn for_model_type(model_type: &str) -> Self {
        if model_type.starts_with("qwen3_5") || model_type.starts_with("qwen3_next") {
            Self::QwenXml
        } else {
            Self::Hermes
        }
    }

    /// A new parser. `tools` are the request's OpenAI tool definitions (they type XML values);
    /// call ids are `id_prefix` followed by the call index.
    pub fn parser(self, tools: &[Json], id_prefix: &str) -> Box<dyn ToolCallParser> {
        match self {
            Self::QwenXml => Box::new(qwen_xml::QwenXmlParser::new(tools, id_prefix)),
            Self::Hermes => Box::new(hermes::HermesParser::new(id_prefix)),
        }
    }
}

impl ToolParserKind {
    /// The text that opens a call in this dialect, up to and including the function name
    /// when `name` is given, else up to where the name starts. Appended to the prompt, it
    /// forces a call (`tool_choice` `"required"` or named) without constrained decoding.
    pub fn forced_call_opening(self, name: Option<&str>) -> String {
        match (self, name) {
            (Self::QwenXml, Some(name)) => format!("{CALL_START}\n<function={name}>\n"),
            (Self::QwenXml, None) => format!("{CALL_START}\n<function="),
            (Self::Hermes, Some(name)) => {
                let name = Json::String(name.to_string());
                format!("{CALL_START}\n{{\"name\": {name}, \"arguments\": ")
            }
            (Self::Hermes, None) => format!("{CALL_START}\n{{\"name\": \""),
        }
    }
}

/// Parses a whole output.
pub fn parse_complete(parser: &mut dyn ToolCallParser, text: &str) -> ParsedOutput {
    let mut events = parser.push(text);
    events.extend(parser.finish());
    collect(&events)
}

/// Folds events into content and finished calls.
pub fn collect(events: &[ToolCallEvent]) -> ParsedOutput {
    let mut out = ParsedOutput::default();
    for event in events {
        match event {
            ToolCallEvent::Content(text) => out.content.push_str(text),
            ToolCallEvent::Start { id, name, .. } => out.calls.push(ToolCall {
                id: id.clone(),
                name: name.clone(),
                arguments: String::new(),
            }),
            ToolCallEvent::Arguments { index, fragment } => {
                if let Some(call) = out.calls.get_mut(*index) {
                    call.arguments.push_str(fragment);
                }
            }
            ToolCallEvent::End { .. } => {}
        }
    }
    out
}

/// Takes the content in front of the next `<tool_call>` out of `buf` (holding back a partial
/// tag unless `at_end`); true when the tag itself was found and consumed.
pub(crate) fn take_content(buf: &mut String, at_end: bool, out: &mut Vec<ToolCallEvent>) -> bool {
    let (end, found) = match buf.find(CALL_START) {
        Some(pos) => (pos, true),
        None if at_end => (buf.len(), false),
        None => (buf.len() - partial_marker_len(buf, &[CALL_START]), false),
    };
    push_content(out, &buf[..end]);
    buf.drain(..if found { end + CALL_START.len() } else { end });
    found
}

/// Appends content, skipping empty text.
pub(crate) fn push_content(out: &mut Vec<ToolCallEvent>, text: &str) {
    if !text.is_empty() {
        out.push(ToolCallEvent::Content(text.to_string()));
    }
}

/// Drops leading whitespace; true if something else follows.
pub(crate) fn skip_whitespace(buf: &mut String) -> bool {
    let trimmed = buf.len() - buf.trim_start().len();
    buf.drain(..trimmed);
    !buf.is_empty()
}

/// JSON text with Python `json.dumps` separators (`", "`, `": "`), as vLLM and SGLang emit.
pub(crate) fn dumps(value: &Json) -> String {
    match value {
        Json::Array(items) => format!(
            "[{}]",
            items.iter().map(dumps).collect::<Vec<_>>().join(", ")
        ),
        Json::Object(map) => {
            let items: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", dumps(&Json::from(k.as_str())), dumps(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        scalar => scalar.to_string(),
    }
}
