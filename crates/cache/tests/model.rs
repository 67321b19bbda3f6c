//! Property test: random interleavings of requests (match, compute, publish in chunks),
//! bare matches, lock drops, evictions and private allocations on tiny pools with a 3-token
//! alphabet, so prefixes collide, nodes split and memory runs out all the time.
//!
//! After every operation: `check_integrity()` holds, the stats equal what the test itself
//! owns outside the tree, every match agrees with a naive reference model (which page holds
//! the KV of which token prefix, which slot holds the state after which prefix), and every
//! held lock still protects exactly what it matched. Case count: `PROPTEST_CASES` (default
//! 256); the release run for the issue uses `PROPTEST_CASES=10000`.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;
use tokenspeed_cache::{
    PageId, PagePool, Pages, PathLock, PrefixMatch, RadixCache, Slot, SlotId, StatePool, TokenId,
};

const PS: usize = 2;
const SENTINEL: TokenId = 99;

#[derive(Debug, Clone)]
enum Op {
    /// Match `prompt`, compute `prompt + output`, publish it in two chunks (the first ends
    /// after `split` pages) with a checkpoint at each chunk end when asked.
    Request {
        prompt: Vec<TokenId>,
        output: Vec<TokenId>,
        split: usize,
        ckpt: (bool, bool),
        keep: bool,
    },
    Match {
        tokens: Vec<TokenId>,
        keep: bool,
    },
    DropLock(usize),
    EvictPages(usize),
    EvictCheckpoints(usize),
    HoldPages(usize),
    HoldSlot,
    Release(usize),
}

fn tokens(max: usize) -> impl Strategy<Value = Vec<TokenId>> {
    prop::collection::vec(0..3u32, 0..max)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (tokens(12), tokens(6), 0..6usize, any::<(bool, bool)>(), any::<bool>()).prop_map(
            |(prompt, output, split, ckpt, keep)| Op::Request { prompt, output, split, ckpt, keep }
        ),
        3 => (tokens(12), any::<bool>()).prop_map(|(tokens, keep)| Op::Match { tokens, keep }),
        2 => (0..8usize).prop_map(Op::DropLock),
        2 => (0..6usize).prop_map(Op::EvictPages),
        2 => (0..3usize).prop_map(Op::EvictCheckpoints),
        1 => (1..4usize).prop_map(Op::HoldPages),
        1 => Just(Op::HoldSlot),
        1 => (0..8usize).prop_map(Op::Release),
    ]
}

/// A held lock and what it promised.
enum Held {
    Match {
        tokens: Vec<TokenId>,
        found: PrefixMatch,
    },
    Insert {
        tokens: Vec<TokenId>,
        page_ids: Vec<PageId>,
        _lock: PathLock,
    },
}

struct World {
    pages: PagePool,
    slots: StatePool,
    cache: RadixCache,
    /// Reference: the token prefix (up to and including the page) whose KV a page holds.
    page_kv: HashMap<PageId, Vec<TokenId>>,
    /// Reference: the slot last attached as the state after exactly this token prefix.
    state_at: HashMap<Vec<TokenId>, SlotId>,
    held: Vec<Held>,
    private_pages: Vec<Pages>,
    private_slots: Vec<Slot>,
}

impl World {
    fn new(num_pages: usize, num_slots: usize) -> Self {
        let pages = PagePool::new(num_pages, PS).unwrap();
        let slots = StatePool::new(num_slots).unwrap();
        let cache = RadixCache::new(pages.clone(), slots.clone());
        Self {
            pages,
            slots,
            cache,
            page_kv: HashMap::new(),
            state_at: HashMap::new(),
            held: Vec::new(),
            private_pages: Vec::new(),
            private_slots: Vec::new(),
        }
    }

    /// Matches and checks the result against the reference model.
    fn matched(&self, tokens: &[TokenId]) -> PrefixMatch {
        let m = self.cache.match_prefix(tokens);
        let usable = tokens.len().saturating_sub(1) / PS * PS;
        assert!(m.hit_tokens <= m.kv_match_tokens && m.kv_match_tokens <= usable);
        assert_eq!(m.hit_tokens % PS, 0);
        assert_eq!(m.page_ids.len(), m.hit_tokens / PS);
        assert_eq!(m.checkpoint.is_some(), m.hit_tokens > 0);
        assert_eq!(m.lock.tokens(), m.hit_tokens);
        if let Some(slot) = m.checkpoint {
            let want = self.state_at.get(&tokens[..m.hit_tokens]);
            assert_eq!(
                want,
                Some(&slot),
                "state slot of a different prefix returned"
            );
        }
        for (i, page) in m.page_ids.iter().enumerate() {
            assert_eq!(
                self.page_kv[page][..],
                tokens[..(i + 1) * PS],
                "page {page} holds other KV"
            );
        }
        m
    }

    fn alloc_pages(&self, n: usize) -> Option<Pages> {
        if let Some(p) = self.pages.alloc(n) {
            return Some(p);
        }
        self.cache
            .evict_pages(n.saturating_sub(self.pages.free_count()));
        self.pages.alloc(n)
    }

    fn alloc_slot(&self) -> Option<Slot> {
        self.slots.alloc().or_else(|| {
            self.cache.evict_checkpoints(1);
            self.slots.alloc()
        })
    }

