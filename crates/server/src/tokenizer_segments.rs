//! Encoding chat prompts message by message, with a cache of encoded messages.
//!
//! A multi-turn conversation is re-sent whole every turn: re-encoding a 44k-token prompt costs
//! tens of ms per request, although only the last messages are new. The text is cut just
//! before every `<|im_start|>` (the chat template opens each message with it); the pieces are
//! encoded separately (through a cache keyed by their text) and concatenated.
//!
//! This gives exactly the ids of encoding the whole text when the tokenizer splits the text at
//! added tokens before anything else looks at it, which [`SegmentedEncoding::for_tokenizer`]
//! checks: the `tokenizers` crate cuts the text at added tokens (before normalisation for
//! non-normalized ones, right after it for normalized ones) and pre-tokenizes and encodes every
//! piece on its own. The cut is where the full encode cuts too when
//! * the marker is an added token that takes no whitespace from its left (`lstrip`) and need
//!   not stand alone as a word (`single_word`),
//! * no added token can match across the cut (none has the marker, or a prefix of it, starting
//!   after its first character),
//! * normalising the whole text equals normalising the pieces: the marker is not normalized
//!   (the cut happens first), or the normaliser is Unicode normalisation only (NFC, NFD, NFKC,
//!   NFKD) and the marker starts with an ASCII character, which composes with nothing before it,
//! * no truncation or padding is configured (they act on the whole encoding), and the
//!   post-processor does not run (`add_special_tokens` false).

use std::collections::HashMap;
use std::sync::Mutex;

use tokenizers::normalizers::NormalizerWrapper;

/// The cut marker: Qwen (ChatML) templates open every message with it.
const MARKER: &str = "<|im_start|>";
/// Texts shorter than this are encoded in one piece (nothing to save).
pub const MIN_SEGMENTED_BYTES: usize = 4096;
/// Pieces shorter than this are encoded but not cached.
const MIN_CACHED_BYTES: usize = 256;
/// Cache size (piece text plus ids) above which the least recently used pieces are dropped.
const CACHE_BUDGET_BYTES: usize = 64 << 20;

/// Encoded pieces by text, with a use tick for eviction.
#[derive(Default)]
struct Cache {
    entries: HashMap<Box<str>, (Box<[u32]>, u64)>,
    bytes: usize,
    tick: u64,
}

impl Cache {
    fn get(&mut self, piece: &str) -> Option<Vec<u32>> {
        self.tick += 1;
        let tick = self.tick;
        self.entries.get_mut(piece).map(|(ids, used)| {
            *used = tick;
            ids.to_vec()
        })
    }

    fn insert(&mut self, piece: &str, ids: &[u32]) {
        if piece.len() < MIN_CACHED_BYTES || self.entries.contains_key(piece) {
            return;
        }
        self.tick += 1;
        self.bytes += entry_bytes(piece, ids);
        self.entries.insert(piece.into(), (ids.into(), self.tick));
        if self.bytes > CACHE_BUDGET_BYTES {
            self.evict(CACHE_BUDGET_BYTES * 3 / 4);
        }
    }

    /// Drops least recently used pieces until at most `target` bytes remain.
    fn evict(&mut self, target: usize) {
        let mut by_age: Vec<(u64, usize, Box<str>)> = self
            .entries
            .iter()
            .map(|(text, (ids, used))| (*used, entry_bytes(text, ids), text.clone()))
            .collect();
        by_age.sort_unstable_by_key(|(used, _, _)| *used);
        for (_, bytes, text) in by_age {
            if self.bytes <= target {
                break;
            }
            self.entries.remove(&text);
            self.bytes -= bytes;
        }
    }
}

fn entry_bytes(piece: &str, ids: &[u32]) -> usize {
    piece.len() + 4 * ids.len()
}

/// Message-wise encoding with a cache, for tokenizers where it equals encoding the whole text.
pub struct SegmentedEncoding {
    cache: Mutex<Cache>,
}

