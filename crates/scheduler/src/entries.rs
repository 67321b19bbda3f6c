//! The table of live requests: a slab of [`Entry`]s indexed by request id.

use std::collections::HashMap;

use crate::{Request, RequestId, Sequence};

/// One live request: its tokens, its state, and overlap bookkeeping.
#[derive(Debug)]
pub(crate) struct Entry {
    pub seq: Sequence,
    pub request: Request,
    /// Identifies the current residency (0 while waiting). Rows of in-flight steps carry the
    /// ticket they were planned under; a result for another ticket is stale and ignored.
    pub ticket: u64,
    /// `(step, sampling row)` of a planned, uncommitted sample of this request.
    pub pending_sample: Option<(u64, u32)>,
    /// Times this request was preempted.
    pub preemptions: u32,
}

/// Slab of entries with an id index; slab keys are stable while the entry lives.
#[derive(Debug, Default)]
pub(crate) struct Entries {
    slab: Vec<Option<Entry>>,
    free: Vec<u32>,
    index: HashMap<RequestId, u32>,
}

impl Entries {
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn key_of(&self, id: RequestId) -> Option<u32> {
        self.index.get(&id).copied()
    }

    pub fn insert(&mut self, entry: Entry) -> u32 {
        let id = entry.seq.spec().id;
        let key = match self.free.pop() {
            Some(key) => {
                self.slab[key as usize] = Some(entry);
                key
            }
            None => {
                self.slab.push(Some(entry));
                self.slab.len() as u32 - 1
            }
        };
        self.index.insert(id, key);
        key
    }

    pub fn remove(&mut self, key: u32) -> Option<Entry> {
        let entry = self.slab.get_mut(key as usize)?.take()?;
        self.index.remove(&entry.seq.spec().id);
        self.free.push(key);
        Some(entry)
    }

    pub fn get(&self, key: u32) -> Option<&Entry> {
        self.slab.get(key as usize)?.as_ref()
    }

    pub fn get_mut(&mut self, key: u32) -> Option<&mut Entry> {
        self.slab.get_mut(key as usize)?.as_mut()
    }

    /// The entry at `key` if it is still the residency `ticket`.
    pub fn live_ticket(&mut self, key: u32, ticket: u64) -> Option<&mut Entry> {
        self.get_mut(key).filter(|e| e.ticket == ticket)
    }

    pub fn iter(&self) -> impl Iterator<Item = (u32, &Entry)> {
        self.slab
            .iter()
            .enumerate()
            .filter_map(|(k, e)| Some((k as u32, e.as_ref()?)))
    }
}