    /// Publishes `tokens` whose last `pages.len()` pages are given; checks and records.
    fn publish(&mut self, tokens: &[TokenId], pages: Pages, slot: Option<Slot>) -> Held {
        let given: HashSet<PageId> = pages.ids().iter().copied().collect();
        let slot_id = slot.as_ref().map(Slot::id);
        let r = self.cache.insert(tokens, pages, slot).unwrap();
        assert_eq!(r.page_ids.len(), tokens.len() / PS);
        assert_eq!(r.adopted_pages + r.duplicate_pages, given.len());
        let mut adopted = 0;
        for (i, page) in r.page_ids.iter().enumerate() {
            let kv = &tokens[..(i + 1) * PS];
            if given.contains(page) {
                adopted += 1;
                self.page_kv.insert(*page, kv.to_vec());
            } else {
                assert_eq!(
                    self.page_kv[page][..],
                    kv[..],
                    "dedup kept a page of other KV"
                );
            }
        }
        assert_eq!(adopted, r.adopted_pages);
        if r.checkpoint_attached {
            self.state_at.insert(tokens.to_vec(), slot_id.unwrap());
        }
        if slot_id.is_some() && !tokens.is_empty() {
            // Attached now or already there: the state at `tokens` is usable right away.
            let probe = [tokens, &[SENTINEL]].concat();
            assert_eq!(self.matched(&probe).hit_tokens, tokens.len());
        }
        Held::Insert {
            tokens: tokens.to_vec(),
            page_ids: r.page_ids,
            _lock: r.lock,
        }
    }

    fn request(
        &mut self,
        prompt: &[TokenId],
        output: &[TokenId],
        split: usize,
        ckpt: (bool, bool),
    ) -> Vec<Held> {
        let m = self.matched(prompt);
        let full = [prompt, output].concat();
        let n = full.len() / PS;
        let first = (m.hit_tokens / PS + split).min(n);
        let mut held = Vec::new();
        for (end, want_ckpt) in [(first, ckpt.0), (n, ckpt.1)] {
            let have = match held.last() {
                Some(Held::Insert { page_ids, .. }) => page_ids.len(),
                _ => m.hit_tokens / PS,
            };
            let (Some(pages), slot) = (
                self.alloc_pages(end - have),
                want_ckpt.then(|| self.alloc_slot()).flatten(),
            ) else {
                break; // out of memory: the request gives up (preempted), dropping what it has
            };
            held.push(self.publish(&full[..end * PS], pages, slot));
        }
        held.push(Held::Match {
            tokens: prompt.to_vec(),
            found: m,
        });
        held
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Request {
                prompt,
                output,
                split,
                ckpt,
                keep,
            } => {
                let held = self.request(&prompt, &output, split, ckpt);
                if keep {
                    self.held.extend(held);
                }
            }
            Op::Match { tokens, keep } => {
                let found = self.matched(&tokens);
                if keep {
                    self.held.push(Held::Match { tokens, found });
                }
            }
            Op::DropLock(i) if i < self.held.len() => drop(self.held.swap_remove(i)),
            Op::EvictPages(n) => drop(self.cache.evict_pages(n)),
            Op::EvictCheckpoints(n) => drop(self.cache.evict_checkpoints(n)),
            Op::HoldPages(n) => self.private_pages.extend(self.pages.alloc(n)),
            Op::HoldSlot => self.private_slots.extend(self.slots.alloc()),
            Op::Release(i) => {
                if i < self.private_pages.len() {
                    drop(self.private_pages.swap_remove(i));
                } else if i - self.private_pages.len() < self.private_slots.len() {
                    drop(self.private_slots.swap_remove(i - self.private_pages.len()));
                }
            }
            Op::DropLock(_) => {}
        }
    }

    /// Invariants after every operation.
    fn check(&self) {
        self.cache.check_integrity().unwrap();
        let s = self.cache.stats();
        let private: usize = self.private_pages.iter().map(Pages::len).sum();
        assert_eq!(
            s.pages_in_use, private,
            "pages outside the tree are exactly the test's"
        );
        assert_eq!(s.slots_in_use, self.private_slots.len());
        assert_eq!(
            s.pages_free + s.pages_cached + s.pages_in_use,
            s.pages_total
        );
        assert_eq!(
            s.slots_free + s.slots_cached + s.slots_in_use,
            s.slots_total
        );
        for held in &self.held {
            match held {
                Held::Match { tokens, found } if found.hit_tokens > 0 => {
                    // Still there, same pages, same state slot.
                    let probe = [&tokens[..found.hit_tokens], &[SENTINEL]].concat();
                    let again = self.matched(&probe);
                    assert_eq!(again.hit_tokens, found.hit_tokens);
                    assert_eq!(
                        (&again.page_ids, again.checkpoint),
                        (&found.page_ids, found.checkpoint)
                    );
                }
                Held::Insert {
                    tokens, page_ids, ..
                } if !tokens.is_empty() => {
                    let again = self.matched(&[tokens.as_slice(), &[SENTINEL]].concat());
                    assert_eq!(again.kv_match_tokens, tokens.len(), "locked KV was evicted");
                    assert_eq!(again.page_ids[..], page_ids[..again.page_ids.len()]);
                }
                _ => {}
            }
        }
    }

    /// With every lock and private handle dropped, eviction must empty the cache completely.
    fn drain(mut self) {
        self.held.clear();
        self.private_pages.clear();
        self.private_slots.clear();
        let cached = self.cache.stats().pages_cached;
        assert_eq!(self.cache.evict_pages(usize::MAX), cached);
        let s = self.cache.stats();
        assert_eq!(
            (s.nodes, s.pages_free, s.slots_free),
            (0, s.pages_total, s.slots_total)
        );
        self.cache.check_integrity().unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::default())] // honours PROPTEST_CASES

    #[test]
    fn random_interleavings_keep_every_invariant(
        num_pages in 4..16usize,
        num_slots in 2..6usize,
        ops in prop::collection::vec(op(), 1..60),
    ) {
        let mut world = World::new(num_pages, num_slots);
        for op in ops {
            world.apply(op);
            world.check();
        }
        world.drain();
    }
}
