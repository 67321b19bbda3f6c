//! The tree proper: walking, splitting, matching and inserting. Locks live in `lock.rs`,
//! eviction and LRU indexes in `evict.rs`, the accounting proof in `integrity.rs`.

use std::collections::{BTreeSet, HashMap};

use super::arena::{Arena, NodeId};
use super::lock::{LockEntry, LockId};
use super::node::{CheckpointKey, KvKey, Node};
use crate::{CacheError, PageId, PagePool, Pages, Slot, SlotId, TokenId};

/// The radix tree behind a `RadixCache` mutex.
pub(crate) struct Tree {
    pub(super) page_size: usize,
    pub(super) nodes: Arena<Node>,
    pub(super) root: NodeId,
    /// Logical clock for LRU: bumped once per match / insert.
    pub(super) tick: u64,
    pub(super) locks: HashMap<LockId, LockEntry>,
    pub(super) next_lock: LockId,
    /// Evictable KV leaves (unlocked, childless, not the root).
    pub(super) kv_lru: BTreeSet<KvKey>,
    /// Evictable checkpoints (present and not pinned by a match lock).
    pub(super) checkpoint_lru: BTreeSet<CheckpointKey>,
    pub(super) counts: Counts,
}

/// Running totals kept in step with every mutation (recomputed by `check_integrity`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    pub pages_cached: usize,
    /// Pages in nodes with `lock_count > 0`.
    pub pages_locked: usize,
    pub slots_cached: usize,
    /// Checkpoints with `checkpoint_pins > 0`.
    pub slots_pinned: usize,
    /// Nodes, root excluded.
    pub nodes: usize,
    pub locked_nodes: usize,
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

/// Where a read-only walk over whole pages of some tokens stopped.
struct Descent {
    /// Fully matched nodes, root excluded, top-down.
    path: Vec<NodeId>,
    /// A child matched only on its first `usize` pages (`0 < pages < child's pages`).
    partial: Option<(NodeId, usize)>,
}

impl Tree {
    pub(crate) fn new(pool: &PagePool) -> Self {
        let mut nodes = Arena::new();
        let root = nodes.insert(Node::new(None, Vec::new(), Pages::empty(pool), 0));
        Self {
            page_size: pool.page_size(),
            nodes,
            root,
            tick: 0,
            locks: HashMap::new(),
            next_lock: 0,
            kv_lru: BTreeSet::new(),
            checkpoint_lru: BTreeSet::new(),
            counts: Counts::default(),
        }
    }

    pub(crate) fn counts(&self) -> Counts {
        self.counts
    }

    /// Walks whole pages of `tokens` (callers pass a multiple of `page_size`) without changing
    /// anything.
    fn descend(&self, tokens: &[TokenId]) -> Descent {
        let ps = self.page_size;
        let mut path = Vec::new();
        let mut node = self.root;
        let mut depth = 0;
        while depth < tokens.len() {
            let rest = &tokens[depth..];
            let Some(&child) = self.nodes[node].children.get(&rest[..ps]) else {
                break;
            };
            let key = &self.nodes[child].key;
            // Whole-page slice comparisons compile to memcmp (token-by-token was the hot spot).
            let pages = key
                .chunks(ps)
                .zip(rest.chunks(ps))
                .take_while(|(a, b)| a == b)
                .count();
            if pages * ps < key.len() {
                // The first page matched through the map, so `pages >= 1`.
                return Descent {
                    path,
                    partial: Some((child, pages)),
                };
            }
            path.push(child);
            node = child;
            depth += key.len();
        }
        Descent {
            path,
            partial: None,
        }
    }

    fn end_depth(&self, path: &[NodeId]) -> usize {
        path.last().map_or(0, |&id| self.nodes[id].end_depth)
    }

    fn page_ids(&self, path: &[NodeId]) -> Vec<PageId> {
        let mut ids = Vec::with_capacity(self.end_depth(path) / self.page_size);
        for &id in path {
            ids.extend_from_slice(self.nodes[id].pages.ids());
        }
        ids
    }

    pub(crate) fn match_prefix(&mut self, tokens: &[TokenId]) -> MatchOutcome {
        let ps = self.page_size;
        // Never the whole prompt: at least the last token is recomputed to get logits.
        let usable = tokens.len().saturating_sub(1) / ps * ps;
        let Descent { mut path, partial } = self.descend(&tokens[..usable]);
        let kv_match_tokens = self.end_depth(&path) + partial.map_or(0, |(_, pages)| pages * ps);
        // A hybrid model resumes only from a state snapshot: cut back to the deepest one.
        let keep = path
            .iter()
            .rposition(|&id| self.nodes[id].checkpoint.is_some());
        path.truncate(keep.map_or(0, |i| i + 1));
        let Some(&end) = path.last() else {
            return MatchOutcome {
                hit_tokens: 0,
                kv_match_tokens,
                page_ids: Vec::new(),
                checkpoint: None,
                lock: None,
            };
        };
        self.tick += 1;
        for &id in &path {
            self.touch_kv(id);
        }
        self.touch_checkpoint(end);
        let checkpoint = self.nodes[end].checkpoint.as_ref().map(Slot::id);
        MatchOutcome {
            hit_tokens: self.nodes[end].end_depth,
            kv_match_tokens,
            page_ids: self.page_ids(&path),
            checkpoint,
            lock: Some(self.lock_path(end, true)),
        }
    }

