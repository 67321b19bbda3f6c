//! Allocation that evicts the radix cache under pressure before giving up.

use std::cell::Cell;

use tokenspeed_cache::{PagePool, Pages, RadixCache, Slot, StatePool};

/// The pools and the cache, with allocation that evicts cached data first.
#[derive(Debug, Clone)]
pub(crate) struct Memory {
    pub cache: RadixCache,
    pub pages: PagePool,
    pub slots: StatePool,
    pub page_size: usize,
    /// Cached pages freed by eviction so far.
    pub evicted_pages: Cell<u64>,
    /// Cached checkpoints freed by eviction so far.
    pub evicted_checkpoints: Cell<u64>,
}

impl Memory {
    pub fn new(cache: RadixCache) -> Self {
        let pages = cache.page_pool().clone();
        let slots = cache.state_pool().clone();
        let page_size = cache.page_size();
        Self {
            cache,
            pages,
            slots,
            page_size,
            evicted_pages: Cell::new(0),
            evicted_checkpoints: Cell::new(0),
        }
    }

    /// `n` pages, evicting least-recently-used unlocked cache leaves if the pool is short.
    /// `None` when even that is not enough (nothing is evicted needlessly then: eviction only
    /// happens for the missing amount, and evicted pages stay free for the next request).
    pub fn alloc_pages(&self, n: usize) -> Option<Pages> {
        if n == 0 {
            return Some(Pages::empty(&self.pages));
        }
        if let Some(pages) = self.pages.alloc(n) {
            return Some(pages);
        }
        let freed = self.cache.evict_pages(n - self.pages.free_count());
        self.evicted_pages
            .set(self.evicted_pages.get() + freed as u64);
        self.pages.alloc(n)
    }

    /// One slot, evicting the least-recently-used unpinned cached checkpoint if none is free.
    pub fn alloc_slot(&self) -> Option<Slot> {
        self.slots.alloc().or_else(|| {
            let freed = self.cache.evict_checkpoints(1);
            self.evicted_checkpoints
                .set(self.evicted_checkpoints.get() + freed as u64);
            self.slots.alloc()
        })
    }
}
