//! Free-list allocator of `u32` ids shared by [`PagePool`](crate::PagePool) and
//! [`StatePool`](crate::StatePool). Id 0 is reserved and never handed out.

use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::CacheError;

/// Locks a mutex, ignoring poisoning: every critical section in this crate leaves its data
/// consistent before anything that could panic, so a poisoned lock still guards valid data.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// LIFO free list of ids `1..capacity+1` plus a per-id "handed out" flag that makes double
/// frees and foreign ids detectable.
#[derive(Debug)]
pub(crate) struct IdAlloc {
    free: Vec<u32>,
    handed_out: Vec<bool>,
}

impl IdAlloc {
    /// An allocator over ids `1..num_ids` (id 0 reserved); `what` names the argument in errors.
    pub(crate) fn new(num_ids: usize, what: &'static str) -> Result<Self, CacheError> {
        let max = u32::MAX as usize;
        if num_ids == 0 || num_ids > max {
            return Err(CacheError::BadPoolSize {
                what,
                got: num_ids,
                max,
            });
        }
        // Reverse order so that the first allocations return 1, 2, 3, ... (easier to read logs).
        let free = (1..num_ids as u32).rev().collect();
        Ok(Self {
            free,
            handed_out: vec![false; num_ids],
        })
    }

    /// Number of ids that can ever be handed out (reserved id 0 excluded).
    pub(crate) fn capacity(&self) -> usize {
        self.handed_out.len() - 1
    }

    pub(crate) fn free_count(&self) -> usize {
        self.free.len()
    }

    /// Ids currently owned by handles (`capacity - free`).
    pub(crate) fn outstanding(&self) -> usize {
        self.capacity() - self.free.len()
    }

    /// Takes `n` ids, or none at all when fewer than `n` are free.
    pub(crate) fn take(&mut self, n: usize) -> Option<Vec<u32>> {
        let start = self.free.len().checked_sub(n)?;
        let ids: Vec<u32> = self.free.drain(start..).rev().collect();
        for &id in &ids {
            self.handed_out[id as usize] = true;
        }
        Some(ids)
    }

    /// Returns ids to the free list. An id that is not handed out (a double free) is ignored
    /// in release builds so the free list never holds duplicates; debug builds assert.
    pub(crate) fn give_back(&mut self, ids: &[u32]) {
        for &id in ids {
            match self.handed_out.get_mut(id as usize) {
                Some(flag) if *flag => {
                    *flag = false;
                    self.free.push(id);
                }
                _ => debug_assert!(false, "id {id} returned twice or never handed out"),
            }
        }
    }

    /// Whether `id` is currently owned by a handle.
    pub(crate) fn is_handed_out(&self, id: u32) -> bool {
        self.handed_out.get(id as usize).copied().unwrap_or(false)
    }

    /// Proves: free list holds distinct, valid, not-handed-out ids; reserved id 0 is never used;
    /// and `free + handed out == capacity`.
    pub(crate) fn check(&self, what: &str) -> Result<(), CacheError> {
        let bad = |msg: String| Err(CacheError::Integrity(format!("{what}: {msg}")));
        if self.handed_out[0] {
            return bad("reserved id 0 was handed out".into());
        }
        let mut seen = vec![false; self.handed_out.len()];
        for &id in &self.free {
            let i = id as usize;
            if i == 0 || i >= self.handed_out.len() {
                return bad(format!("free list holds invalid id {id}"));
            }
            if seen[i] {
                return bad(format!("free list holds id {id} twice"));
            }
            if self.handed_out[i] {
                return bad(format!("id {id} is both free and handed out"));
            }
            seen[i] = true;
        }
        let handed = self.handed_out.iter().filter(|&&h| h).count();
        if handed + self.free.len() != self.capacity() {
            return bad(format!(
                "free {} + handed out {handed} != capacity {}",
                self.free.len(),
                self.capacity()
            ));
        }
        Ok(())
    }
}
