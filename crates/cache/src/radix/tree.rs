//! PROVISIONAL tree for the API commit: caches nothing (every match misses, inserts are freed).

use super::LockId;
use crate::{CacheError, PageId, PagePool, Pages, Slot, SlotId, StatePool, TokenId};

pub(crate) struct Tree {
    page_size: usize,
}

pub(crate) struct MatchOutcome {
    pub hit_tokens: usize,
    pub kv_match_tokens: usize,
    pub page_ids: Vec<PageId>,
    pub checkpoint: Option<SlotId>,
    pub lock: Option<LockId>,
}

pub(crate) struct InsertOutcome {
    pub page_ids: Vec<PageId>,
    pub adopted_pages: usize,
    pub duplicate_pages: usize,
    pub checkpoint_attached: bool,
    pub lock: Option<LockId>,
}

#[derive(Default)]
pub(crate) struct Counts {
    pub pages_cached: usize,
    pub pages_locked: usize,
    pub slots_cached: usize,
    pub slots_pinned: usize,
    pub nodes: usize,
    pub locked_nodes: usize,
}

impl Tree {
    pub fn new(page_size: usize) -> Self {
        Self { page_size }
    }
    pub fn match_prefix(&mut self, _tokens: &[TokenId]) -> MatchOutcome {
        MatchOutcome {
            hit_tokens: 0,
            kv_match_tokens: 0,
            page_ids: vec![],
            checkpoint: None,
            lock: None,
        }
    }
    pub fn insert(
        &mut self,
        tokens: &[TokenId],
        pages: Pages,
        _c: Option<Slot>,
    ) -> Result<InsertOutcome, CacheError> {
        if tokens.len() % self.page_size != 0 {
            return Err(CacheError::PartialPage {
                tokens: tokens.len(),
                page_size: self.page_size,
            });
        }
        let n = pages.len();
        Ok(InsertOutcome {
            page_ids: vec![],
            adopted_pages: 0,
            duplicate_pages: n,
            checkpoint_attached: false,
            lock: None,
        })
    }
    pub fn unlock(&mut self, _id: LockId) {}
    pub fn evict_pages(&mut self, _n: usize) -> usize {
        0
    }
    pub fn evict_checkpoints(&mut self, _n: usize) -> usize {
        0
    }
    pub fn check_integrity(&self, _p: &PagePool, _s: &StatePool) -> Result<(), CacheError> {
        Ok(())
    }
    pub fn counts(&self) -> Counts {
        Counts::default()
    }
}
