//! `check_integrity`: recomputes everything the tree keeps incrementally and compares.

use std::collections::{HashMap, HashSet};

use super::arena::NodeId;
use super::tree::{Counts, Tree};
use crate::{CacheError, PagePool, StatePool};

fn fail<T>(msg: String) -> Result<T, CacheError> {
    Err(CacheError::Integrity(msg))
}

impl Tree {
    pub(crate) fn check_integrity(
        &self,
        pages: &PagePool,
        slots: &StatePool,
    ) -> Result<(), CacheError> {
        let ps = self.page_size;
        let root = &self.nodes[self.root];
        if root.parent.is_some() || !root.key.is_empty() || !root.pages.is_empty() {
            return fail("root has a parent, tokens or pages".into());
        }
        if root.checkpoint.is_some() || root.end_depth != 0 {
            return fail("root has a checkpoint or a non-zero depth".into());
        }

        // Expected lock counts and pins, from the registry of live locks.
        let mut expected_locks: HashMap<NodeId, u32> = HashMap::new();
        let mut expected_pins: HashMap<NodeId, u32> = HashMap::new();
        for (lock, entry) in &self.locks {
            if self.nodes.get(entry.node).is_none() {
                return fail(format!("lock {lock} holds an evicted node"));
            }
            if entry.pins_checkpoint {
                *expected_pins.entry(entry.node).or_default() += 1;
            }
            let mut cursor = Some(entry.node);
            while let Some(id) = cursor.filter(|&id| id != self.root) {
                *expected_locks.entry(id).or_default() += 1;
                cursor = self.nodes[id].parent;
            }
        }

        let mut seen_pages = HashSet::new();
        let mut seen_slots = HashSet::new();
        let mut counts = Counts::default();
        let (mut kv_members, mut checkpoint_members) = (0, 0);
        let mut stack = vec![self.root];
        let mut visited = 0;
        while let Some(id) = stack.pop() {
            visited += 1;
            let n = &self.nodes[id];
            for (first, &child) in &n.children {
                let Some(c) = self.nodes.get(child) else {
                    return fail(format!("{id:?} has an evicted child"));
                };
                if c.parent != Some(id) {
                    return fail(format!("child {child:?} does not point back to {id:?}"));
                }
                if c.key.len() < ps || c.first_page(ps) != &first[..] {
                    return fail(format!("child {child:?} is filed under a wrong first page"));
                }
                stack.push(child);
            }
            let lru_ok = n.kv_lru == self.wanted_kv_key(id)
                && n.checkpoint_lru == self.wanted_checkpoint_key(id)
                && n.kv_lru.is_none_or(|k| self.kv_lru.contains(&k))
                && n.checkpoint_lru
                    .is_none_or(|k| self.checkpoint_lru.contains(&k));
            if !lru_ok {
                return fail(format!("{id:?} is misfiled in an LRU index"));
            }
            kv_members += usize::from(n.kv_lru.is_some());
            checkpoint_members += usize::from(n.checkpoint_lru.is_some());
            let want_locks = expected_locks.get(&id).copied().unwrap_or(0);
            let want_pins = expected_pins.get(&id).copied().unwrap_or(0);
            if n.lock_count != want_locks || n.checkpoint_pins != want_pins {
                return fail(format!(
                    "{id:?}: lock count {} / pins {} but live locks imply {want_locks} / {want_pins}",
                    n.lock_count, n.checkpoint_pins
                ));
            }
            if n.checkpoint_pins > 0 && n.checkpoint.is_none() {
                return fail(format!("{id:?} is pinned but has no checkpoint"));
            }
            if id == self.root {
                continue;
            }
            let Some(parent) = n.parent.and_then(|p| self.nodes.get(p)) else {
                return fail(format!("{id:?} has no live parent"));
            };
            if n.key.is_empty()
                || !n.key.len().is_multiple_of(ps)
                || n.pages.len() * ps != n.key.len()
            {
                return fail(format!(
                    "{id:?}: {} tokens, {} pages (page_size {ps})",
                    n.key.len(),
                    n.pages.len()
                ));
            }
            if n.end_depth != parent.end_depth + n.key.len() {
                return fail(format!("{id:?}: end depth {} inconsistent", n.end_depth));
            }
            for &page in n.pages.ids() {
                if page == 0 || !seen_pages.insert(page) || !pages.is_handed_out(page) {
                    return fail(format!("page {page} is reserved, in two nodes, or free"));
                }
            }
            if let Some(slot) = &n.checkpoint {
                if !seen_slots.insert(slot.id()) || !slots.is_handed_out(slot.id()) {
                    return fail(format!("slot {} in two nodes or free", slot.id()));
                }
            }
            counts.nodes += 1;
            counts.pages_cached += n.pages.len();
            counts.slots_cached += usize::from(n.checkpoint.is_some());
            if n.lock_count > 0 {
                counts.locked_nodes += 1;
                counts.pages_locked += n.pages.len();
            }
            if n.checkpoint_pins > 0 {
                counts.slots_pinned += 1;
            }
        }
        if visited != self.nodes.len() {
            return fail(format!(
                "{} nodes in the arena, {visited} reachable",
                self.nodes.len()
            ));
        }
        if kv_members != self.kv_lru.len() || checkpoint_members != self.checkpoint_lru.len() {
            return fail("LRU index holds entries of no node".into());
        }
        if counts != self.counts {
            return fail(format!(
                "running totals {:?} != recomputed {counts:?}",
                self.counts
            ));
        }
        // Cached handles are a subset of the pool's outstanding handles; the rest are owned
        // by requests: free + in use + cached == total follows from the pool's own check.
        if counts.pages_cached > pages.outstanding() || counts.slots_cached > slots.outstanding() {
            return fail("tree holds more pages or slots than the pools handed out".into());
        }
        Ok(())
    }
}
