//! The Qwen3.5 / Qwen3-Coder XML dialect:
//!
//! ```text
//! <tool_call>
//! <function=get_weather>
//! <parameter=city>
//! Paris
//! </parameter>
//! </function>
//! </tool_call>
//! ```
//!
//! Values are raw text with one leading and one trailing newline removed, typed by the tool's
//! JSON schema (see `schema::typed_value`). String values stream character by character;
//! others are emitted when complete. A missing `</parameter>` is tolerated (the next
//! `<parameter=`, `</function>` or `</tool_call>` ends the value).

use super::schema::{typed_value, ToolSchemas};
use super::{
    dumps, push_content, skip_whitespace, take_content, ToolCallEvent, ToolCallParser, CALL_END,
    CALL_START,
};
use crate::text_buffer::{find_first, partial_marker_len};
use serde_json::Value as Json;

const FUNCTION_START: &str = "<function=";
const FUNCTION_END: &str = "</function>";
const PARAM_START: &str = "<parameter=";
const PARAM_END: &str = "</parameter>";
/// Longest function or parameter name accepted before the header counts as malformed.
const MAX_NAME: usize = 256;

#[derive(Debug)]
enum State {
    Content,
    AfterCall,
    /// After `<tool_call>`, waiting for `<function=NAME>`.
    Header,
    /// Inside `<function=...>`, between parameters.
    Body,
    /// Inside a parameter value.
    Param {
        key: String,
        streaming: bool,
        started: bool,
        value: String,
    },
    /// After `</function>`, waiting for `</tool_call>`.
    Closing,
}

/// Streaming parser of the XML dialect.
#[derive(Debug)]
pub struct QwenXmlParser {
    schemas: ToolSchemas,
    id_prefix: String,
    buf: String,
    state: State,
    calls: usize,
    name: String,
    params: usize,
}

/// Result of looking for `<tag=NAME>` at the start of a buffer.
enum Tag {
    NeedMore,
    Malformed,
    Found { name: String, len: usize },
}

fn named_tag(buf: &str, prefix: &str, at_end: bool) -> Tag {
    if buf.len() < prefix.len() {
        return if prefix.starts_with(buf) && !at_end {
            Tag::NeedMore
        } else {
            Tag::Malformed
        };
    }
    let Some(rest) = buf.strip_prefix(prefix) else {
        return Tag::Malformed;
    };
    match rest.find(['>', '\n', '<']) {
        Some(end) if rest.as_bytes()[end] == b'>' && !rest[..end].trim().is_empty() => Tag::Found {
            name: rest[..end].trim().to_string(),
            len: prefix.len() + end + 1,
        },
        Some(_) => Tag::Malformed,
        None if at_end || rest.len() > MAX_NAME => Tag::Malformed,
        None => Tag::NeedMore,
    }
}

