//! Planning one step: resident requests oldest first (decodes one token each, prefills a
//! chunk), then admissions from the waiting queue. Memory comes from the pools, then from
//! cache eviction, then from preempting the youngest resident request.

use crate::entries::Entry;
use crate::resident::{Snapshot, SnapshotKind};
use crate::scheduler::{InflightStep, RowRecord};
use crate::{
    FinishReason, Request, RequestError, Resident, Row, RowTokens, Scheduler, StateInit, StateName,
    StepBudget, StepPlan,
};

/// A plan being built, with what commit will need to know about its rows.
pub(crate) struct Draft {
    pub plan: StepPlan,
    pub rows: Vec<RowRecord>,
}

impl Scheduler {
    /// Plans the next step. An empty plan runs nothing and needs no commit; requests that
    /// ended while planning (out of memory) are listed in [`StepPlan::finished`].
    pub fn schedule(&mut self) -> StepPlan {
        let decodes = self
            .running
            .iter()
            .filter(|&&k| self.state(k) == Some(StateName::Decoding))
            .count();
        let mut budget = StepBudget::new(self.config.max_step_tokens, decodes);
        let mut draft = Draft {
            plan: StepPlan::new(self.next_step),
            rows: Vec::new(),
        };
        let mut i = 0;
        while i < self.running.len() {
            match self.state(self.running[i]) {
                Some(StateName::Decoding) => self.plan_decode(i, &mut draft, &mut budget),
                Some(StateName::Prefilling) => {
                    self.plan_chunk(i, StateInit::Continue, usize::MAX, &mut draft, &mut budget)
                }
                _ => {}
            }
            i += 1; // a request removed while planning is always the last one: the loop ends
        }
        self.admit_waiting(&mut draft, &mut budget);
        if !draft.plan.is_empty() {
            let samples = draft.plan.num_samples();
            self.inflight.push_back(InflightStep {
                step: draft.plan.step,
                rows: draft.rows,
                samples,
            });
            self.next_step += 1;
        }
        draft.plan
    }

    fn state(&self, key: u32) -> Option<StateName> {
        Some(self.entries.get(key)?.request.name())
    }

    /// Plans one decode token for `running[i]`: the last committed token, or the token the
    /// previous step samples (not known yet).
    fn plan_decode(&mut self, i: usize, draft: &mut Draft, budget: &mut StepBudget) {
        let (key, step) = (self.running[i], draft.plan.step);
        let Some(entry) = self.entries.get(key) else {
            return;
        };
        let Some(pos) = entry.request.resident().map(Resident::computed) else {
            return;
        };
        let known = entry.seq.tokens().len();
        let prev_row = match entry.pending_sample {
            _ if pos + 1 == known => None,
            Some((s, row)) if pos == known && s + 1 == step => Some(row),
            _ => return budget.release_decode(), // result of an older step still outstanding
        };
        if !self.grow(i, pos + 1, draft, budget) {
            return budget.release_decode();
        }
        let ps = self.mem.page_size;
        let snapshot = (pos + 1)
            .is_multiple_of(ps)
            .then(|| self.snapshot(pos + 1, step, SnapshotKind::Decode))
            .flatten();
        budget.take_decode();
        let Some(Entry {
            seq,
            request,
            ticket,
            pending_sample,
            ..
        }) = self.entries.get_mut(key)
        else {
            return;
        };
        let Some(resident) = request.resident_mut() else {
            return;
        };
        let tokens = match prev_row {
            Some(row) => RowTokens::PrevStep(row),
            None => RowTokens::Known(&seq.tokens()[pos..pos + 1]),
        };
        let sample_row = draft.plan.push(Row {
            id: seq.spec().id,
            start: pos,
            tokens,
            pages: resident.page_row((pos + 1).div_ceil(ps)),
            working: resident.working_slot(),
            init: StateInit::Continue,
            checkpoint: snapshot.as_ref().map(|s| (s.slot.id(), s.offset)),
            sampling: Some(&seq.spec().sampling),
        });
        resident.plan(pos + 1, snapshot);
        *pending_sample = sample_row.map(|row| (step, row));
        draft.rows.push(RowRecord {
            key,
            ticket: *ticket,
            end: pos + 1,
            sample_row,
        });
    }

