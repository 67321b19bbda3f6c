//! Scenario tests: matching, splitting and inserting (the cases that broke other engines).
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

mod common;

use common::*;
use tokenspeed_cache::{CacheError, PagePool, StatePool};

#[test]
fn match_without_checkpoint_on_the_path_reuses_nothing() {
    let (pages, _, cache) = setup(16, 4);
    let a = seq(0, 12);
    drop(publish(&cache, &a, false));
    let m = cache.match_prefix(&with_tail(&a, 3));
    assert_eq!(m.kv_match_tokens, 12, "the KV is there");
    assert_eq!((m.hit_tokens, m.page_ids.len(), m.checkpoint), (0, 0, None));
    assert!(m.lock.is_empty());
    drop(m);
    assert_eq!(cache.stats().pages_evictable, 3, "a miss locks nothing");
    assert_eq!(pages.free_count(), 13);
    cache.check_integrity().unwrap();
}

#[test]
fn match_truncates_to_the_deepest_checkpoint() {
    let (_, slots, cache) = setup(16, 4);
    let a = seq(0, 16);
    drop(publish(&cache, &a[..8], true)); // checkpoint at 8
    let slot_at_8 = cache.match_prefix(&a).checkpoint.unwrap();
    drop(publish(&cache, &a, false)); // KV to 16, no checkpoint beyond 8
    let m = cache.match_prefix(&with_tail(&a, 1));
    assert_eq!((m.kv_match_tokens, m.hit_tokens), (16, 8));
    assert_eq!(m.page_ids.len(), 2);
    assert_eq!(m.checkpoint, Some(slot_at_8));
    drop(m);
    assert_eq!(slots.free_count(), 3);
    cache.check_integrity().unwrap();
}

#[test]
fn match_never_covers_the_last_token() {
    let (_, _, cache) = setup(16, 4);
    let a = seq(0, 8);
    drop(publish(&cache, &a, true));
    assert_eq!(hit(&cache, &with_tail(&a, 1)), 8);
    // Resubmitting exactly the cached tokens: the last one must be recomputed, and there is
    // no checkpoint before it, so nothing is usable.
    let m = cache.match_prefix(&a);
    assert_eq!((m.hit_tokens, m.kv_match_tokens), (0, 4));
    assert_eq!(hit(&cache, &[]), 0);
    assert_eq!(hit(&cache, &a[..1]), 0);
}

#[test]
fn split_keeps_the_checkpoint_on_the_node_whose_end_it_describes() {
    let (_, _, cache) = setup(32, 8);
    let a = seq(0, 12);
    drop(publish(&cache, &a, true));
    let slot_at_12 = cache.match_prefix(&with_tail(&a, 1)).checkpoint.unwrap();
    // A branch that diverges after one page splits the node at 4 (no state there).
    let mut b = a[..4].to_vec();
    b.extend(seq(500, 8));
    drop(publish(&cache, &b, false));
    let m = cache.match_prefix(&with_tail(&a, 1));
    assert_eq!((m.hit_tokens, m.checkpoint), (12, Some(slot_at_12)));
    drop(m);
    assert_eq!(
        hit(&cache, &with_tail(&b, 1)),
        0,
        "the split point has no state"
    );
    assert_eq!(hit(&cache, &with_tail(&a[..8], 1)), 0, "nor does depth 8");
    // Publishing a state at 8 splits again; each state stays at its own depth.
    drop(publish(&cache, &a[..8], true));
    let at_8 = cache.match_prefix(&with_tail(&a[..8], 1));
    assert_eq!(at_8.hit_tokens, 8);
    assert_ne!(at_8.checkpoint, Some(slot_at_12));
    let at_12 = cache.match_prefix(&with_tail(&a, 1));
    assert_eq!((at_12.hit_tokens, at_12.checkpoint), (12, Some(slot_at_12)));
    assert_eq!(
        at_8.page_ids[..],
        at_12.page_ids[..2],
        "split moved pages, not copied them"
    );
    cache.check_integrity().unwrap();
}

