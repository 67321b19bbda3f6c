//! Splits `<think>…</think>` reasoning from the answer, streamed or whole.
//!
//! Qwen3.5 templates open `<think>` in the prompt when thinking is on, so the output starts
//! inside the reasoning and only `</think>` appears; with thinking off the prompt holds an
//! empty `<think>\n\n</think>\n\n` and the output is all content. Either way an output that
//! itself starts with `<think>` opens reasoning. A `<tool_call>` inside unclosed reasoning ends
//! it (the call goes to the content, where the tool parser sees it: calls must not be lost in
//! the reasoning). Reasoning is trimmed; content after `</think>` loses its leading whitespace.

use crate::text_buffer::{find_first, partial_marker_len};

const THINK_START: &str = "<think>";
const THINK_END: &str = "</think>";
const TOOL_CALL: &str = "<tool_call>";

/// Text split by one step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReasoningDelta {
    /// Text for `reasoning_content`.
    pub reasoning: String,
    /// Text for `content` (then the tool parser).
    pub content: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the very start: the output may open with `<think>`.
    Opening,
    /// Inside reasoning; `started` once its leading whitespace was skipped.
    Reasoning { started: bool },
    /// Just after `</think>`: skipping whitespace.
    ContentStart,
    /// The answer.
    Content,
}

/// Streaming reasoning splitter of one output.
#[derive(Debug, Clone)]
pub struct ReasoningParser {
    thinking: bool,
    tool_call_ends_reasoning: bool,
    state: State,
    buf: String,
}

impl ReasoningParser {
    /// `thinking`: the prompt already opened `<think>` (thinking on).
    pub fn new(thinking: bool) -> Self {
        Self {
            thinking,
            tool_call_ends_reasoning: true,
            state: State::Opening,
            buf: String::new(),
        }
    }

    /// Whether `<tool_call>` ends unclosed reasoning (default true).
    pub fn with_tool_call_ends_reasoning(mut self, yes: bool) -> Self {
        self.tool_call_ends_reasoning = yes;
        self
    }

    /// Whether the output is inside its reasoning now (what follows is reasoning text).
    pub fn in_reasoning(&self) -> bool {
        matches!(self.state, State::Reasoning { .. })
    }

    /// Feeds the next text delta.
    pub fn push(&mut self, delta: &str) -> ReasoningDelta {
        self.buf.push_str(delta);
        self.run(false)
    }

    /// Ends the output, releasing held text.
    pub fn finish(&mut self) -> ReasoningDelta {
        self.run(true)
    }

    fn run(&mut self, at_end: bool) -> ReasoningDelta {
        let mut out = ReasoningDelta::default();
        while self.step(at_end, &mut out) {}
        out
    }

    fn step(&mut self, at_end: bool, out: &mut ReasoningDelta) -> bool {
        match self.state {
            State::Opening => {
                let rest = self.buf.trim_start();
                if let Some(after) = rest.strip_prefix(THINK_START) {
                    self.buf = after.to_string();
                    self.state = State::Reasoning { started: false };
                } else if THINK_START.starts_with(rest) && !at_end {
                    return false;
                } else if self.thinking {
                    self.state = State::Reasoning { started: false };
                } else {
                    self.state = State::Content;
                }
                true
            }
            State::Reasoning { started } => {
                if !started {
                    self.buf = self.buf.trim_start().to_string();
                    if self.buf.is_empty() {
                        return false;
                    }
                    self.state = State::Reasoning { started: true };
                }
                let markers: &[&str] = if self.tool_call_ends_reasoning {
                    &[THINK_END, TOOL_CALL]
                } else {
                    &[THINK_END]
                };
                if let Some((pos, which)) = find_first(&self.buf, markers) {
                    out.reasoning.push_str(self.buf[..pos].trim_end());
                    let consumed = if which == 0 {
                        pos + THINK_END.len()
                    } else {
                        pos
                    };
                    self.buf.drain(..consumed);
                    self.state = if which == 0 {
                        State::ContentStart
                    } else {
                        State::Content
                    };
                    return true;
                }
                let safe = if at_end {
                    self.buf.len()
                } else {
                    self.buf.len() - partial_marker_len(&self.buf, markers)
                };
                // Trailing whitespace is held: it is dropped if the reasoning ends right after it.
                let ready = self.buf[..safe].trim_end().len();
                out.reasoning.push_str(&self.buf[..ready]);
                self.buf
                    .drain(..if at_end { self.buf.len() } else { ready });
                false
            }
            State::ContentStart => {
                self.buf = self.buf.trim_start().to_string();
                if self.buf.is_empty() {
                    return false;
                }
                self.state = State::Content;
                true
            }
            State::Content => {
                out.content.push_str(&self.buf);
                self.buf.clear();
                false
            }
        }
    }
}