impl SegmentedEncoding {
    /// `Some` when pieces cut before [`MARKER`] encode to exactly the ids of the whole text.
    pub fn for_tokenizer(tokenizer: &tokenizers::Tokenizer) -> Option<Self> {
        if tokenizer.get_truncation().is_some() || tokenizer.get_padding().is_some() {
            return None;
        }
        let added = tokenizer.get_added_tokens_decoder();
        let marker = added.values().find(|t| t.content == MARKER)?;
        if marker.lstrip || marker.single_word {
            return None;
        }
        let crosses = added.values().any(|t| {
            t.content.char_indices().skip(1).any(|(i, _)| {
                t.content[i..].starts_with(MARKER) || MARKER.starts_with(&t.content[i..])
            })
        });
        if crosses {
            return None;
        }
        if marker.normalized && !unicode_only(tokenizer.get_normalizer()) {
            return None;
        }
        Some(Self {
            cache: Mutex::new(Cache::default()),
        })
    }

    /// The ids of `text` from its pieces; `encode` encodes one piece.
    pub fn encode<E>(
        &self,
        text: &str,
        mut encode: impl FnMut(&str) -> Result<Vec<u32>, E>,
    ) -> Result<Vec<u32>, E> {
        let mut ids = Vec::new();
        for piece in pieces(text) {
            let cached = self.lock().get(piece);
            match cached {
                Some(hit) => ids.extend_from_slice(&hit),
                None => {
                    let fresh = encode(piece)?;
                    self.lock().insert(piece, &fresh);
                    ids.extend_from_slice(&fresh);
                }
            }
        }
        Ok(ids)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        // The cache holds no invariant a panicking holder could break: keep using it.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pieces currently cached (tests).
    pub fn cached_pieces(&self) -> usize {
        self.lock().entries.len()
    }
}

/// Whether normalising pieces equals normalising the whole text for a marker starting with an
/// ASCII character: no normaliser, or only Unicode normalisation forms.
fn unicode_only(normalizer: Option<&NormalizerWrapper>) -> bool {
    fn only(n: &NormalizerWrapper) -> bool {
        match n {
            NormalizerWrapper::NFC(_)
            | NormalizerWrapper::NFD(_)
            | NormalizerWrapper::NFKC(_)
            | NormalizerWrapper::NFKD(_) => true,
            NormalizerWrapper::Sequence(seq) => seq.as_ref().iter().all(only),
            _ => false,
        }
    }
    MARKER.starts_with(|c: char| c.is_ascii()) && normalizer.is_none_or(only)
}

/// `text` cut before every [`MARKER`] (the first piece may be empty and is skipped).
fn pieces(text: &str) -> impl Iterator<Item = &str> {
    let mut starts: Vec<usize> = text.match_indices(MARKER).map(|(i, _)| i).collect();
    if starts.first() != Some(&0) {
        starts.insert(0, 0);
    }
    starts.push(text.len());
    let bounds: Vec<(usize, usize)> = starts.windows(2).map(|w| (w[0], w[1])).collect();
    bounds
        .into_iter()
        .filter(|(a, b)| b > a)
        .map(move |(a, b)| &text[a..b])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{byte_level_tokenizer, byte_level_tokenizer_with};
    use crate::tokenizer::Tokenizer;
    use proptest::prelude::*;
    use serde_json::json;

    /// Text fragments that stress the cut: whitespace and newlines before a marker, combining
    /// marks, other added tokens, partial markers, multi-byte characters.
    const FRAGMENTS: [&str; 16] = [
        "hello",
        " world",
        "\n",
        "  ",
        "\n\n",
        "é",
        "e\u{301}",
        "\u{301}",
        "你好",
        "🤷",
        "<|im_end|>",
        "<think>",
        "</tool_call>",
        "<|im_sta",
        "<|",
        "a<",
    ];

    fn conversation(messages: &[Vec<usize>], repeat: usize) -> String {
        let mut text = String::new();
        for (i, message) in messages.iter().enumerate() {
            text.push_str(MARKER);
            text.push_str(if i % 2 == 0 { "user\n" } else { "assistant\n" });
            for _ in 0..repeat {
                for &f in message {
                    text.push_str(FRAGMENTS[f % FRAGMENTS.len()]);
                }
            }
        }
        text
    }

    /// Pieces (first through the encoder, then from the cache) against the whole text, also
    /// for texts too short for `Tokenizer::encode` to cut.
    fn check(tok: &Tokenizer, text: &str) {
        let whole = tok.encode_whole(text, false).unwrap();
        let seg = tok.segmented().expect("pieces allowed");
        let encode = |piece: &str| tok.encode_whole(piece, false);
        assert_eq!(
            seg.encode(text, encode).unwrap(),
            whole,
            "first encode of {text:?}"
        );
        assert_eq!(
            seg.encode(text, encode).unwrap(),
            whole,
            "cached encode of {text:?}"
        );
        assert_eq!(
            tok.encode(text, false).unwrap(),
            whole,
            "Tokenizer::encode of {text:?}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn pieces_encode_like_the_whole_text(
            messages in prop::collection::vec(prop::collection::vec(0usize..64, 0..24), 1..8),
            repeat in 1usize..40,
            prefix in prop::collection::vec(0usize..16, 0..4),
        ) {
            let lead: String = prefix.iter().map(|&f| FRAGMENTS[f]).collect();
            let text = format!("{lead}{}", conversation(&messages, repeat));
            check(&byte_level_tokenizer(), &text);
            let nfc = byte_level_tokenizer_with(json!({"type": "NFC"}), true, false);
            check(&nfc, &text);
        }
    }

    #[test]
    fn a_growing_conversation_reuses_its_messages() {
        let tok = byte_level_tokenizer();
        let seg = tok.segmented().expect("the test tokenizer allows pieces");
        let mut messages = vec![vec![0, 1, 2, 5, 9]; 2];
        for turn in 0..4 {
            let text = conversation(&messages, 400);
            assert!(text.len() >= MIN_SEGMENTED_BYTES);
            check(&tok, &text);
            assert_eq!(seg.cached_pieces(), messages.len(), "turn {turn}");
            messages.push(vec![turn, 3, 4, 10, 11]);
        }
    }

    #[test]
    fn tokenizers_where_pieces_could_differ_encode_whole() {
        // lstrip: the marker takes the whitespace before it, from the previous piece.
        assert!(byte_level_tokenizer_with(json!(null), false, true)
            .segmented()
            .is_none());
        // A normaliser that is not Unicode normalisation, applied before normalized markers.
        let lower = byte_level_tokenizer_with(json!({"type": "Lowercase"}), true, false);
        assert!(lower.segmented().is_none());
        // Non-normalized markers are cut before any normaliser runs.
        let strip = json!({"type": "Strip", "strip_left": true, "strip_right": true});
        let stripped = byte_level_tokenizer_with(strip, false, false);
        assert!(stripped.segmented().is_some());
        check(
            &stripped,
            &conversation(&[vec![1, 2, 3], vec![3, 2, 1]], 300),
        );
        let nfc = byte_level_tokenizer_with(json!({"type": "NFC"}), true, false);
        assert!(nfc.segmented().is_some());
    }

    #[test]
    fn pieces_cover_the_text() {
        let text = format!("a{MARKER}b{MARKER}{MARKER}c");
        let got: Vec<String> = pieces(&text).map(str::to_owned).collect();
        let want = [
            "a".to_string(),
            format!("{MARKER}b"),
            MARKER.into(),
            format!("{MARKER}c"),
        ];
        assert_eq!(got, want);
        assert_eq!(pieces(MARKER).count(), 1);
        assert_eq!(pieces("").count(), 0);
    }
}
