//! Streaming detokenization that never emits half a UTF-8 character.
//!
//! Each step decodes a small window of recent ids twice (with and without the new id) and emits
//! the difference, in the style of vLLM and TGI. Text is held back while the window ends in an
//! incomplete character (U+FFFD). The window starts one emission back, so decoders that look at
//! neighbouring tokens (leading-space rules) see context. For byte-level vocabularies (Qwen),
//! text is released only at character boundaries, so the concatenated stream equals a one-shot
//! [`Tokenizer::decode`] of all ids (a property test checks this).

use crate::tokenizer::{Tokenizer, TokenizerError};
use std::sync::Arc;

/// The incremental decoder of one sequence.
#[derive(Debug)]
pub struct IncrementalDecoder {
    tokenizer: Arc<Tokenizer>,
    skip_special_tokens: bool,
    ids: Vec<u32>,
    /// Start of the decode window.
    prefix_offset: usize,
    /// End of the ids whose text was already emitted.
    read_offset: usize,
}

impl IncrementalDecoder {
    /// A decoder for a new sequence (the prompt is not part of it).
    pub fn new(tokenizer: Arc<Tokenizer>, skip_special_tokens: bool) -> Self {
        Self {
            tokenizer,
            skip_special_tokens,
            ids: Vec::new(),
            prefix_offset: 0,
            read_offset: 0,
        }
    }

    /// All ids pushed so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Adds one generated id; returns the text it completes (often empty mid-character).
    pub fn step(&mut self, id: u32) -> Result<String, TokenizerError> {
        self.ids.push(id);
        let (prefix, full) = self.window_texts()?;
        if full.len() > prefix.len() && !full.ends_with('\u{FFFD}') && full.starts_with(&prefix) {
            self.prefix_offset = self.read_offset;
            self.read_offset = self.ids.len();
            return Ok(full[prefix.len()..].to_string());
        }
        Ok(String::new())
    }

    /// Releases the text still held at the end of the sequence (e.g. a trailing invalid byte).
    pub fn finish(&mut self) -> Result<String, TokenizerError> {
        let (prefix, full) = self.window_texts()?;
        self.prefix_offset = self.ids.len();
        self.read_offset = self.ids.len();
        match full.strip_prefix(prefix.as_str()) {
            Some(rest) => Ok(rest.to_string()),
            // A decoder that rewrote the emitted part: emit what follows the common prefix.
            None => {
                let common = prefix
                    .char_indices()
                    .zip(full.chars())
                    .find(|((_, a), b)| a != b)
                    .map_or(prefix.len().min(full.len()), |((i, _), _)| i);
                Ok(full[common..].to_string())
            }
        }
    }

    fn window_texts(&self) -> Result<(String, String), TokenizerError> {
        let prefix = self.decode(&self.ids[self.prefix_offset..self.read_offset])?;
        let full = self.decode(&self.ids[self.prefix_offset..])?;
        Ok((prefix, full))
    }

    /// Ids the tokenizer does not know decode to nothing (as in Hugging Face `decode`): a
    /// model's embedding table is often padded past the tokenizer (Qwen3.5: 248,320 rows for
    /// 248,077 ids), and a model can sample those rows; that must not fail the request.
    fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        let known = |id: &u32| self.tokenizer.id_to_token(*id).is_some();
        if ids.iter().all(known) {
            return self.tokenizer.decode(ids, self.skip_special_tokens);
        }
        let ids: Vec<u32> = ids.iter().copied().filter(known).collect();
        self.tokenizer.decode(&ids, self.skip_special_tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{byte_level_tokenizer, vocab_len};
    use proptest::prelude::*;

    fn stream(tok: &Arc<Tokenizer>, ids: &[u32], skip: bool) -> Vec<String> {
        let mut dec = IncrementalDecoder::new(tok.clone(), skip);
        let mut pieces: Vec<String> = ids.iter().map(|&id| dec.step(id).unwrap()).collect();
        pieces.push(dec.finish().unwrap());
        pieces
    }

    #[test]
    fn holds_partial_characters_until_complete() {
        let tok = Arc::new(byte_level_tokenizer());
        let ids = tok.encode("你好 hello🤷", false).unwrap();
        let pieces = stream(&tok, &ids, false);
        assert_eq!(pieces.concat(), "你好 hello🤷");
        for piece in &pieces {
            assert!(
                !piece.contains('\u{FFFD}'),
                "partial char leaked: {pieces:?}"
            );
        }
        // The emoji (4 bytes, several tokens) arrives whole in a single piece.
        assert!(pieces.iter().any(|p| p.ends_with('🤷')));
    }

    #[test]
    fn trailing_invalid_bytes_are_released_at_finish() {
        let tok = Arc::new(byte_level_tokenizer());
        let head = tok.encode("ok", false).unwrap();
        let partial = tok.token_to_id("ä½").unwrap(); // E4 BD: an unfinished character
        let ids: Vec<u32> = head.iter().copied().chain([partial]).collect();
        let pieces = stream(&tok, &ids, false);
        assert_eq!(pieces.last().unwrap(), "\u{FFFD}");
        assert_eq!(pieces.concat(), tok.decode(&ids, false).unwrap());
    }

    #[test]
    fn ids_past_the_tokenizer_decode_to_nothing() {
        let tok = Arc::new(byte_level_tokenizer());
        let hello = tok.encode("hello 你好", false).unwrap();
        let mut ids = hello.clone();
        ids.insert(0, vocab_len() + 5);
        ids.push(u32::MAX);
        assert_eq!(stream(&tok, &ids, false).concat(), "hello 你好");
    }

    proptest! {
        #[test]
        fn prop_stream_equals_one_shot_decode(
            ids in prop::collection::vec(0..vocab_len(), 0..40),
            skip in any::<bool>(),
        ) {
            let tok = Arc::new(byte_level_tokenizer());
            let pieces = stream(&tok, &ids, skip);
            prop_assert_eq!(pieces.concat(), tok.decode(&ids, skip).unwrap());
        }
    }
}
