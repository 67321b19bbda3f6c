//! Stop strings: generation ends when the output contains one, which may span several tokens.
//!
//! Text that could be the start of a stop string is held back until it is ruled out, so the
//! client never sees any part of a stop string (OpenAI semantics: it is excluded from the
//! output).

use crate::text_buffer::{find_first, partial_marker_len};

/// Watches a stream of text deltas for stop strings.
#[derive(Debug, Clone)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
    stopped: bool,
}

/// What one [`StopMatcher::push`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopStep {
    /// Text that is safe to send to the client now.
    pub text: String,
    /// Index (in the list given to [`StopMatcher::new`]) of the stop string that matched.
    pub stopped_by: Option<usize>,
}

impl StopMatcher {
    /// A matcher for these stop strings (empty strings are ignored).
    pub fn new(stops: Vec<String>) -> Self {
        Self {
            stops,
            held: String::new(),
            stopped: false,
        }
    }

    /// True once a stop string was found; later pushes return nothing.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Adds newly generated text. When stop strings complete in this text, the one that starts
    /// first wins and everything from its start on is dropped.
    pub fn push(&mut self, delta: &str) -> StopStep {
        if self.stopped {
            return StopStep {
                text: String::new(),
                stopped_by: None,
            };
        }
        self.held.push_str(delta);
        let stops: Vec<&str> = self.stops.iter().map(String::as_str).collect();
        if let Some((pos, index)) = find_first(&self.held, &stops) {
            self.stopped = true;
            let text = self.held[..pos].to_string();
            self.held.clear();
            return StopStep {
                text,
                stopped_by: Some(index),
            };
        }
        let keep = partial_marker_len(&self.held, &stops);
        let text = self.held[..self.held.len() - keep].to_string();
        self.held.drain(..self.held.len() - keep);
        StopStep {
            text,
            stopped_by: None,
        }
    }

    /// Ends the stream without a stop string: releases the held-back text.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(stops: &[&str], deltas: &[&str]) -> (Vec<String>, Option<usize>) {
        let mut matcher = StopMatcher::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = Vec::new();
        for delta in deltas {
            let step = matcher.push(delta);
            out.push(step.text);
            if step.stopped_by.is_some() {
                return (out, step.stopped_by);
            }
        }
        out.push(matcher.finish());
        (out, None)
    }

    #[test]
    fn stop_spanning_deltas_is_excluded_and_held() {
        let (out, stop) = run(&["END"], &["abc E", "N", "D more"]);
        assert_eq!(out, ["abc ", "", ""]);
        assert_eq!(stop, Some(0));
    }

    #[test]
    fn ruled_out_prefix_is_released() {
        let (out, stop) = run(&["\n\nUser:"], &["a\n", "\nUs", "ually"]);
        assert_eq!(out, ["a", "", "\n\nUsually", ""]);
        assert_eq!(stop, None);
    }

    #[test]
    fn earliest_stop_wins_and_multibyte_is_safe() {
        let (out, stop) = run(&["好", "é"], &["café 你好"]);
        assert_eq!(out, ["caf"]);
        assert_eq!(stop, Some(1));
        let (out, _) = run(&["你好吗"], &["x你", "好", "!"]);
        assert_eq!(out.concat(), "x你好!");
    }

    proptest! {
        #[test]
        fn prop_chunking_does_not_change_output(
            text in "[ab\\n]{0,30}",
            cuts in prop::collection::vec(0usize..31, 0..6),
        ) {
            let stops = ["ab\n", "bb", "\n\na"];
            let (whole, whole_stop) = run(&stops, &[&text]);
            let mut cuts: Vec<usize> = cuts.into_iter().filter(|&c| c <= text.len()).collect();
            cuts.sort_unstable();
            let mut deltas = Vec::new();
            let mut last = 0;
            for cut in cuts.into_iter().chain([text.len()]) {
                deltas.push(&text[last..cut]);
                last = cut;
            }
            let (chunked, chunked_stop) = run(&stops, &deltas);
            prop_assert_eq!(whole.concat(), chunked.concat());
            prop_assert_eq!(whole_stop, chunked_stop);
            // Reference: the output is the text up to the first stop string, stop excluded.
            let first = stops.iter().filter_map(|s| text.find(s)).min();
            prop_assert_eq!(whole.concat(), &text[..first.unwrap_or(text.len())]);
        }
    }
}