    /// Plans the next prompt chunk of `running[i]` (as large as the budget allows, ending on a
    /// page boundary unless it is the last, and not past `max_end`), with a snapshot at its
    /// last page boundary.
    pub(crate) fn plan_chunk(
        &mut self,
        i: usize,
        init: StateInit,
        max_end: usize,
        draft: &mut Draft,
        budget: &mut StepBudget,
    ) {
        let (key, step, ps) = (self.running[i], draft.plan.step, self.mem.page_size);
        let Some(entry) = self.entries.get(key) else {
            return;
        };
        let Some(done) = entry.request.resident().map(Resident::computed) else {
            return;
        };
        let total = entry.seq.tokens().len();
        let n = budget
            .prefill_chunk(done, total, ps)
            .min(max_end.saturating_sub(done));
        if n == 0 || !self.grow(i, done + n, draft, budget) {
            return;
        }
        let end = done + n;
        let boundary = end / ps * ps;
        let snapshot = (boundary > done)
            .then(|| self.snapshot(boundary, step, SnapshotKind::Prefill))
            .flatten();
        budget.take(n);
        let Some(Entry {
            seq,
            request,
            ticket,
            pending_sample,
            ..
        }) = self.entries.get_mut(key)
        else {
            return;
        };
        let Some(resident) = request.resident_mut() else {
            return;
        };
        let last = end == total;
        let sample_row = draft.plan.push(Row {
            id: seq.spec().id,
            start: done,
            tokens: RowTokens::Known(&seq.tokens()[done..end]),
            pages: resident.page_row(end.div_ceil(ps)),
            working: resident.working_slot(),
            init,
            checkpoint: snapshot.as_ref().map(|s| (s.slot.id(), s.offset)),
            sampling: last.then_some(&seq.spec().sampling),
        });
        resident.plan(end, snapshot);
        if let Request::Prefilling { window, .. } = request {
            *window = done..end;
        }
        if last {
            let prefilling = std::mem::replace(request, Request::Waiting);
            *request = prefilling
                .prompt_planned()
                .unwrap_or_else(|(unchanged, _)| unchanged);
            *pending_sample = sample_row.map(|row| (step, row));
        }
        draft.rows.push(RowRecord {
            key,
            ticket: *ticket,
            end,
            sample_row,
        });
    }

    /// A slot for a snapshot, if one can be had (snapshots are optional: without one the
    /// step simply publishes no checkpoint).
    fn snapshot(&self, offset: usize, step: u64, kind: SnapshotKind) -> Option<Snapshot> {
        Some(Snapshot {
            slot: self.mem.alloc_slot()?,
            offset,
            step,
            kind,
        })
    }

    /// Gives `running[i]` pages for a context of `tokens` tokens: from the pool, then by
    /// evicting the cache, then by preempting the youngest other resident request. When
    /// `running[i]` is itself the youngest it is preempted, or, if it is alone (so it can never
    /// fit), ended with an out-of-memory error. Returns whether the pages are there.
    fn grow(
        &mut self,
        i: usize,
        tokens: usize,
        draft: &mut Draft,
        budget: &mut StepBudget,
    ) -> bool {
        let key = self.running[i];
        loop {
            let Some(resident) = self.entries.get(key).and_then(|e| e.request.resident()) else {
                return false;
            };
            let missing = resident.pages_missing(tokens, self.mem.page_size);
            if missing == 0 {
                return true;
            }
            if let Some(pages) = self.mem.alloc_pages(missing) {
                if let Some(resident) = self
                    .entries
                    .get_mut(key)
                    .and_then(|e| e.request.resident_mut())
                {
                    resident.add_pages(pages);
                }
                return true;
            }
            let youngest = self.running.len() - 1;
            if youngest > i {
                let victim = self.running[youngest];
                if self.state(victim) == Some(StateName::Decoding) {
                    budget.release_decode();
                }
                self.preempt(victim);
            } else {
                if i > 0 {
                    self.preempt(key);
                } else {
                    self.fail_out_of_memory(key, tokens, draft);
                }
                return false;
            }
        }
    }

    pub(crate) fn fail_out_of_memory(
        &mut self,
        key: u32,
        context_tokens: usize,
        draft: &mut Draft,
    ) {
        let pool_pages = self.mem.pages.total();
        let reason = FinishReason::Error(RequestError::OutOfMemory {
            context_tokens,
            pool_pages,
        });
        if let Some(id) = self.end(key, reason) {
            draft.plan.finished.push((id, reason));
        }
    }
}
