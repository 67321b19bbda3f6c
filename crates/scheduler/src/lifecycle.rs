//! Leaving the running set: preemption (back to waiting), ending (finished), removal. What is
//! committed is published into the radix cache first, so a preempted request resumes from it
//! and a follow-up turn hits it.

use crate::{FinishReason, Request, RequestError, RequestId, Scheduler};

use crate::entries::Entry;

impl Scheduler {
    /// Removes a live entry from the table and from the waiting / running lists.
    pub(crate) fn take_entry(&mut self, key: u32) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        if matches!(entry.request, Request::Waiting) {
            self.waiting.retain(|&k| k != key);
        } else {
            self.running.retain(|&k| k != key);
        }
        Some(entry)
    }

    /// Ends a live request with `reason`, publishing its committed tokens (and newest state
    /// snapshot) into the cache unless the reason is a cache failure. Returns its id.
    pub(crate) fn end(&mut self, key: u32, reason: FinishReason) -> Option<RequestId> {
        let entry = self.take_entry(key)?;
        self.counters.finished += 1;
        // Finished requests never stay in the table, so `finish` is accepted here.
        if let Ok((_finished, Some(resident))) = entry.request.finish(reason) {
            if reason != FinishReason::Error(RequestError::CacheInsert) {
                // A failed publish only loses cache content: the handles are dropped either way.
                let _ = resident.publish_committed(&self.mem.cache, entry.seq.tokens());
            }
        }
        Some(entry.seq.spec().id)
    }

    /// Sends the resident request `key` back to the front of the waiting queue (it is the
    /// next to be admitted), publishing its committed tokens so it can resume from them.
    /// Its in-flight results become stale: the ticket changes.
    pub(crate) fn preempt(&mut self, key: u32) {
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        let request = std::mem::replace(&mut entry.request, Request::Waiting);
        match request.preempt() {
            Ok((waiting, resident)) => {
                entry.request = waiting;
                entry.ticket = 0;
                entry.pending_sample = None;
                entry.preemptions += 1;
                let _ = resident.publish_committed(&self.mem.cache, entry.seq.tokens());
                self.running.retain(|&k| k != key);
                self.waiting.push_front(key);
                self.counters.preemptions += 1;
            }
            Err((unchanged, _)) => entry.request = unchanged,
        }
    }
}
