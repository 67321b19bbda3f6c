//! Helpers shared by the scenario test files.
#![allow(dead_code, clippy::unwrap_used)] // each test binary uses a subset; tests may unwrap

use tokenspeed_cache::{InsertResult, PagePool, RadixCache, StatePool, TokenId};

pub const PS: usize = 4;

pub fn setup(pages: usize, slots: usize) -> (PagePool, StatePool, RadixCache) {
    let page_pool = PagePool::new(pages + 1, PS).unwrap();
    let state_pool = StatePool::new(slots + 1).unwrap();
    let cache = RadixCache::new(page_pool.clone(), state_pool.clone());
    (page_pool, state_pool, cache)
}

/// Inserts `tokens` with freshly allocated pages for all of them; checkpoint at the end if asked.
pub fn publish(cache: &RadixCache, tokens: &[TokenId], checkpoint: bool) -> InsertResult {
    let pages = cache.page_pool().alloc(tokens.len() / PS).unwrap();
    let slot = checkpoint.then(|| cache.state_pool().alloc().unwrap());
    cache.insert(tokens, pages, slot).unwrap()
}

pub fn seq(start: u32, len: usize) -> Vec<TokenId> {
    (start..start + len as u32).collect()
}

pub fn with_tail(prefix: &[TokenId], extra: usize) -> Vec<TokenId> {
    let mut v = prefix.to_vec();
    v.extend((0..extra as u32).map(|i| 10_000 + i));
    v
}

pub fn hit(cache: &RadixCache, tokens: &[TokenId]) -> usize {
    cache.match_prefix(tokens).hit_tokens
}

pub fn pages_of(cache: &RadixCache, n: usize) -> tokenspeed_cache::Pages {
    cache.page_pool().alloc(n).unwrap()
}
