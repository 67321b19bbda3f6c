//! [`Scheduler`]: the public face of the crate (submit, abort, stop, queries). Planning lives
//! in `schedule.rs`, result handling in `commit.rs`, leaving the running set in `lifecycle.rs`.

use std::collections::VecDeque;

use tokenspeed_cache::{RadixCache, TokenId};

use crate::entries::{Entries, Entry};
use crate::memory::Memory;
use crate::{
    Request, RequestId, RequestSpec, Resident, SchedulerConfig, SchedulerError, Sequence, StateName,
};

/// A planned step whose results are not committed yet.
#[derive(Debug)]
pub(crate) struct InflightStep {
    pub step: u64,
    pub rows: Vec<RowRecord>,
    pub samples: usize,
}

/// What commit needs to know about one planned sequence.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowRecord {
    pub key: u32,
    pub ticket: u64,
    /// Tokens of context computed once this row ran.
    pub end: usize,
    pub sample_row: Option<u32>,
}

/// Cumulative counters.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counters {
    pub prefix_hit_tokens: u64,
    pub prefix_requested_tokens: u64,
    pub preemptions: u64,
    pub finished: u64,
}

/// The request scheduler: owns every live request, plans steps, applies their results.
///
/// Call order: [`schedule`](Self::schedule) may be called once more before the previous
/// non-empty plan is committed (overlap); every non-empty plan must then be
/// [`commit`](Self::commit)ted, in order.
#[derive(Debug)]
pub struct Scheduler {
    pub(crate) config: SchedulerConfig,
    pub(crate) mem: Memory,
    pub(crate) entries: Entries,
    pub(crate) waiting: VecDeque<u32>,
    /// Resident requests in admission order (youngest last).
    pub(crate) running: Vec<u32>,
    pub(crate) inflight: VecDeque<InflightStep>,
    pub(crate) next_step: u64,
    pub(crate) next_ticket: u64,
    pub(crate) counters: Counters,
    /// Whether admissions match the prefix cache (off: every request computes from scratch).
    pub(crate) prefix_caching: bool,
}

impl Scheduler {
    /// A scheduler planning over `cache` (and the page and state pools it was built on).
    pub fn new(config: SchedulerConfig, cache: RadixCache) -> Result<Self, SchedulerError> {
        config.validate(cache.page_size(), cache.state_pool().total())?;
        Ok(Self {
            config,
            mem: Memory::new(cache),
            entries: Entries::default(),
            waiting: VecDeque::new(),
            running: Vec::new(),
            inflight: VecDeque::new(),
            next_step: 0,
            next_ticket: 1,
            counters: Counters::default(),
            prefix_caching: true,
        })
    }

    /// Turns prefix matching at admission on (the default) or off. Off, every request is
    /// computed from its first token; finished requests are still published (the cache
    /// simply goes unused and is evicted under pressure).
    pub fn set_prefix_caching(&mut self, enabled: bool) {
        self.prefix_caching = enabled;
    }

    /// The configuration.
    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// The radix cache the scheduler allocates from.
    pub fn cache(&self) -> &RadixCache {
        &self.mem.cache
    }

    /// Queues a new request.
    pub fn submit(&mut self, spec: RequestSpec) -> Result<(), SchedulerError> {
        let id = spec.id;
        if self.entries.key_of(id).is_some() {
            return Err(SchedulerError::DuplicateId(id));
        }
        if spec.prompt.is_empty() {
            return Err(SchedulerError::EmptyPrompt(id));
        }
        if spec.max_new_tokens == 0 {
            return Err(SchedulerError::ZeroMaxNewTokens(id));
        }
        let max_context = self.config.max_context;
        if spec.prompt.len() >= max_context {
            return Err(SchedulerError::PromptTooLong {
                id,
                prompt: spec.prompt.len(),
                max_context,
            });
        }
        let needed = (spec.prompt.len() + 1).div_ceil(self.mem.page_size);
        let pool = self.mem.pages.total();
        if needed > pool {
            return Err(SchedulerError::NeverFits { id, needed, pool });
        }
        let entry = Entry {
            seq: Sequence::new(spec),
            request: Request::Waiting,
            ticket: 0,
            pending_sample: None,
            preemptions: 0,
        };
        let key = self.entries.insert(entry);
        self.waiting.push_back(key);
        Ok(())
    }

    /// Aborts a live request in any state, freeing everything it owns. Results of its
    /// in-flight steps will be ignored.
    pub fn abort(&mut self, id: RequestId) -> Result<(), SchedulerError> {
        let key = self
            .entries
            .key_of(id)
            .ok_or(SchedulerError::UnknownRequest(id))?;
        let entry = self
            .take_entry(key)
            .ok_or(SchedulerError::UnknownRequest(id))?;
        match entry.request.abort() {
            Ok(_finished) => Ok(()),
            Err((_, err)) => Err(err.into()),
        }
    }

    /// Ends a request with [`FinishReason::Stop`](crate::FinishReason::Stop) on the server's
    /// behalf (e.g. a stop string matched), publishing its committed tokens to the cache.
    pub fn stop(&mut self, id: RequestId) -> Result<(), SchedulerError> {
        let key = self
            .entries
            .key_of(id)
            .ok_or(SchedulerError::UnknownRequest(id))?;
        self.end(key, crate::FinishReason::Stop { token: None })
            .ok_or(SchedulerError::UnknownRequest(id))?;
        Ok(())
    }

    /// The state of a live request.
    pub fn state_of(&self, id: RequestId) -> Option<StateName> {
        Some(self.entries.get(self.entries.key_of(id)?)?.request.name())
    }

    /// Prompt and committed output tokens of a live request.
    pub fn tokens_of(&self, id: RequestId) -> Option<&[TokenId]> {
        Some(self.entries.get(self.entries.key_of(id)?)?.seq.tokens())
    }

    /// The resources of a live resident request.
    pub fn resident_of(&self, id: RequestId) -> Option<&Resident> {
        self.entries
            .get(self.entries.key_of(id)?)?
            .request
            .resident()
    }

    /// How many times a live request was preempted.
    pub fn preemptions_of(&self, id: RequestId) -> Option<u32> {
        Some(self.entries.get(self.entries.key_of(id)?)?.preemptions)
    }

    /// Number of live requests (waiting or resident).
    pub fn num_live(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is live and nothing is in flight.
    pub fn is_idle(&self) -> bool {
        self.entries.len() == 0 && self.inflight.is_empty()
    }

    /// Number of planned steps not yet committed.
    pub fn steps_in_flight(&self) -> usize {
        self.inflight.len()
    }
}
