//! The crate's single error type.

use thiserror::Error;

/// Everything that can go wrong in `tokenspeed-cache`.
///
/// Operational errors (bad arguments) are returned by constructors and by
/// [`RadixCache::insert`](crate::RadixCache::insert); [`CacheError::Integrity`] is returned by the
/// `check_integrity` methods when an accounting invariant is broken (always a bug).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CacheError {
    /// `page_size` must be at least one token.
    #[error("page_size must be >= 1, got 0")]
    ZeroPageSize,
    /// A pool needs its reserved entry 0, so `num_pages` / `num_slots` must be >= 1 and fit `u32`.
    #[error("{what} must be between 1 and {max} (entry 0 is reserved), got {got}")]
    BadPoolSize {
        /// Which argument was wrong (`num_pages` or `num_slots`).
        what: &'static str,
        /// The value passed.
        got: usize,
        /// The largest accepted value.
        max: usize,
    },
    /// The token count of an insert is not a whole number of pages.
    #[error("insert of {tokens} tokens is not a multiple of page_size {page_size}")]
    PartialPage {
        /// Number of tokens passed.
        tokens: usize,
        /// The cache's page size.
        page_size: usize,
    },
    /// More pages were passed to an insert than the tokens cover.
    #[error("insert got {pages} pages for {tokens} tokens (page_size {page_size})")]
    TooManyPages {
        /// Number of pages passed.
        pages: usize,
        /// Number of tokens passed.
        tokens: usize,
        /// The cache's page size.
        page_size: usize,
    },
    /// An insert passed pages only for a suffix, but the prefix before it is not in the tree.
    #[error("insert expects the first {expected} tokens to be cached already, only {cached} are")]
    PrefixNotCached {
        /// Tokens the caller claimed are cached (not covered by the pages passed).
        expected: usize,
        /// Tokens of that prefix actually found in the tree.
        cached: usize,
    },
    /// A `Pages` or `Slot` handle from another pool was given to this cache.
    #[error("{0} handle belongs to a different pool than this cache")]
    ForeignHandle(&'static str),
    /// An accounting invariant does not hold (a bug in this crate or in unsafe misuse).
    #[error("cache integrity violated: {0}")]
    Integrity(String),
}