/// Splits a whole output into `(reasoning, content)`.
pub fn split_reasoning(text: &str, thinking: bool) -> (String, String) {
    let mut parser = ReasoningParser::new(thinking);
    let (a, b) = (parser.push(text), parser.finish());
    (a.reasoning + &b.reasoning, a.content + &b.content)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An independent whole-text implementation of the documented rules.
    fn reference(text: &str, thinking: bool) -> (String, String) {
        let opened = text.trim_start().strip_prefix(THINK_START);
        let body = match (opened, thinking) {
            (Some(after), _) => after,
            (None, true) => text,
            (None, false) => return (String::new(), text.to_string()),
        };
        let end = body.find(THINK_END);
        let call = body.find(TOOL_CALL);
        match (end, call) {
            (Some(e), c) if !matches!(c, Some(c) if c < e) => (
                body[..e].trim().to_string(),
                body[e + THINK_END.len()..].trim_start().to_string(),
            ),
            (_, Some(c)) => (body[..c].trim().to_string(), body[c..].to_string()),
            _ => (body.trim().to_string(), String::new()),
        }
    }

    #[test]
    fn thinking_on_and_off() {
        let text = "Let me think.\n</think>\n\nThe answer is 4.";
        assert_eq!(
            split_reasoning(text, true),
            ("Let me think.".into(), "The answer is 4.".into())
        );
        assert_eq!(
            split_reasoning("Plain answer.", false),
            (String::new(), "Plain answer.".into())
        );
        assert_eq!(
            split_reasoning("<think>\nhm\n</think>\n\nok", false),
            ("hm".into(), "ok".into())
        );
        assert_eq!(
            split_reasoning("cut off mid-thought ", true),
            ("cut off mid-thought".into(), String::new())
        );
        assert_eq!(
            split_reasoning("x </thin", true),
            ("x </thin".into(), String::new())
        );
        let call = "I should call it.\n<tool_call>\n<function=f>\n</function>\n</tool_call>";
        let (reasoning, content) = split_reasoning(call, true);
        assert_eq!(
            (reasoning.as_str(), content.starts_with("<tool_call>")),
            ("I should call it.", true)
        );
    }

    #[test]
    fn streaming_emits_reasoning_before_the_end_tag() {
        let mut parser = ReasoningParser::new(true);
        assert_eq!(parser.push("step one").reasoning, "step one");
        assert_eq!(parser.push("\n</thi").reasoning, "");
        let delta = parser.push("nk>\n\nDone");
        assert_eq!(
            (delta.reasoning.as_str(), delta.content.as_str()),
            ("", "Done")
        );
        assert_eq!(parser.finish(), ReasoningDelta::default());
    }

    proptest! {
        #[test]
        fn prop_stream_matches_reference_for_any_chunking(
            picks in prop::collection::vec(0usize..9, 0..8),
            cuts in prop::collection::vec(0usize..200, 0..8),
            thinking in any::<bool>(),
        ) {
            let pieces = ["<think>", "</think>", "\n", " ", "ab", "é你", "<", "</", "<tool_call>"];
            let text: String = picks.iter().map(|&i| pieces[i]).collect();
            let mut cuts: Vec<usize> = cuts.into_iter().filter(|&c| c <= text.len() && text.is_char_boundary(c)).collect();
            cuts.sort_unstable();
            let mut parser = ReasoningParser::new(thinking);
            let (mut reasoning, mut content, mut last) = (String::new(), String::new(), 0);
            for cut in cuts.into_iter().chain([text.len()]) {
                let delta = parser.push(&text[last..cut]);
                reasoning += &delta.reasoning;
                content += &delta.content;
                last = cut;
            }
            let delta = parser.finish();
            reasoning += &delta.reasoning;
            content += &delta.content;
            prop_assert_eq!((reasoning, content), reference(&text, thinking));
        }
    }
}
