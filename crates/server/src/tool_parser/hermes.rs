//! The Hermes JSON dialect of Qwen2.5 / Qwen3:
//!
//! ```text
//! <tool_call>
//! {"name": "get_weather", "arguments": {"city": "Paris"}}
//! </tool_call>
//! ```
//!
//! A call is emitted when its `</tool_call>` arrives (or at the end of the output, if the JSON
//! is complete): id and name, then the arguments JSON in one fragment. A body that is not a
//! JSON object with a string `name` stays content, tags included.

use super::{
    dumps, push_content, skip_whitespace, take_content, ToolCallEvent, ToolCallParser, CALL_END,
    CALL_START,
};
use serde_json::{Map, Value as Json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Content,
    AfterCall,
    /// After `<tool_call>`, collecting the JSON body.
    Body,
}

/// Streaming parser of the Hermes dialect.
#[derive(Debug)]
pub struct HermesParser {
    id_prefix: String,
    buf: String,
    state: State,
    calls: usize,
}

/// `(name, arguments JSON)` of a body, if it is a well-formed call.
fn parse_call(body: &str) -> Option<(String, String)> {
    let Ok(Json::Object(call)) = serde_json::from_str::<Json>(body.trim()) else {
        return None;
    };
    let name = call.get("name")?.as_str()?.to_string();
    let arguments = match call.get("arguments").or_else(|| call.get("parameters")) {
        None | Some(Json::Null) => Json::Object(Map::new()),
        // Some models double-encode: "arguments": "{\"city\": \"Paris\"}".
        Some(Json::String(text)) => match serde_json::from_str::<Json>(text) {
            Ok(Json::Object(object)) => Json::Object(object),
            _ => return None,
        },
        Some(object @ Json::Object(_)) => object.clone(),
        Some(_) => return None,
    };
    Some((name, dumps(&arguments)))
}

impl HermesParser {
    /// A new parser; call ids are `id_prefix` followed by the call index.
    pub fn new(id_prefix: &str) -> Self {
        Self {
            id_prefix: id_prefix.to_string(),
            buf: String::new(),
            state: State::Content,
            calls: 0,
        }
    }

    fn emit_call(&mut self, name: String, arguments: String, out: &mut Vec<ToolCallEvent>) {
        let index = self.calls;
        self.calls += 1;
        out.push(ToolCallEvent::Start {
            index,
            id: format!("{}{index}", self.id_prefix),
            name,
        });
        out.push(ToolCallEvent::Arguments {
            index,
            fragment: arguments,
        });
        out.push(ToolCallEvent::End { index });
    }

    fn step(&mut self, at_end: bool, out: &mut Vec<ToolCallEvent>) -> bool {
        match self.state {
            State::Content => {
                let found = take_content(&mut self.buf, at_end, out);
                if found {
                    self.state = State::Body;
                }
                found
            }
            State::AfterCall => {
                let more = skip_whitespace(&mut self.buf);
                if more {
                    self.state = State::Content;
                }
                more
            }
            State::Body => {
                // A nested `<tool_call>` before the end means this one was never closed.
                let end = self.buf.find(CALL_END);
                let restart = self
                    .buf
                    .find(CALL_START)
                    .filter(|r| !matches!(end, Some(e) if e < *r));
                let body_end = match (end, restart) {
                    (_, Some(r)) => r,
                    (Some(e), None) => e,
                    (None, None) if at_end => self.buf.len(),
                    (None, None) => return false,
                };
                let closed = end == Some(body_end);
                match parse_call(&self.buf[..body_end]) {
                    Some((name, arguments)) => {
                        self.emit_call(name, arguments, out);
                        self.buf
                            .drain(..body_end + if closed { CALL_END.len() } else { 0 });
                        self.state = State::AfterCall;
                    }
                    None => {
                        push_content(out, CALL_START);
                        self.state = State::Content;
                    }
                }
                true
            }
        }
    }
}

impl ToolCallParser for HermesParser {
    fn push(&mut self, delta: &str) -> Vec<ToolCallEvent> {
        self.buf.push_str(delta);
        let mut out = Vec::new();
        while self.step(false, &mut out) {}
        out
    }

    fn finish(&mut self) -> Vec<ToolCallEvent> {
        let mut out = Vec::new();
        while self.step(true, &mut out) {}
        push_content(&mut out, &std::mem::take(&mut self.buf));
        out
    }
}