    pub(crate) fn insert(
        &mut self,
        tokens: &[TokenId],
        mut pages: Pages,
        checkpoint: Option<Slot>,
    ) -> Result<InsertOutcome, CacheError> {
        let ps = self.page_size;
        if !tokens.len().is_multiple_of(ps) {
            return Err(CacheError::PartialPage {
                tokens: tokens.len(),
                page_size: ps,
            });
        }
        let total_pages = tokens.len() / ps;
        let given_from = total_pages
            .checked_sub(pages.len())
            .ok_or(CacheError::TooManyPages {
                pages: pages.len(),
                tokens: tokens.len(),
                page_size: ps,
            })?;
        let Descent { mut path, partial } = self.descend(tokens);
        let matched = self.end_depth(&path) / ps + partial.map_or(0, |(_, pages)| pages);
        if matched < given_from {
            return Err(CacheError::PrefixNotCached {
                expected: given_from * ps,
                cached: matched * ps,
            });
        }
        // Validation done; from here on the tree changes.
        self.tick += 1;
        if let Some((child, at)) = partial {
            path.push(self.split(child, at));
        }
        // Pages [0, matched - given_from) of `pages` duplicate cached ones: free them.
        let fresh = pages.split_off(matched - given_from);
        let duplicate_pages = pages.len();
        drop(pages);
        let adopted_pages = fresh.len();
        if !fresh.is_empty() {
            let parent = path.last().copied().unwrap_or(self.root);
            path.push(self.add_leaf(parent, tokens[matched * ps..].to_vec(), fresh));
        }
        for &id in &path {
            self.touch_kv(id);
        }
        let end = path.last().copied();
        let checkpoint_attached = match (end, checkpoint) {
            (Some(end), Some(slot)) => self.attach_checkpoint(end, slot),
            _ => false, // no checkpoint, or one for the empty prefix (dropped: useless)
        };
        Ok(InsertOutcome {
            page_ids: self.page_ids(&path),
            adopted_pages,
            duplicate_pages,
            checkpoint_attached,
            lock: end.map(|end| self.lock_path(end, false)),
        })
    }

    /// Splits `child` after its first `at` pages: a new node takes that prefix (and the
    /// child's place under its parent); `child` keeps the suffix, its children and its
    /// checkpoint, which describes the suffix's end. Returns the new prefix node.
    fn split(&mut self, child: NodeId, at: usize) -> NodeId {
        let ps = self.page_size;
        let node = &mut self.nodes[child];
        let suffix_key = node.key.split_off(at * ps);
        let prefix_key = std::mem::replace(&mut node.key, suffix_key);
        let suffix_pages = node.pages.split_off(at);
        let prefix_pages = std::mem::replace(&mut node.pages, suffix_pages);
        let parent = node.parent;
        let prefix_end = node.end_depth - node.key.len();
        let (lock_count, kv_tick) = (node.lock_count, node.kv_tick);
        let child_first: Box<[TokenId]> = node.first_page(ps).into();

        let mut prefix = Node::new(parent, prefix_key, prefix_pages, prefix_end);
        // Every lock through `child` also passes through its new prefix.
        prefix.lock_count = lock_count;
        prefix.kv_tick = kv_tick;
        prefix.children.insert(child_first, child);
        let prefix_first: Box<[TokenId]> = prefix.first_page(ps).into();
        let id = self.nodes.insert(prefix);
        self.nodes[child].parent = Some(id);
        if let Some(parent) = parent {
            self.nodes[parent].children.insert(prefix_first, id);
        }
        self.counts.nodes += 1;
        if lock_count > 0 {
            self.counts.locked_nodes += 1;
        }
        id
    }

    fn add_leaf(&mut self, parent: NodeId, key: Vec<TokenId>, pages: Pages) -> NodeId {
        let end = self.nodes[parent].end_depth + key.len();
        let first: Box<[TokenId]> = key[..self.page_size].into();
        self.counts.pages_cached += pages.len();
        self.counts.nodes += 1;
        let id = self.nodes.insert(Node::new(Some(parent), key, pages, end));
        self.nodes[parent].children.insert(first, id);
        self.refresh_kv_lru(parent); // no longer a leaf
        id
    }

    /// Attaches `slot` as the checkpoint of `node` unless it has one (then `slot` is freed and
    /// the existing checkpoint counts as freshly used). Returns whether it was attached.
    fn attach_checkpoint(&mut self, node: NodeId, slot: Slot) -> bool {
        let attached = self.nodes[node].checkpoint.is_none();
        if attached {
            self.nodes[node].checkpoint = Some(slot);
            self.counts.slots_cached += 1;
            self.refresh_kv_lru(node); // a leaf with a checkpoint sorts later
        }
        self.touch_checkpoint(node);
        attached
    }
}
