//! [`Resident`]: the resources a request owns while it is prefilling or decoding, and the
//! cursors that say which of its tokens they cover.

use std::collections::VecDeque;

use tokenspeed_cache::{
    CacheError, PageId, Pages, PathLock, PrefixMatch, RadixCache, Slot, SlotId, TokenId,
};

/// Whether a state snapshot is taken at a prefill chunk end (published into the radix cache
/// as soon as its step is committed) or during decode (kept privately, newest only, and
/// published when the request ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotKind {
    /// Last page boundary of a prefill chunk.
    Prefill,
    /// A page boundary crossed by a decode step.
    Decode,
}

/// A slot holding (or, while pending, about to hold) the recurrent state after exactly
/// `offset` tokens of the request.
#[derive(Debug)]
pub struct Snapshot {
    /// The slot written by the executor.
    pub slot: Slot,
    /// Number of tokens the snapshotted state has absorbed (a multiple of the page size).
    pub offset: usize,
    /// The step that writes it.
    pub step: u64,
    /// Where it goes once written.
    pub kind: SnapshotKind,
}

/// Resources of a resident request.
///
/// The page table is `tree pages for [0, cached) ++ private pages for [cached, ...)`. The
/// tree pages are pinned by `lock`; the private pages are owned by `private`. Tokens
/// `[0, computed)` are computed or being computed by planned steps, `[0, committed)` by
/// committed steps.
#[derive(Debug)]
pub struct Resident {
    lock: PathLock,
    page_table: Vec<PageId>,
    private: Pages,
    working: Slot,
    cached: usize,
    computed: usize,
    committed: usize,
    /// Newest committed decode snapshot, not yet published.
    snapshot: Option<Snapshot>,
    /// Snapshots that planned, uncommitted steps write, oldest first.
    pending: VecDeque<Snapshot>,
}

impl Resident {
    /// Resources of a request admitted with prefix match `hit` and working slot `working`.
    pub fn new(hit: PrefixMatch, working: Slot, private: Pages) -> Self {
        let mut page_table = hit.page_ids;
        page_table.extend_from_slice(private.ids());
        Self {
            lock: hit.lock,
            page_table,
            private,
            working,
            cached: hit.hit_tokens,
            computed: hit.hit_tokens,
            committed: hit.hit_tokens,
            snapshot: None,
            pending: VecDeque::new(),
        }
    }

    /// Tokens covered by pinned radix-tree pages.
    pub fn cached(&self) -> usize {
        self.cached
    }

    /// Tokens of the path pinned by the lock (equals `cached` when consistent).
    pub fn lock_tokens(&self) -> usize {
        self.lock.tokens()
    }

    /// Tokens computed or being computed by planned steps.
    pub fn computed(&self) -> usize {
        self.computed
    }

    /// Tokens computed by committed steps.
    pub fn committed(&self) -> usize {
        self.committed
    }

    /// The working state slot (the live recurrent state, updated in place by every step).
    pub fn working_slot(&self) -> SlotId {
        self.working.id()
    }

    /// Page ids covering the first `pages` pages of the context.
    pub fn page_row(&self, pages: usize) -> &[PageId] {
        &self.page_table[..pages]
    }

    /// The whole page table (tree pages then private pages).
    pub fn page_table(&self) -> &[PageId] {
        &self.page_table
    }

    /// The private pages (for accounting).
    pub fn private_pages(&self) -> &[PageId] {
        self.private.ids()
    }

    /// Every slot this request owns: working, committed snapshot, pending snapshots.
    pub fn owned_slots(&self) -> impl Iterator<Item = SlotId> + '_ {
        let snaps = self.snapshot.iter().chain(&self.pending);
        std::iter::once(self.working.id()).chain(snaps.map(|s| s.slot.id()))
    }

    /// Pages still missing to hold a context of `tokens` tokens.
    pub fn pages_missing(&self, tokens: usize, page_size: usize) -> usize {
        tokens
            .div_ceil(page_size)
            .saturating_sub(self.page_table.len())
    }

    /// Adds freshly allocated private pages at the end of the page table.
    pub fn add_pages(&mut self, pages: Pages) {
        self.page_table.extend_from_slice(pages.ids());
        self.private.append(pages);
    }

    /// Records that a planned step computes tokens up to `end`, writing `snapshot` if any.
    pub fn plan(&mut self, end: usize, snapshot: Option<Snapshot>) {
        self.computed = end;
        self.pending.extend(snapshot);
    }

    /// Records that the step `step`, which computed tokens up to `end`, is committed. Returns
    /// its prefill snapshot, which the caller publishes; a decode snapshot replaces the
    /// previous one.
    pub fn commit(&mut self, step: u64, end: usize) -> Option<Snapshot> {
        self.committed = self.committed.max(end);
        if self.pending.front().is_some_and(|s| s.step == step) {
            let snap = self.pending.pop_front()?;
            match snap.kind {
                SnapshotKind::Prefill => return Some(snap),
                SnapshotKind::Decode => self.snapshot = Some(snap),
            }
        }
        None
    }

    /// Publishes `tokens[..upto]` (`upto` a multiple of the page size, `cached <= upto <=`
    /// pages held) into `cache` with `checkpoint` as the state at `upto`, switches the page
    /// table to the tree's page ids and pins the longer path.
    pub fn publish(
        &mut self,
        cache: &RadixCache,
        tokens: &[TokenId],
        upto: usize,
        checkpoint: Option<Slot>,
    ) -> Result<(), CacheError> {
        let page_size = cache.page_size();
        if upto == 0 || upto < self.cached || (upto == self.cached && checkpoint.is_none()) {
            return Ok(()); // nothing new to publish (a depth-0 checkpoint is useless)
        }
        let publish_pages = (upto - self.cached) / page_size;
        if publish_pages > self.private.len() || upto > tokens.len() {
            let msg = format!("publish up to {upto} tokens beyond the pages / tokens held");
            return Err(CacheError::Integrity(msg));
        }
        let rest = self.private.split_off(publish_pages);
        let published = std::mem::replace(&mut self.private, rest);
        let done = cache.insert(&tokens[..upto], published, checkpoint)?;
        self.page_table[..done.page_ids.len()].copy_from_slice(&done.page_ids);
        self.lock = done.lock;
        self.cached = upto;
        Ok(())
    }

    /// Publishes everything committed that can be published when the request leaves: the
    /// full pages of its committed tokens and its newest decode snapshot.
    pub fn publish_committed(
        mut self,
        cache: &RadixCache,
        tokens: &[TokenId],
    ) -> Result<(), CacheError> {
        let page_size = cache.page_size();
        // Full pages of the committed tokens; the newest token's KV is never written yet.
        let upto = self.committed.min(tokens.len().saturating_sub(1)) / page_size * page_size;
        if let Some(snap) = self.snapshot.take() {
            if snap.offset > self.cached && snap.offset <= upto {
                self.publish(cache, tokens, snap.offset, Some(snap.slot))?;
            }
        }
        self.publish(cache, tokens, upto, None)
    }
}
