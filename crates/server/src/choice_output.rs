//! [`ChoiceOutput`]: the text pipeline of one choice. Token ids go through the incremental
//! detokenizer, the stop-string matcher, the reasoning splitter and the tool-call parser, in
//! that order; each step returns what the client may see now. Streamed and whole responses
//! both use it, so they agree.

use std::sync::Arc;

use crate::detokenize::IncrementalDecoder;
use crate::error::ApiError;
use crate::reasoning::ReasoningParser;
use crate::stop::StopMatcher;
use crate::tokenizer::Tokenizer;
use crate::tool_parser::{ToolCallEvent, ToolCallParser};

/// What one step released.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Piece {
    /// Text for `reasoning_content`.
    pub reasoning: String,
    /// Text for `content` / `text`.
    pub content: String,
    /// Tool-call events other than content.
    pub calls: Vec<ToolCallEvent>,
}

impl Piece {
    /// Whether nothing was released.
    pub fn is_empty(&self) -> bool {
        self.reasoning.is_empty() && self.content.is_empty() && self.calls.is_empty()
    }

    fn extend(&mut self, other: Piece) {
        self.reasoning.push_str(&other.reasoning);
        self.content.push_str(&other.content);
        self.calls.extend(other.calls);
    }
}

/// The pipeline of one choice.
pub struct ChoiceOutput {
    decoder: IncrementalDecoder,
    stop: StopMatcher,
    reasoning: Option<ReasoningParser>,
    tools: Option<Box<dyn ToolCallParser>>,
    /// Tokens that count as output (those before a stop string matched).
    pub completion_tokens: usize,
    /// Of `completion_tokens`, those that were (or ended) reasoning.
    pub reasoning_tokens: usize,
    /// A tool call was started.
    pub made_tool_call: bool,
    /// `parallel_tool_calls: false`: the choice ends when its first call closes.
    single_call: bool,
    /// With `single_call`, the first call closed: nothing more is released.
    call_done: bool,
}

impl ChoiceOutput {
    /// A pipeline; `reasoning` / `tools` are optional stages.
    pub fn new(
        tokenizer: Arc<Tokenizer>,
        stop: Vec<String>,
        reasoning: Option<ReasoningParser>,
        tools: Option<Box<dyn ToolCallParser>>,
    ) -> Self {
        Self {
            decoder: IncrementalDecoder::new(tokenizer, true),
            stop: StopMatcher::new(stop),
            reasoning,
            tools,
            completion_tokens: 0,
            reasoning_tokens: 0,
            made_tool_call: false,
            single_call: false,
            call_done: false,
        }
    }

    /// With `single`, the choice ends when its first tool call closes (`parallel_tool_calls:
    /// false`): later calls and text are never released, and generation stops there.
    pub fn with_single_tool_call(mut self, single: bool) -> Self {
        self.single_call = single;
        self
    }

    /// True once a stop string matched or, with a single tool call, that call closed: the
    /// choice is over (its request should be aborted).
    pub fn stopped(&self) -> bool {
        self.stop.is_stopped() || self.call_done
    }

    /// Feeds one generated token; tokens after a stop string are ignored.
    pub fn push(&mut self, token: u32) -> Result<Piece, ApiError> {
        if self.stopped() {
            return Ok(Piece::default());
        }
        self.completion_tokens += 1;
        let was_reasoning = self.in_reasoning();
        let text = self.decoder.step(token).map_err(decode_error)?;
        let step = self.stop.push(&text);
        let mut piece = self.route(&step.text);
        if was_reasoning || self.in_reasoning() {
            self.reasoning_tokens += 1;
        }
        if self.stopped() {
            piece.extend(self.flush());
        }
        Ok(piece)
    }

    /// Feeds text the prompt put in the answer's mouth (a forced tool-call opening) through
    /// the parsers, as if generated, without counting tokens or matching stop strings.
    pub fn prime(&mut self, text: &str) -> Piece {
        self.route(text)
    }

    fn in_reasoning(&self) -> bool {
        self.reasoning
            .as_ref()
            .is_some_and(ReasoningParser::in_reasoning)
    }

    /// Ends the choice, releasing everything held back.
    pub fn finish(&mut self) -> Result<Piece, ApiError> {
        if self.stopped() {
            return Ok(Piece::default()); // flushed when the stop string matched
        }
        let tail = self.decoder.finish().map_err(decode_error)?;
        let step = self.stop.push(&tail);
        let mut text = step.text;
        if !self.stopped() {
            text.push_str(&self.stop.finish());
        }
        let mut piece = self.route(&text);
        piece.extend(self.flush());
        Ok(piece)
    }

    fn route(&mut self, text: &str) -> Piece {
        let (reasoning, content) = match &mut self.reasoning {
            Some(parser) => {
                let delta = parser.push(text);
                (delta.reasoning, delta.content)
            }
            None => (String::new(), text.to_string()),
        };
        let mut piece = self.parse_calls(&content, false);
        piece.reasoning = reasoning;
        piece
    }

    /// Releases what the reasoning and tool parsers hold.
    fn flush(&mut self) -> Piece {
        let (reasoning, content) = match &mut self.reasoning {
            Some(parser) => {
                let delta = parser.finish();
                (delta.reasoning, delta.content)
            }
            None => (String::new(), String::new()),
        };
        let mut piece = self.parse_calls(&content, true);
        piece.reasoning = reasoning;
        piece
    }

    fn parse_calls(&mut self, content: &str, at_end: bool) -> Piece {
        let Some(parser) = &mut self.tools else {
            return Piece {
                content: content.to_string(),
                ..Piece::default()
            };
        };
        let mut events = if content.is_empty() {
            Vec::new()
        } else {
            parser.push(content)
        };
        if at_end {
            events.extend(parser.finish());
        }
        let mut piece = Piece::default();
        for event in events {
            if self.call_done {
                break;
            }
            match event {
                ToolCallEvent::Content(text) => piece.content.push_str(&text),
                other => {
                    self.made_tool_call |= matches!(other, ToolCallEvent::Start { .. });
                    self.call_done = self.single_call && matches!(other, ToolCallEvent::End { .. });
                    piece.calls.push(other);
                }
            }
        }
        piece
    }
}

fn decode_error(e: crate::tokenizer::TokenizerError) -> ApiError {
    ApiError::Engine(format!("detokenizing the output failed: {e}"))
}
