//! Allocation that evicts the radix cache under pressure before giving up.

use tokenspeed_cache::{PagePool, Pages, RadixCache, Slot, StatePool};

/// The pools and the cache, with allocation that evicts cached data first.
#[derive(Debug, Clone)]
pub(crate) struct Memory {
    pub cache: RadixCache,
    pub pages: PagePool,
    pub slots: StatePool,
    pub page_size: usize,
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
        self.cache.evict_pages(n - self.pages.free_count());
        self.pages.alloc(n)
    }

    /// One slot, evicting the least-recently-used unpinned cached checkpoint if none is free.
    pub fn alloc_slot(&self) -> Option<Slot> {
        self.slots.alloc().or_else(|| {
            self.cache.evict_checkpoints(1);
            self.slots.alloc()
        })
    }
}