#[test]
fn two_inserts_sharing_a_prefix_share_pages() {
    let (pages, _, cache) = setup(32, 8);
    let a = seq(0, 8);
    let first = publish(&cache, &a, true);
    let mut b = a.clone();
    b.extend(seq(300, 4));
    let second = publish(&cache, &b, true);
    assert_eq!((second.duplicate_pages, second.adopted_pages), (2, 1));
    assert_eq!(
        second.page_ids[..2],
        first.page_ids[..],
        "the tree keeps its own pages"
    );
    assert_eq!(pages.free_count(), 32 - 3, "the duplicates were freed");
    let s = cache.stats();
    assert_eq!((s.pages_cached, s.pages_in_use, s.slots_cached), (3, 0, 2));
    cache.check_integrity().unwrap();
}

#[test]
fn insert_of_a_suffix_under_the_callers_lock() {
    let (pages, slots, cache) = setup(32, 8);
    let prompt = seq(0, 9);
    drop(publish(&cache, &prompt[..4], true));
    // The usual request flow: match, compute the rest into private pages, publish.
    let m = cache.match_prefix(&prompt);
    assert_eq!(m.hit_tokens, 4);
    let mut full = prompt.clone();
    full.extend(seq(700, 3)); // 12 tokens = prompt + output
    let private = pages.alloc(2).unwrap();
    let private_ids = private.ids().to_vec();
    let done = cache
        .insert(&full, private, Some(slots.alloc().unwrap()))
        .unwrap();
    assert_eq!((done.adopted_pages, done.duplicate_pages), (2, 0));
    assert_eq!(done.page_ids[..1], m.page_ids[..]);
    assert_eq!(done.page_ids[1..], private_ids[..]);
    assert_eq!(done.lock.tokens(), 12);
    drop(m);
    assert_eq!(
        cache.evict_pages(usize::MAX),
        0,
        "the insert lock protects the new path"
    );
    drop(done);
    let next_turn = with_tail(&full, 5);
    assert_eq!(hit(&cache, &next_turn), 12);
    cache.check_integrity().unwrap();
}

#[test]
fn bad_inserts_are_rejected_and_free_their_handles() {
    let (pages, slots, cache) = setup(16, 4);
    let err = cache
        .insert(&seq(0, 6), pages.alloc(1).unwrap(), None)
        .unwrap_err();
    assert_eq!(
        err,
        CacheError::PartialPage {
            tokens: 6,
            page_size: PS
        }
    );
    let err = cache
        .insert(&seq(0, 4), pages.alloc(2).unwrap(), None)
        .unwrap_err();
    assert!(matches!(err, CacheError::TooManyPages { pages: 2, .. }));
    let err = cache
        .insert(&seq(0, 8), pages.alloc(1).unwrap(), None)
        .unwrap_err();
    assert_eq!(
        err,
        CacheError::PrefixNotCached {
            expected: 4,
            cached: 0
        }
    );
    let other = PagePool::new(4, PS).unwrap();
    let err = cache
        .insert(&seq(0, 4), other.alloc(1).unwrap(), None)
        .unwrap_err();
    assert_eq!(err, CacheError::ForeignHandle("Pages"));
    let other_slots = StatePool::new(3).unwrap();
    let err = cache
        .insert(&seq(0, 4), pages.alloc(1).unwrap(), other_slots.alloc())
        .unwrap_err();
    assert_eq!(err, CacheError::ForeignHandle("Slot"));
    assert_eq!(
        (pages.free_count(), slots.free_count(), other.free_count()),
        (16, 4, 3)
    );
    assert_eq!(cache.stats().nodes, 0);
    cache.check_integrity().unwrap();
}

#[test]
fn second_checkpoint_for_the_same_depth_is_freed() {
    let (_, slots, cache) = setup(16, 4);
    let a = seq(0, 8);
    drop(publish(&cache, &a, true));
    let again = publish(&cache, &a, true);
    assert!(!again.checkpoint_attached);
    drop(again);
    assert_eq!(slots.free_count(), 3);
    // Empty insert: nothing to attach a state to.
    let r = cache
        .insert(&[], pages_of(&cache, 0), slots.alloc())
        .unwrap();
    assert!(!r.checkpoint_attached && r.lock.is_empty() && r.page_ids.is_empty());
    drop(r);
    assert_eq!(slots.free_count(), 3);
    cache.check_integrity().unwrap();
}
