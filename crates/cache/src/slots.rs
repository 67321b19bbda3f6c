//! Recurrent-state slot pool and the owning [`Slot`] handle.

use std::fmt;
use std::sync::{Arc, Mutex};

use crate::id_alloc::{lock, IdAlloc};
use crate::{CacheError, SlotId};

/// A fixed pool of recurrent-state slots (per GDN layer: conv window + fp32 SSM state).
/// Slot 0 is reserved (padding lanes of CUDA graphs point at it) and never handed out.
///
/// Cloning is cheap (an `Arc`). The pool never evicts: when [`alloc`](Self::alloc) fails the
/// caller evicts checkpoints from its [`RadixCache`](crate::RadixCache) and retries.
#[derive(Clone)]
pub struct StatePool {
    ids: Arc<Mutex<IdAlloc>>,
}

impl StatePool {
    /// A pool of `num_slots` slots including the reserved slot 0 (`num_slots - 1` usable).
    pub fn new(num_slots: usize) -> Result<Self, CacheError> {
        Ok(Self {
            ids: Arc::new(Mutex::new(IdAlloc::new(num_slots, "num_slots")?)),
        })
    }

    /// Allocates one slot, or `None` when all are taken. Never evicts.
    pub fn alloc(&self) -> Option<Slot> {
        let id = lock(&self.ids).take(1)?.pop()?;
        Some(Slot {
            pool: self.clone(),
            id,
        })
    }

    /// Slots currently free.
    pub fn free_count(&self) -> usize {
        lock(&self.ids).free_count()
    }

    /// Slots that can be allocated at all (`num_slots - 1`).
    pub fn total(&self) -> usize {
        lock(&self.ids).capacity()
    }

    /// Slots currently owned by live [`Slot`] handles (requests or cached checkpoints).
    pub fn outstanding(&self) -> usize {
        lock(&self.ids).outstanding()
    }

    /// Whether `self` and `other` are handles of the same pool.
    pub fn same_pool(&self, other: &StatePool) -> bool {
        Arc::ptr_eq(&self.ids, &other.ids)
    }

    pub(crate) fn is_handed_out(&self, id: SlotId) -> bool {
        lock(&self.ids).is_handed_out(id)
    }

    /// Checks the free list against the handed-out flags (`free + outstanding == total`).
    pub fn check_integrity(&self) -> Result<(), CacheError> {
        lock(&self.ids).check("state pool")
    }
}

impl fmt::Debug for StatePool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids = lock(&self.ids);
        f.debug_struct("StatePool")
            .field("total", &ids.capacity())
            .field("free", &ids.free_count())
            .finish()
    }
}

/// Owning handle of one state slot; dropping it returns the slot to its pool.
pub struct Slot {
    pool: StatePool,
    id: SlotId,
}

impl Slot {
    /// The slot index (row in the executor's state tensors).
    pub fn id(&self) -> SlotId {
        self.id
    }

    /// The pool this slot belongs to.
    pub fn pool(&self) -> &StatePool {
        &self.pool
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        lock(&self.pool.ids).give_back(&[self.id]);
    }
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Slot({})", self.id)
    }
}
