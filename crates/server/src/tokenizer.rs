//! A model's tokenizer, loaded from its Hugging Face `tokenizer.json`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::tokenizer_segments::{SegmentedEncoding, MIN_SEGMENTED_BYTES};

/// Why a tokenizer could not be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The `tokenizer.json` is missing or is not a valid tokenizer description.
    #[error("cannot load tokenizer from {path}: {message}")]
    Load {
        /// The file that was read.
        path: PathBuf,
        /// What the `tokenizers` crate reported.
        message: String,
    },
    /// Encoding failed (for example a text the pre-tokenizer regex cannot handle).
    #[error("cannot encode text: {0}")]
    Encode(String),
    /// Decoding failed (for example a token id outside the vocabulary).
    #[error("cannot decode token ids: {0}")]
    Decode(String),
}

/// A loaded tokenizer: encode prompts, decode generated ids.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Message-wise encoding with a cache, where it gives the same ids (`tokenizer_segments`).
    segments: Option<Arc<SegmentedEncoding>>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .finish()
    }
}

impl Tokenizer {
    /// Loads `tokenizer.json` from a model directory.
    pub fn from_model_dir(dir: &Path) -> Result<Self, TokenizerError> {
        Self::from_file(&dir.join("tokenizer.json"))
    }

    /// Loads a `tokenizer.json` file.
    pub fn from_file(path: &Path) -> Result<Self, TokenizerError> {
        let load_error = |message: String| TokenizerError::Load {
            path: path.to_path_buf(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| load_error(e.to_string()))?;
        let inner =
            tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| load_error(e.to_string()))?;
        Ok(Self::new(inner))
    }

    /// Parses a `tokenizer.json` document held in memory.
    pub fn from_json(json: &str) -> Result<Self, TokenizerError> {
        let inner = tokenizers::Tokenizer::from_bytes(json).map_err(|e| TokenizerError::Load {
            path: PathBuf::from("<memory>"),
            message: e.to_string(),
        })?;
        Ok(Self::new(inner))
    }

    fn new(inner: tokenizers::Tokenizer) -> Self {
        let segments = SegmentedEncoding::for_tokenizer(&inner).map(Arc::new);
        Self { inner, segments }
    }

    /// Whether long chat prompts are encoded message by message through the cache.
    pub fn segmented(&self) -> Option<&SegmentedEncoding> {
        self.segments.as_deref()
    }

    /// Token ids of `text`. Added tokens written in the text (`<|im_start|>`) become their ids;
    /// `add_special_tokens` runs the post-processor (BOS/EOS templates of some models).
    /// Long texts are encoded message by message where that gives the same ids, reusing the
    /// messages earlier requests encoded (a conversation re-sends its whole history each turn).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, TokenizerError> {
        match &self.segments {
            Some(segments) if !add_special_tokens && text.len() >= MIN_SEGMENTED_BYTES => {
                segments.encode(text, |piece| self.encode_whole(piece, false))
            }
            _ => self.encode_whole(text, add_special_tokens),
        }
    }

    /// [`Self::encode`] in one piece, without the cache.
    pub fn encode_whole(
        &self,
        text: &str,
        add_special_tokens: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        let encoding = self
            .inner
            .encode_fast(text, add_special_tokens)
            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Text of `ids` in one go; invalid UTF-8 becomes U+FFFD.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, TokenizerError> {
        if let Some(bad) = ids.iter().find(|&&id| self.inner.id_to_token(id).is_none()) {
            return Err(TokenizerError::Decode(format!(
                "token id {bad} is outside the vocabulary of {} tokens",
                self.vocab_size()
            )));
        }
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| TokenizerError::Decode(e.to_string()))
    }

    /// Number of ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Id of a token given by its vocabulary string (`<|im_end|>`), if it exists.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Vocabulary string of an id, if it exists.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::byte_level_tokenizer;

    #[test]
    fn encodes_added_tokens_and_round_trips_text() {
        let tok = byte_level_tokenizer();
        let text = "<|im_start|>user\nhé 你好 🤷<|im_end|>";
        let ids = tok.encode(text, false).unwrap();
        assert_eq!(ids[0], tok.token_to_id("<|im_start|>").unwrap());
        assert_eq!(*ids.last().unwrap(), tok.token_to_id("<|im_end|>").unwrap());
        assert_eq!(tok.decode(&ids, false).unwrap(), text);
        assert_eq!(tok.decode(&ids, true).unwrap(), "user\nhé 你好 🤷");
    }

    #[test]
    fn unknown_ids_and_bad_files_are_clear_errors() {
        let tok = byte_level_tokenizer();
        let err = tok.decode(&[1, 999_999], false).unwrap_err().to_string();
        assert!(err.contains("999999"), "{err}");
        let err = Tokenizer::from_model_dir(Path::new("/nonexistent/model"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/model/tokenizer.json"), "{err}");
        assert!(Tokenizer::from_json("{\"model\": 3}").is_err());
    }
}
