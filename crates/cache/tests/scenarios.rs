//! Scenario tests of the hybrid radix cache: the cases that broke other engines.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use tokenspeed_cache::{
    CacheError, InsertResult, PagePool, PrefixMatch, RadixCache, StatePool, TokenId,
};

const PS: usize = 4;

fn setup(pages: usize, slots: usize) -> (PagePool, StatePool, RadixCache) {
    let page_pool = PagePool::new(pages + 1, PS).unwrap();
    let state_pool = StatePool::new(slots + 1).unwrap();
    let cache = RadixCache::new(page_pool.clone(), state_pool.clone());
    (page_pool, state_pool, cache)
}

/// Inserts `tokens` with freshly allocated pages for all of them; checkpoint at the end if asked.
fn publish(cache: &RadixCache, tokens: &[TokenId], checkpoint: bool) -> InsertResult {
    let pages = cache.page_pool().alloc(tokens.len() / PS).unwrap();
    let slot = checkpoint.then(|| cache.state_pool().alloc().unwrap());
    cache.insert(tokens, pages, slot).unwrap()
}

fn seq(start: u32, len: usize) -> Vec<TokenId> {
    (start..start + len as u32).collect()
}

fn with_tail(prefix: &[TokenId], extra: usize) -> Vec<TokenId> {
    let mut v = prefix.to_vec();
    v.extend((0..extra as u32).map(|i| 10_000 + i));
    v
}

fn hit(cache: &RadixCache, tokens: &[TokenId]) -> usize {
    cache.match_prefix(tokens).hit_tokens
}

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

fn pages_of(cache: &RadixCache, n: usize) -> tokenspeed_cache::Pages {
    cache.page_pool().alloc(n).unwrap()
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
