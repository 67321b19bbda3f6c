//! Path locks: a registry of live locks and the per-node counts they imply.
//!
//! A lock on node `n` adds one to `lock_count` of `n` and of every ancestor (root excluded),
//! which keeps all of them out of the KV LRU index. A match lock also adds one to
//! `checkpoint_pins` of `n` alone: only the checkpoint being copied is pinned, ancestors'
//! checkpoints on the path stay evictable (the request does not need them).

use super::arena::NodeId;
use super::tree::Tree;

/// Key of a live lock in the tree's lock registry.
pub(crate) type LockId = u64;

/// What a live lock holds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LockEntry {
    /// Deepest locked node. It keeps its id across splits (splits give the new id to the
    /// prefix), so the registry never needs updating.
    pub node: NodeId,
    /// Whether the lock pins `node`'s checkpoint.
    pub pins_checkpoint: bool,
}

impl Tree {
    /// Locks the path from the root to `node` and registers the lock.
    pub(crate) fn lock_path(&mut self, node: NodeId, pin_checkpoint: bool) -> LockId {
        let lock_id = self.next_lock;
        self.next_lock += 1;
        self.locks.insert(
            lock_id,
            LockEntry {
                node,
                pins_checkpoint: pin_checkpoint,
            },
        );
        if pin_checkpoint {
            let n = &mut self.nodes[node];
            n.checkpoint_pins += 1;
            if n.checkpoint_pins == 1 {
                self.counts.slots_pinned += usize::from(n.checkpoint.is_some());
                self.refresh_checkpoint_lru(node);
            }
        }
        let mut cursor = Some(node);
        while let Some(id) = cursor.filter(|&id| id != self.root) {
            let n = &mut self.nodes[id];
            n.lock_count += 1;
            cursor = n.parent;
            if n.lock_count == 1 {
                self.counts.locked_nodes += 1;
                self.counts.pages_locked += n.pages.len();
                self.refresh_kv_lru(id);
            }
        }
        lock_id
    }

    /// Releases a registered lock. Unknown ids are ignored (cannot happen through `PathLock`,
    /// which unlocks exactly once).
    pub(crate) fn unlock(&mut self, lock: LockId) {
        let Some(entry) = self.locks.remove(&lock) else {
            return;
        };
        if self.nodes.get(entry.node).is_none() {
            debug_assert!(false, "locked node vanished");
            return;
        }
        if entry.pins_checkpoint {
            let n = &mut self.nodes[entry.node];
            n.checkpoint_pins -= 1;
            if n.checkpoint_pins == 0 {
                self.counts.slots_pinned -= usize::from(n.checkpoint.is_some());
                self.refresh_checkpoint_lru(entry.node);
            }
        }
        let mut cursor = Some(entry.node);
        while let Some(id) = cursor.filter(|&id| id != self.root) {
            let n = &mut self.nodes[id];
            n.lock_count -= 1;
            cursor = n.parent;
            if n.lock_count == 0 {
                self.counts.locked_nodes -= 1;
                self.counts.pages_locked -= n.pages.len();
                self.refresh_kv_lru(id);
            }
        }
    }
}
