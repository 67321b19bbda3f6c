//! Scenario tests: eviction, locks, LRU order and handle lifetimes.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

mod common;

use common::*;
use tokenspeed_cache::{CacheError, InsertResult, PagePool, PrefixMatch, RadixCache, StatePool};

#[test]
fn kv_eviction_drops_the_node_checkpoint() {
    let (pages, slots, cache) = setup(16, 4);
    drop(publish(&cache, &seq(0, 8), true));
    assert_eq!((pages.free_count(), slots.free_count()), (14, 3));
    assert_eq!(cache.evict_pages(1), 2, "whole leaves are evicted");
    assert_eq!((pages.free_count(), slots.free_count()), (16, 4));
    assert_eq!(cache.stats().nodes, 0);
    cache.check_integrity().unwrap();
}

#[test]
fn checkpoint_eviction_keeps_kv() {
    let (pages, slots, cache) = setup(16, 4);
    let a = seq(0, 8);
    drop(publish(&cache, &a, true));
    assert_eq!(cache.evict_checkpoints(5), 1);
    assert_eq!((pages.free_count(), slots.free_count()), (14, 4));
    let m = cache.match_prefix(&with_tail(&a, 1));
    assert_eq!((m.kv_match_tokens, m.hit_tokens), (8, 0));
    drop(m);
    // Re-publishing the state reattaches it and reuses the cached KV.
    let again = publish(&cache, &a, true);
    assert_eq!(
        (again.duplicate_pages, again.checkpoint_attached),
        (2, true)
    );
    drop(again);
    assert_eq!(hit(&cache, &with_tail(&a, 1)), 8);
    cache.check_integrity().unwrap();
}

#[test]
fn locked_paths_are_never_evicted() {
    let (_, _, cache) = setup(32, 8);
    let a = seq(0, 12);
    drop(publish(&cache, &a[..4], true));
    drop(publish(&cache, &a, true));
    drop(publish(&cache, &seq(100, 8), true)); // an unrelated, unlocked branch
    let m: PrefixMatch = cache.match_prefix(&with_tail(&a, 1));
    assert_eq!(m.hit_tokens, 12);
    assert_eq!(
        cache.evict_pages(usize::MAX),
        2,
        "only the unrelated branch goes"
    );
    // The ancestor's checkpoint at 4 is not needed by this match and may go; the matched one
    // (at 12) is pinned.
    assert_eq!(cache.evict_checkpoints(usize::MAX), 1);
    let s = cache.stats();
    assert_eq!(
        (
            s.pages_cached,
            s.slots_cached,
            s.pages_evictable,
            s.slots_evictable
        ),
        (3, 1, 0, 0)
    );
    cache.check_integrity().unwrap();
    let again = cache.match_prefix(&with_tail(&a, 1));
    assert_eq!(
        (again.hit_tokens, again.page_ids.clone()),
        (12, m.page_ids.clone())
    );
    drop(m);
    assert_eq!(
        cache.evict_pages(usize::MAX),
        0,
        "still locked by the second match"
    );
    drop(again);
    assert_eq!(cache.evict_pages(usize::MAX), 3);
    cache.check_integrity().unwrap();
}

#[test]
fn lru_order_least_recent_first_and_dead_leaves_before_live_ones() {
    let (_, _, cache) = setup(32, 8);
    let (a, b, c) = (seq(0, 4), seq(100, 4), seq(200, 4));
    for s in [&a, &b, &c] {
        drop(publish(&cache, s, true));
    }
    drop(cache.match_prefix(&with_tail(&a, 1))); // a is now most recent: order b, c, a
    assert_eq!(cache.evict_pages(1), 1);
    assert_eq!(
        hit(&cache, &with_tail(&b, 1)),
        0,
        "b was least recently used"
    );
    assert_eq!(hit(&cache, &with_tail(&c, 1)), 4);
    assert_eq!(hit(&cache, &with_tail(&a, 1)), 4);
    // Checkpoint LRU is separate: touch c's, then evicting one takes a's.
    drop(cache.match_prefix(&with_tail(&c, 1)));
    assert_eq!(cache.evict_checkpoints(1), 1);
    assert_eq!(hit(&cache, &with_tail(&a, 1)), 0);
    // a's leaf is now dead KV (no state): it goes before c although c is older in KV terms.
    drop(cache.match_prefix(&with_tail(&c, 1)));
    assert_eq!(cache.evict_pages(1), 1);
    assert_eq!(cache.match_prefix(&with_tail(&a, 1)).kv_match_tokens, 0);
    assert_eq!(hit(&cache, &with_tail(&c, 1)), 4);
    cache.check_integrity().unwrap();
}

#[test]
fn evicting_a_leaf_exposes_its_parent() {
    let (pages, _, cache) = setup(32, 8);
    let a = seq(0, 8);
    drop(publish(&cache, &a[..4], true));
    drop(publish(&cache, &a, true));
    assert_eq!(cache.stats().nodes, 2);
    assert_eq!(
        cache.evict_pages(2),
        2,
        "leaf (1 page) then its parent (1 page)"
    );
    assert_eq!(pages.free_count(), 32);
    cache.check_integrity().unwrap();
}

#[test]
fn dropping_every_handle_returns_everything() {
    let (pages, slots, cache) = setup(16, 4);
    let a = seq(0, 8);
    drop(publish(&cache, &a, true));
    let held = cache.match_prefix(&with_tail(&a, 1));
    let private = pages.alloc(3).unwrap();
    let working = slots.alloc().unwrap();
    let s = cache.stats();
    assert_eq!((s.pages_free, s.pages_cached, s.pages_in_use), (11, 2, 3));
    assert_eq!((s.slots_free, s.slots_cached, s.slots_in_use), (2, 1, 1));
    assert_eq!((s.nodes, s.locked_nodes), (1, 1));
    cache.check_integrity().unwrap();
    drop((private, working));
    drop(cache); // the lock keeps the tree alive until it is dropped too
    assert_eq!(pages.free_count(), 14);
    drop(held);
    assert_eq!((pages.free_count(), slots.free_count()), (16, 4));
    pages.check_integrity().unwrap();
    slots.check_integrity().unwrap();
}

#[test]
fn pools_reject_bad_sizes_and_reserve_entry_zero() {
    assert_eq!(PagePool::new(4, 0).unwrap_err(), CacheError::ZeroPageSize);
    assert!(matches!(
        PagePool::new(0, 4),
        Err(CacheError::BadPoolSize {
            what: "num_pages",
            ..
        })
    ));
    assert!(matches!(
        StatePool::new(0),
        Err(CacheError::BadPoolSize {
            what: "num_slots",
            ..
        })
    ));
    let pool = PagePool::new(4, 2).unwrap();
    assert_eq!(pool.total(), 3);
    assert!(pool.alloc(4).is_none(), "all or nothing");
    let mut all = pool.alloc(3).unwrap();
    assert!(!all.ids().contains(&0));
    let tail = all.split_off(1);
    all.truncate(0);
    assert_eq!(pool.free_count(), 1);
    all.append(tail);
    assert_eq!((all.len(), all.token_capacity()), (2, 4));
    drop(all);
    assert_eq!(pool.free_count(), 3);
    let slots = StatePool::new(2).unwrap();
    let only = slots.alloc().unwrap();
    assert_eq!(only.id(), 1);
    assert!(slots.alloc().is_none());
}

#[test]
fn everything_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<RadixCache>();
    check::<PagePool>();
    check::<tokenspeed_cache::Pages>();
    check::<StatePool>();
    check::<tokenspeed_cache::Slot>();
    check::<PrefixMatch>();
    check::<InsertResult>();
}
