//! `match_prefix` and `insert` on a radix tree holding ~100k pages of 64 tokens, shaped like
//! agentic traffic: 1,200 conversations behind one shared 16-page system prompt, each with 6
//! turns of 14 pages and a checkpoint at every turn end (100,816 cached pages).
//!
//! Run: `cargo bench -p tokenspeed-cache --bench radix -- --quick`
#![allow(clippy::unwrap_used)] // benchmark setup may unwrap

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use tokenspeed_cache::{PagePool, RadixCache, StatePool, TokenId};

const PS: usize = 64;
const SYSTEM_PAGES: usize = 16;
const TURNS: usize = 6;
const TURN_PAGES: usize = 14;
const CONVERSATIONS: usize = 1_200;

/// Tokens of conversation `c` (all turns): shared system prompt, then conversation-unique ids.
fn conversation(c: usize) -> Vec<TokenId> {
    let system = (0..SYSTEM_PAGES * PS).map(|i| i as TokenId);
    let own = (0..TURNS * TURN_PAGES * PS).map(|i| (1_000_000 + c * 100_000 + i) as TokenId);
    system.chain(own).collect()
}

fn build() -> (RadixCache, Vec<Vec<TokenId>>) {
    let total = SYSTEM_PAGES + CONVERSATIONS * TURNS * TURN_PAGES;
    let pages = PagePool::new(total + 4_096, PS).unwrap();
    let slots = StatePool::new(CONVERSATIONS * TURNS + 1_024).unwrap();
    let cache = RadixCache::new(pages.clone(), slots.clone());
    let conversations: Vec<_> = (0..CONVERSATIONS).map(conversation).collect();
    for tokens in &conversations {
        for turn in 0..TURNS {
            let end = (SYSTEM_PAGES + (turn + 1) * TURN_PAGES) * PS;
            let hit = cache.match_prefix(&tokens[..end]);
            let new_pages = end / PS - hit.page_ids.len();
            let done = cache.insert(
                &tokens[..end],
                pages.alloc(new_pages).unwrap(),
                slots.alloc(),
            );
            drop((hit, done.unwrap()));
        }
    }
    assert_eq!(cache.stats().pages_cached, total);
    (cache, conversations)
}

fn benches(c: &mut Criterion) {
    let (cache, conversations) = build();
    let stats = cache.stats();
    println!(
        "tree: {} pages cached, {} nodes",
        stats.pages_cached, stats.nodes
    );

    // Next turn of a conversation: full history + 800 new tokens; hits 6,400 tokens.
    let prompts: Vec<Vec<TokenId>> = conversations
        .iter()
        .map(|t| t.iter().copied().chain(5_000_000..5_000_800).collect())
        .collect();
    let mut i = 0;
    c.bench_function("match_prefix/hit_100_pages", |b| {
        b.iter(|| {
            i = (i + 7) % CONVERSATIONS;
            let m = cache.match_prefix(black_box(&prompts[i]));
            assert_eq!(m.hit_tokens, (SYSTEM_PAGES + TURNS * TURN_PAGES) * PS);
            m // dropped inside the timed loop: the unlock is part of the cost
        })
    });

    let miss: Vec<TokenId> = (7_000_000..7_000_000 + 8_000).collect();
    c.bench_function("match_prefix/miss_8k_tokens", |b| {
        b.iter(|| cache.match_prefix(black_box(&miss)).hit_tokens)
    });

    // Re-publishing a cached 100-page conversation: every page is a duplicate and is freed.
    let pages = cache.page_pool().clone();
    let mut j = 0;
    c.bench_function("insert/dedup_100_pages", |b| {
        b.iter_batched(
            || {
                j = (j + 11) % CONVERSATIONS;
                (j, pages.alloc(conversations[j].len() / PS).unwrap())
            },
            |(j, fresh)| {
                cache
                    .insert(black_box(&conversations[j]), fresh, None)
                    .unwrap()
            },
            BatchSize::PerIteration,
        )
    });

    // A request publishing its new turn: match (100-page hit, locked), insert 13 new pages
    // under that lock, unlock, then evict 13 pages. The new leaf has no checkpoint, so it is
    // the one evicted (dead KV goes first) and the tree stays exactly the same size.
    let mut k = 0u32;
    c.bench_function("cycle/match_insert_13_pages_unlock_evict", |b| {
        b.iter_batched(
            || {
                k += 1;
                let conv = (k as usize * 13) % CONVERSATIONS;
                let mut tokens = conversations[conv].clone();
                tokens.extend((0..13 * PS as u32).map(|t| 10_000_000 + (k % 1000) * 10_000 + t));
                (tokens, pages.alloc(13).unwrap())
            },
            |(tokens, fresh)| {
                let hit = cache.match_prefix(&tokens);
                let done = cache.insert(black_box(&tokens), fresh, None).unwrap();
                assert_eq!(done.adopted_pages, 13);
                drop((hit, done));
                assert_eq!(cache.evict_pages(13), 13);
            },
            BatchSize::PerIteration,
        )
    });
    assert_eq!(
        cache.stats().pages_cached,
        stats.pages_cached,
        "tree size is stationary"
    );
    cache.check_integrity().unwrap();
}

criterion_group! {
    name = radix;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = benches
}
criterion_main!(radix);
