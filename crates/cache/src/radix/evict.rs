//! LRU indexes and eviction. Both indexes are ordered sets kept in step with every change
//! that affects membership or order, so one eviction costs O(log nodes), never a scan.

use super::arena::NodeId;
use super::node::{CheckpointKey, KvKey};
use super::tree::Tree;

impl Tree {
    /// The KV LRU key `node` should have now: only unlocked, childless non-root nodes.
    pub(super) fn wanted_kv_key(&self, id: NodeId) -> Option<KvKey> {
        let n = &self.nodes[id];
        let evictable = id != self.root && n.children.is_empty() && n.lock_count == 0;
        evictable.then_some((u8::from(n.checkpoint.is_some()), n.kv_tick, id))
    }

    /// The checkpoint LRU key `node` should have now: a checkpoint no match lock pins.
    pub(super) fn wanted_checkpoint_key(&self, id: NodeId) -> Option<CheckpointKey> {
        let n = &self.nodes[id];
        let evictable = n.checkpoint.is_some() && n.checkpoint_pins == 0;
        evictable.then_some((n.checkpoint_tick, id))
    }

    /// Moves `node` to where it belongs in the KV LRU index (in, out, or re-keyed).
    pub(super) fn refresh_kv_lru(&mut self, id: NodeId) {
        let wanted = self.wanted_kv_key(id);
        let current = &mut self.nodes[id].kv_lru;
        if *current != wanted {
            if let Some(old) = current.take() {
                self.kv_lru.remove(&old);
            }
            if let Some(new) = wanted {
                self.kv_lru.insert(new);
            }
            self.nodes[id].kv_lru = wanted;
        }
    }

    /// Moves `node` to where it belongs in the checkpoint LRU index.
    pub(super) fn refresh_checkpoint_lru(&mut self, id: NodeId) {
        let wanted = self.wanted_checkpoint_key(id);
        let current = &mut self.nodes[id].checkpoint_lru;
        if *current != wanted {
            if let Some(old) = current.take() {
                self.checkpoint_lru.remove(&old);
            }
            if let Some(new) = wanted {
                self.checkpoint_lru.insert(new);
            }
            self.nodes[id].checkpoint_lru = wanted;
        }
    }

    /// Marks `node`'s KV as used now (call after bumping `tick`).
    pub(super) fn touch_kv(&mut self, id: NodeId) {
        self.nodes[id].kv_tick = self.tick;
        self.refresh_kv_lru(id);
    }

    /// Marks `node`'s checkpoint as used now.
    pub(super) fn touch_checkpoint(&mut self, id: NodeId) {
        self.nodes[id].checkpoint_tick = self.tick;
        self.refresh_checkpoint_lru(id);
    }

    /// Evicts whole unlocked leaves (KV and checkpoint) until `n` pages are freed or nothing
    /// is evictable; a parent left childless becomes a candidate itself. Returns pages freed.
    pub(crate) fn evict_pages(&mut self, n: usize) -> usize {
        let mut freed = 0;
        while freed < n {
            let Some((_, _, id)) = self.kv_lru.pop_first() else {
                break;
            };
            let Some(node) = self.nodes.remove(id) else {
                debug_assert!(false, "KV LRU held a stale node");
                continue;
            };
            if let Some(key) = node.checkpoint_lru {
                self.checkpoint_lru.remove(&key);
            }
            self.counts.nodes -= 1;
            self.counts.pages_cached -= node.pages.len();
            self.counts.slots_cached -= usize::from(node.checkpoint.is_some());
            freed += node.pages.len();
            if let Some(parent) = node.parent {
                let first = node.first_page(self.page_size);
                self.nodes[parent].children.remove(first);
                self.refresh_kv_lru(parent);
            }
            // Dropping `node` returns its pages and checkpoint slot to their pools.
        }
        freed
    }

    /// Frees up to `n` unpinned checkpoints, least recently used first, keeping their KV.
    /// Returns slots freed.
    pub(crate) fn evict_checkpoints(&mut self, n: usize) -> usize {
        let mut freed = 0;
        while freed < n {
            let Some((_, id)) = self.checkpoint_lru.pop_first() else {
                break;
            };
            let node = &mut self.nodes[id];
            node.checkpoint_lru = None;
            if node.checkpoint.take().is_some() {
                self.counts.slots_cached -= 1;
                freed += 1;
            }
            self.refresh_kv_lru(id); // a leaf without checkpoint is now dead KV: evict first
        }
        freed
    }
}
