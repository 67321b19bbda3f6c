//! The hybrid radix prefix cache: public handle types over the arena tree in [`tree`].

mod arena;
mod evict;
mod integrity;
mod lock;
mod node;
mod tree;

use std::fmt;
use std::sync::{Arc, Mutex};

use crate::id_alloc::lock;
use crate::{CacheError, CacheStats, PageId, PagePool, Pages, Slot, SlotId, StatePool, TokenId};
use tree::Tree;

pub(crate) use lock::LockId;

/// Page-granular radix tree over token ids whose nodes own KV [`Pages`] and optional
/// checkpoint [`Slot`]s. Cheap to clone (all clones share one tree); `Send + Sync`.
///
/// See the crate docs for the matching, insertion and eviction rules.
#[derive(Clone)]
pub struct RadixCache {
    tree: Arc<Mutex<Tree>>,
    pages: PagePool,
    slots: StatePool,
}

/// Result of [`RadixCache::match_prefix`].
#[derive(Debug)]
pub struct PrefixMatch {
    /// Usable hit in tokens: a multiple of `page_size`, the end depth of the deepest node on the
    /// matched path that has a checkpoint (0 when there is none), `< tokens.len()`.
    pub hit_tokens: usize,
    /// How far the KV alone matched (full pages of `tokens[..len-1]`), `>= hit_tokens`. The
    /// difference is KV that must be recomputed because no checkpoint exists there.
    pub kv_match_tokens: usize,
    /// The tree's pages for `tokens[..hit_tokens]`, in order (`hit_tokens / page_size` ids).
    pub page_ids: Vec<PageId>,
    /// Slot holding the recurrent state after exactly `hit_tokens` tokens (copy-on-write
    /// source; never write into it). `None` iff `hit_tokens == 0`.
    pub checkpoint: Option<SlotId>,
    /// Keeps the matched pages and the checkpoint from being evicted while alive.
    pub lock: PathLock,
}

/// Result of [`RadixCache::insert`].
#[derive(Debug)]
pub struct InsertResult {
    /// The tree's pages for the whole inserted token path, in order. Where the inserted pages
    /// duplicated cached ones, these are the cached ids (the duplicates were freed), so the
    /// request must use these ids from now on.
    pub page_ids: Vec<PageId>,
    /// Pages passed in that the tree adopted.
    pub adopted_pages: usize,
    /// Pages passed in that duplicated cached ones and were freed.
    pub duplicate_pages: usize,
    /// Whether the checkpoint passed in was attached (false: none passed, the end node already
    /// had one, or `tokens` was empty; in those cases the slot was freed).
    pub checkpoint_attached: bool,
    /// Locks the whole inserted path (KV only) so the request can keep reading these pages.
    pub lock: PathLock,
}

/// RAII lock on a root-to-node path of a [`RadixCache`]. While alive, none of the path's pages
/// can be evicted, and for a lock from `match_prefix` neither can the matched checkpoint.
/// Dropping it unlocks. An empty lock (hit 0) holds nothing.
#[must_use = "dropping a PathLock immediately makes the matched pages evictable"]
pub struct PathLock {
    held: Option<(Arc<Mutex<Tree>>, LockId)>,
    tokens: usize,
}

impl PathLock {
    fn empty() -> Self {
        Self {
            held: None,
            tokens: 0,
        }
    }

    /// Number of tokens of the locked path (0 for an empty lock).
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// Whether this lock holds nothing.
    pub fn is_empty(&self) -> bool {
        self.held.is_none()
    }
}

impl Drop for PathLock {
    fn drop(&mut self) {
        if let Some((tree, id)) = self.held.take() {
            lock(&tree).unlock(id);
        }
    }
}

impl fmt::Debug for PathLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PathLock")
            .field("tokens", &self.tokens)
            .finish()
    }
}

impl RadixCache {
    /// An empty cache whose nodes hold pages of `page_pool` and checkpoints of `state_pool`.
    pub fn new(page_pool: PagePool, state_pool: StatePool) -> Self {
        let tree = Tree::new(&page_pool);
        Self {
            tree: Arc::new(Mutex::new(tree)),
            pages: page_pool,
            slots: state_pool,
        }
    }

    /// Tokens per page.
    pub fn page_size(&self) -> usize {
        self.pages.page_size()
    }

    /// The page pool this cache takes pages from.
    pub fn page_pool(&self) -> &PagePool {
        &self.pages
    }

    /// The state pool this cache takes checkpoints from.
    pub fn state_pool(&self) -> &StatePool {
        &self.slots
    }

    fn path_lock(&self, id: Option<LockId>, tokens: usize) -> PathLock {
        match id {
            Some(id) => PathLock {
                held: Some((Arc::clone(&self.tree), id)),
                tokens,
            },
            None => PathLock::empty(),
        }
    }

