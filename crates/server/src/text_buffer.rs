//! Helpers for streaming text scanners that must hold back a possible start of a marker.

/// Byte length of the longest suffix of `text` that is a proper, non-empty prefix of one of
/// `markers` (so it might become that marker when more text arrives). Always on a char boundary.
pub(crate) fn partial_marker_len(text: &str, markers: &[&str]) -> usize {
    let mut best = 0;
    for marker in markers {
        let longest = marker.len().saturating_sub(1).min(text.len());
        for len in (best + 1..=longest).rev() {
            let start = text.len() - len;
            if text.is_char_boundary(start) && marker.starts_with(&text[start..]) {
                best = len;
                break;
            }
        }
    }
    best
}

/// Earliest occurrence of any of `markers` in `text`: (byte position, marker index).
pub(crate) fn find_first(text: &str, markers: &[&str]) -> Option<(usize, usize)> {
    markers
        .iter()
        .enumerate()
        .filter(|(_, m)| !m.is_empty())
        .filter_map(|(i, m)| text.find(m).map(|pos| (pos, i)))
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_markers() {
        assert_eq!(partial_marker_len("abc<tool", &["<tool_call>"]), 5);
        assert_eq!(partial_marker_len("abc<tool_call>", &["<tool_call>"]), 0);
        assert_eq!(partial_marker_len("x</", &["<think>", "</think>"]), 2);
        assert_eq!(partial_marker_len("你", &["你好"]), 3);
        assert_eq!(partial_marker_len("", &["a"]), 0);
        assert_eq!(find_first("a</b><c>", &["<c>", "</b>"]), Some((1, 1)));
    }
}
