//! Admission: the head of the waiting queue gets its prefix match, a working slot and the
//! pages of its first chunk, or waits. Admission never preempts.

use crate::schedule::Draft;
use crate::{Request, Resident, Scheduler, StateInit, StepBudget};

/// Outcome of trying to admit the head of the waiting queue.
enum Admission {
    /// Admitted; plan its first chunk with this working-slot initialisation, ending no later
    /// than `.1`.
    Admitted(StateInit, usize),
    /// Not one page of budget left for it this step.
    NoBudget,
    /// Pools and cache cannot provide its first chunk right now.
    NoMemory,
}

impl Scheduler {
    /// Admits waiting requests in FIFO order (a preempted one is at the front) while slots,
    /// budget and memory allow. Admission never preempts; if nothing is running and the head
    /// still cannot be admitted, it can never fit and ends with an error.
    pub(crate) fn admit_waiting(&mut self, draft: &mut Draft, budget: &mut StepBudget) {
        while self.running.len() < self.config.max_running {
            let Some(&key) = self.waiting.front() else {
                return;
            };
            match self.admit(key, budget) {
                Admission::Admitted(init, max_end) => {
                    let i = self.running.len() - 1;
                    self.plan_chunk(i, init, max_end, draft, budget);
                }
                Admission::NoBudget => return,
                Admission::NoMemory if self.running.is_empty() => {
                    let tokens = self.entries.get(key).map_or(0, |e| e.seq.tokens().len());
                    self.fail_out_of_memory(key, tokens, draft);
                }
                Admission::NoMemory => return,
            }
        }
    }

    /// Matches the head's tokens against the cache and grants it a working slot and the
    /// pages of its first chunk.
    ///
    /// When the KV matched further than the deepest checkpoint (the request branches off a
    /// cached path where no state snapshot exists), the first chunk ends at the branching
    /// point, so its snapshot lands there and later requests sharing that prefix (a common
    /// system prompt) resume from it instead of recomputing it.
    fn admit(&mut self, key: u32, budget: &StepBudget) -> Admission {
        let ps = self.mem.page_size;
        let Some(entry) = self.entries.get_mut(key) else {
            return Admission::NoBudget;
        };
        let tokens = entry.seq.tokens();
        let hit = match self.prefix_caching {
            true => self.mem.cache.match_prefix(tokens),
            false => self.mem.cache.match_prefix(&[]), // an empty match: hit 0, no lock
        };
        let max_end = match hit.kv_match_tokens {
            branch if branch > hit.hit_tokens => branch,
            _ => usize::MAX,
        };
        let n = budget
            .prefill_chunk(hit.hit_tokens, tokens.len(), ps)
            .min(max_end - hit.hit_tokens);
        if n == 0 {
            return Admission::NoBudget;
        }
        let Some(working) = self.mem.alloc_slot() else {
            return Admission::NoMemory;
        };
        let missing = (hit.hit_tokens + n).div_ceil(ps) - hit.page_ids.len();
        let Some(pages) = self.mem.alloc_pages(missing) else {
            return Admission::NoMemory;
        };
        let init = hit.checkpoint.map_or(StateInit::Zero, StateInit::CopyFrom);
        self.counters.prefix_hit_tokens += hit.hit_tokens as u64;
        self.counters.prefix_requested_tokens += tokens.len() as u64;
        let waiting = std::mem::replace(&mut entry.request, Request::Waiting);
        match waiting.admit(Resident::new(hit, working, pages)) {
            Ok(prefilling) => entry.request = prefilling,
            Err((unchanged, _)) => {
                entry.request = unchanged;
                return Admission::NoBudget;
            }
        }
        entry.ticket = self.next_ticket;
        self.next_ticket += 1;
        self.waiting.pop_front();
        self.running.push(key);
        Admission::Admitted(init, max_end)
    }
}
