//! [`SchedulerStats`]: occupancy and counters for metrics and logs.

use crate::{Scheduler, StateName};

/// A snapshot of the scheduler's occupancy and cumulative counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SchedulerStats {
    /// Resident requests (prefilling + decoding).
    pub running: usize,
    /// Resident requests with prompt chunks left to plan.
    pub prefilling: usize,
    /// Resident requests decoding.
    pub decoding: usize,
    /// Queued requests (new or preempted).
    pub waiting: usize,
    /// Planned steps not yet committed.
    pub steps_in_flight: usize,
    /// Allocatable KV pages.
    pub pages_total: usize,
    /// Pages owned by requests (private pages).
    pub pages_used: usize,
    /// Pages held by the radix cache.
    pub pages_cached: usize,
    /// Pages in the free list.
    pub pages_free: usize,
    /// Allocatable state slots.
    pub slots_total: usize,
    /// Slots owned by requests (working and snapshot slots).
    pub slots_used: usize,
    /// Checkpoint slots held by the radix cache.
    pub slots_cached: usize,
    /// Slots in the free list.
    pub slots_free: usize,
    /// Tokens served from the prefix cache, summed over admissions.
    pub prefix_hit_tokens: u64,
    /// Tokens asked for at admission (prompt, or prompt + output when resuming), summed.
    pub prefix_requested_tokens: u64,
    /// Preemptions so far.
    pub preemptions: u64,
    /// Requests ended so far (stop, length, error; aborts excluded).
    pub finished: u64,
    /// Cached KV pages freed by eviction so far.
    pub evicted_pages: u64,
    /// Cached state checkpoints freed by eviction so far.
    pub evicted_checkpoints: u64,
}

impl Scheduler {
    /// Current occupancy and counters.
    pub fn stats(&self) -> SchedulerStats {
        let cache = self.mem.cache.stats();
        let states = self
            .running
            .iter()
            .filter_map(|&k| self.entries.get(k))
            .map(|e| e.request.name());
        let prefilling = states.filter(|&s| s == StateName::Prefilling).count();
        SchedulerStats {
            running: self.running.len(),
            prefilling,
            decoding: self.running.len() - prefilling,
            waiting: self.waiting.len(),
            steps_in_flight: self.inflight.len(),
            pages_total: cache.pages_total,
            pages_used: cache.pages_in_use,
            pages_cached: cache.pages_cached,
            pages_free: cache.pages_free,
            slots_total: cache.slots_total,
            slots_used: cache.slots_in_use,
            slots_cached: cache.slots_cached,
            slots_free: cache.slots_free,
            prefix_hit_tokens: self.counters.prefix_hit_tokens,
            prefix_requested_tokens: self.counters.prefix_requested_tokens,
            preemptions: self.counters.preemptions,
            finished: self.counters.finished,
            evicted_pages: self.mem.evicted_pages.get(),
            evicted_checkpoints: self.mem.evicted_checkpoints.get(),
        }
    }
}