fn json_string_body(text: &str) -> String {
    let quoted = Json::String(text.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

impl QwenXmlParser {
    /// A parser typing values by these OpenAI tool definitions.
    pub fn new(tools: &[Json], id_prefix: &str) -> Self {
        Self {
            schemas: ToolSchemas::new(tools),
            id_prefix: id_prefix.to_string(),
            buf: String::new(),
            state: State::Content,
            calls: 0,
            name: String::new(),
            params: 0,
        }
    }

    fn index(&self) -> usize {
        self.calls - 1
    }

    fn args(&self, out: &mut Vec<ToolCallEvent>, fragment: String) {
        out.push(ToolCallEvent::Arguments {
            index: self.index(),
            fragment,
        });
    }

    /// Opening text of the next argument: `{"key": ` or `, "key": `.
    fn key_prefix(&mut self, key: &str) -> String {
        self.params += 1;
        let sep = if self.params == 1 { "{" } else { ", " };
        format!("{sep}{}: ", dumps(&Json::from(key)))
    }

    fn end_call(&mut self, out: &mut Vec<ToolCallEvent>) {
        self.args(
            out,
            if self.params == 0 {
                "{}".into()
            } else {
                "}".into()
            },
        );
        out.push(ToolCallEvent::End {
            index: self.index(),
        });
    }

    /// Advances as far as the buffered text allows; returns false when more text is needed.
    fn step(&mut self, at_end: bool, out: &mut Vec<ToolCallEvent>) -> bool {
        match &mut self.state {
            State::Content => {
                let found = take_content(&mut self.buf, at_end, out);
                if found {
                    self.state = State::Header;
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
            State::Header => {
                let trimmed = self.buf.len() - self.buf.trim_start().len();
                match named_tag(&self.buf[trimmed..], FUNCTION_START, at_end) {
                    Tag::NeedMore => false,
                    Tag::Malformed => {
                        push_content(out, CALL_START);
                        self.state = State::Content;
                        true
                    }
                    Tag::Found { name, len } => {
                        self.buf.drain(..trimmed + len);
                        self.calls += 1;
                        self.params = 0;
                        let id = format!("{}{}", self.id_prefix, self.index());
                        out.push(ToolCallEvent::Start {
                            index: self.index(),
                            id,
                            name: name.clone(),
                        });
                        self.name = name;
                        self.state = State::Body;
                        true
                    }
                }
            }
            State::Body => {
                skip_whitespace(&mut self.buf);
                if let Some(rest) = [FUNCTION_END, CALL_END]
                    .iter()
                    .find(|m| self.buf.starts_with(**m))
                {
                    if *rest == FUNCTION_END {
                        self.buf.drain(..FUNCTION_END.len());
                        self.state = State::Closing;
                    } else {
                        self.buf.drain(..CALL_END.len());
                        self.state = State::AfterCall;
                    }
                    self.end_call(out);
                    return true;
                }
                match named_tag(&self.buf, PARAM_START, at_end) {
                    Tag::Found { name, len } => {
                        self.buf.drain(..len);
                        let streaming =
                            self.schemas.param_type(&self.name, &name) == Some("string");
                        self.state = State::Param {
                            key: name,
                            streaming,
                            started: false,
                            value: String::new(),
                        };
                        true
                    }
                    _ if at_end => {
                        self.buf.clear();
                        self.end_call(out);
                        self.state = State::AfterCall;
                        false
                    }
                    Tag::NeedMore => false,
                    _ if [FUNCTION_END, CALL_END]
                        .iter()
                        .any(|m| m.starts_with(self.buf.as_str())) =>
                    {
                        false
                    }
                    // Stray text between parameters is not part of any value: skip to the next tag.
                    Tag::Malformed => {
                        let first = self.buf.chars().next().map_or(0, char::len_utf8);
                        let skip = self.buf[first..]
                            .find('<')
                            .map_or(self.buf.len(), |p| p + first);
                        self.buf.drain(..skip);
                        true
                    }
                }
            }
            State::Param { .. } => self.param_step(at_end, out),
            State::Closing => {
                skip_whitespace(&mut self.buf);
                if self.buf.starts_with(CALL_END) {
                    self.buf.drain(..CALL_END.len());
                } else if CALL_END.starts_with(self.buf.as_str()) && !at_end {
                    return false;
                }
                self.state = State::AfterCall;
                true
            }
        }
    }

    fn param_step(&mut self, at_end: bool, out: &mut Vec<ToolCallEvent>) -> bool {
        let State::Param {
            key,
            streaming,
            started,
            value,
        } = &mut self.state
        else {
            return false;
        };
        let (key, streaming) = (key.clone(), *streaming);
        if !*started {
            if self.buf.is_empty() && !at_end {
                return false;
            }
            if self.buf.starts_with('\n') {
                self.buf.drain(..1);
            }
            *started = true;
            if streaming {
                let prefix = self.key_prefix(&key);
                self.args(out, format!("{prefix}\""));
            }
            return true;
        }
        let terminators = [PARAM_END, PARAM_START, FUNCTION_END, CALL_END];
        let end = find_first(&self.buf, &terminators);
        let mut ready = match end {
            Some((pos, _)) => pos,
            None if at_end => self.buf.len(),
            None => self.buf.len() - partial_marker_len(&self.buf, &terminators),
        };
        let complete = end.is_some() || at_end;
        if complete && self.buf[..ready].ends_with('\n') {
            ready -= 1; // the newline before `</parameter>` is layout, not value
        } else if !complete && self.buf[..ready].ends_with('\n') {
            ready -= 1; // might be that newline: hold it
        }
        let piece: String = self.buf[..ready].to_string();
        value.push_str(&piece);
        let value = value.clone();
        if streaming && !piece.is_empty() {
            self.args(out, json_string_body(&piece));
        }
        if !complete {
            self.buf.drain(..ready);
            return false;
        }
        let consumed = match end {
            Some((pos, 0)) => pos + PARAM_END.len(),
            Some((pos, _)) => pos,
            None => self.buf.len(),
        };
        self.buf.drain(..consumed);
        if streaming {
            self.args(out, "\"".into());
        } else {
            let declared = self
                .schemas
                .param_type(&self.name, &key)
                .map(str::to_string);
            let prefix = self.key_prefix(&key);
            let typed = typed_value(&value, declared.as_deref());
            self.args(out, format!("{prefix}{}", dumps(&typed)));
        }
        self.state = State::Body;
        true
    }

    fn run(&mut self, at_end: bool) -> Vec<ToolCallEvent> {
        let mut out = Vec::new();
        while self.step(at_end, &mut out) {}
        out
    }
}

impl ToolCallParser for QwenXmlParser {
    fn push(&mut self, delta: &str) -> Vec<ToolCallEvent> {
        self.buf.push_str(delta);
        self.run(false)
    }

    fn finish(&mut self) -> Vec<ToolCallEvent> {
        let mut out = self.run(true);
        // Whatever is left (content, or an unterminated header) is content.
        if matches!(self.state, State::Header) {
            push_content(&mut out, CALL_START);
            self.state = State::Content;
            out.extend(self.run(true));
        }
        push_content(&mut out, &std::mem::take(&mut self.buf));
        out
    }
}
