//! Slab of tree nodes addressed by generational indices: a stale [`NodeId`] (its node was
//! evicted and the slot reused) is detected instead of silently aliasing another node.

use std::ops::{Index, IndexMut};

/// Index of a node in the [`Arena`], plus the generation of the slot when it was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct NodeId {
    index: u32,
    generation: u32,
}

struct Entry<T> {
    generation: u32,
    value: Option<T>,
}

/// Vector of entries with a free list of vacant indices.
pub(crate) struct Arena<T> {
    entries: Vec<Entry<T>>,
    vacant: Vec<u32>,
    live: usize,
}

impl<T> Arena<T> {
    pub(crate) fn new() -> Self {
        Self {
            entries: Vec::new(),
            vacant: Vec::new(),
            live: 0,
        }
    }

    /// Number of live values.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    pub(crate) fn insert(&mut self, value: T) -> NodeId {
        self.live += 1;
        if let Some(index) = self.vacant.pop() {
            let entry = &mut self.entries[index as usize];
            entry.value = Some(value);
            return NodeId {
                index,
                generation: entry.generation,
            };
        }
        let index = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
        self.entries.push(Entry {
            generation: 0,
            value: Some(value),
        });
        NodeId {
            index,
            generation: 0,
        }
    }

    /// Removes and returns the value; `None` for a stale or unknown id.
    pub(crate) fn remove(&mut self, id: NodeId) -> Option<T> {
        let entry = self.entries.get_mut(id.index as usize)?;
        if entry.generation != id.generation {
            return None;
        }
        let value = entry.value.take()?;
        // A new generation makes every copy of `id` stale.
        entry.generation = entry.generation.wrapping_add(1);
        self.vacant.push(id.index);
        self.live -= 1;
        Some(value)
    }

    pub(crate) fn get(&self, id: NodeId) -> Option<&T> {
        let entry = self.entries.get(id.index as usize)?;
        (entry.generation == id.generation)
            .then_some(entry.value.as_ref())
            .flatten()
    }

    pub(crate) fn get_mut(&mut self, id: NodeId) -> Option<&mut T> {
        let entry = self.entries.get_mut(id.index as usize)?;
        (entry.generation == id.generation)
            .then_some(entry.value.as_mut())
            .flatten()
    }
}

/// Indexing with a stale id is a bug in the tree code (ids held outside the tree are always
/// checked with [`Arena::get`]), so it panics with a clear message like `slotmap` does.
impl<T> Index<NodeId> for Arena<T> {
    type Output = T;
    fn index(&self, id: NodeId) -> &T {
        self.get(id)
            .unwrap_or_else(|| panic!("radix arena: stale node id {id:?}"))
    }
}

impl<T> IndexMut<NodeId> for Arena<T> {
    fn index_mut(&mut self, id: NodeId) -> &mut T {
        self.get_mut(id)
            .unwrap_or_else(|| panic!("radix arena: stale node id {id:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_ids_are_detected_after_reuse() {
        let mut arena = Arena::new();
        let a = arena.insert("a");
        assert_eq!(arena.remove(a), Some("a"));
        let b = arena.insert("b");
        assert_eq!(
            arena.get(a),
            None,
            "old id must not see the new value in the same slot"
        );
        assert_eq!(arena.get(b), Some(&"b"));
        assert_eq!(arena.remove(a), None);
        assert_eq!(arena.len(), 1);
    }
}