    /// Longest usable cached prefix of `tokens`: full pages of `tokens[..len-1]`, truncated to
    /// the deepest checkpoint on the path. Locks what it returns and refreshes its LRU ticks
    /// (the KV of the used path and only the checkpoint actually used).
    pub fn match_prefix(&self, tokens: &[TokenId]) -> PrefixMatch {
        let found = lock(&self.tree).match_prefix(tokens);
        PrefixMatch {
            hit_tokens: found.hit_tokens,
            kv_match_tokens: found.kv_match_tokens,
            page_ids: found.page_ids,
            checkpoint: found.checkpoint,
            lock: self.path_lock(found.lock, found.hit_tokens),
        }
    }

    /// Publishes `tokens` (a whole number of pages) with their KV `pages` and optionally the
    /// checkpoint `Slot` holding the state after exactly `tokens.len()` tokens.
    ///
    /// `pages` covers the last `pages.len()` pages of `tokens`; the tokens before them must
    /// already be cached (the usual case: the caller holds the `PathLock` of its match and
    /// passes only its private pages). Pages already cached are deduplicated (the passed ones
    /// are freed), nodes are split as needed, and the checkpoint is attached to the node ending
    /// at `tokens.len()` unless that node already has one (then the passed slot is freed).
    ///
    /// On error nothing in the tree changes and the passed handles are dropped (returned to
    /// their pools).
    pub fn insert(
        &self,
        tokens: &[TokenId],
        pages: Pages,
        checkpoint: Option<Slot>,
    ) -> Result<InsertResult, CacheError> {
        if !pages.pool().same_pool(&self.pages) {
            return Err(CacheError::ForeignHandle("Pages"));
        }
        if checkpoint
            .as_ref()
            .is_some_and(|s| !s.pool().same_pool(&self.slots))
        {
            return Err(CacheError::ForeignHandle("Slot"));
        }
        let done = lock(&self.tree).insert(tokens, pages, checkpoint)?;
        Ok(InsertResult {
            page_ids: done.page_ids,
            adopted_pages: done.adopted_pages,
            duplicate_pages: done.duplicate_pages,
            checkpoint_attached: done.checkpoint_attached,
            lock: self.path_lock(done.lock, tokens.len()),
        })
    }

    /// Frees at least `n` cached pages if possible by evicting least-recently-used unlocked
    /// leaves (with their checkpoints). Leaves without a checkpoint go first: no match can use
    /// their KV. Returns the number of pages freed (may exceed `n`: whole nodes are evicted;
    /// may be less: nothing evictable is left).
    pub fn evict_pages(&self, n: usize) -> usize {
        lock(&self.tree).evict_pages(n)
    }

    /// Frees up to `n` cached checkpoint slots, least recently used first, keeping their KV.
    /// A checkpoint pinned by a live `match_prefix` lock is never evicted. Returns slots freed.
    pub fn evict_checkpoints(&self, n: usize) -> usize {
        lock(&self.tree).evict_checkpoints(n)
    }

    /// Proves the accounting: for pages and slots, free-list sanity and
    /// `free + owned outside the tree + cached == total`, no page or slot in two nodes, every
    /// cached id handed out by the pool, lock counts equal to the live locks, tree shape
    /// (keys whole pages, children keyed by distinct first pages, parent links, depths), and
    /// LRU index membership.
    pub fn check_integrity(&self) -> Result<(), CacheError> {
        let tree = lock(&self.tree);
        self.pages.check_integrity()?;
        self.slots.check_integrity()?;
        tree.check_integrity(&self.pages, &self.slots)
    }

    /// Occupancy of pools and tree.
    pub fn stats(&self) -> CacheStats {
        let tree = lock(&self.tree);
        let counts = tree.counts();
        let pages_out = self.pages.outstanding();
        let slots_out = self.slots.outstanding();
        CacheStats {
            pages_total: self.pages.total(),
            pages_free: self.pages.free_count(),
            pages_cached: counts.pages_cached,
            pages_in_use: pages_out.saturating_sub(counts.pages_cached),
            pages_evictable: counts.pages_cached - counts.pages_locked,
            slots_total: self.slots.total(),
            slots_free: self.slots.free_count(),
            slots_cached: counts.slots_cached,
            slots_in_use: slots_out.saturating_sub(counts.slots_cached),
            slots_evictable: counts.slots_cached - counts.slots_pinned,
            nodes: counts.nodes,
            locked_nodes: counts.locked_nodes,
        }
    }
}

impl fmt::Debug for RadixCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RadixCache")
            .field("stats", &self.stats())
            .finish()
    }
}
