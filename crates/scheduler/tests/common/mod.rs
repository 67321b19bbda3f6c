//! Test harness: a simulated executor with real "memory". KV pages store the token written at
//! each position; a state slot stores `(tokens absorbed, hash chain of them)`. Every plan is
//! executed against this memory and checked independently of the scheduler's bookkeeping:
//! the KV read through a sequence's page-table row must spell exactly its known tokens, and
//! its working slot (after the plan's copies / zeroing) must hold the state of exactly those
//! tokens. Sampling is a deterministic "model" of the state, so a request's output has a
//! reference that does not depend on scheduling at all.
#![allow(dead_code, clippy::unwrap_used)] // each test binary uses a subset; tests may unwrap

use std::collections::{HashMap, HashSet, VecDeque};

use tokenspeed_cache::{PagePool, RadixCache, StatePool};
use tokenspeed_scheduler::{
    FinishReason, RequestId, RequestSpec, Scheduler, SchedulerConfig, StepPlan, StepResult,
    PREV_STEP_TOKEN,
};

/// Token ids are `0..VOCAB`; 0 is the EOS.
pub const VOCAB: u64 = 24;
pub const EOS: u32 = 0;

fn mix(h: u64, token: u32) -> u64 {
    let mut z = h ^ (u64::from(token) + 0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Recurrent state after some tokens: how many, and a hash of exactly which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    pub n: usize,
    pub h: u64,
}

impl State {
    pub const ZERO: State = State { n: 0, h: 0x5EED };
    pub fn absorb(self, token: u32) -> State {
        State {
            n: self.n + 1,
            h: mix(self.h, token),
        }
    }
    pub fn of(tokens: &[u32]) -> State {
        tokens.iter().fold(State::ZERO, |s, &t| s.absorb(t))
    }
    /// The greedy "model": next token from the state.
    pub fn next_token(self) -> u32 {
        (mix(self.h, 0xABCD) % VOCAB) as u32
    }
}

/// What a request must output, computed without any scheduler.
pub fn reference_output(spec: &RequestSpec, eos: &[u32], max_context: usize) -> Vec<u32> {
    let mut state = State::of(&spec.prompt);
    let mut out = Vec::new();
    loop {
        let t = state.next_token();
        out.push(t);
        state = state.absorb(t);
        let stop = spec.stop_token_ids.contains(&t) || (!spec.ignore_eos && eos.contains(&t));
        if (stop && out.len() >= spec.min_tokens)
            || out.len() >= spec.max_new_tokens
            || spec.prompt.len() + out.len() >= max_context
        {
            return out;
        }
    }
}

pub fn cache(num_pages: usize, page_size: usize, num_slots: usize) -> RadixCache {
    RadixCache::new(
        PagePool::new(num_pages, page_size).unwrap(),
        StatePool::new(num_slots).unwrap(),
    )
}

pub struct Sim {
    pub sched: Scheduler,
    pub page_size: usize,
    kv: Vec<Vec<Option<u32>>>,
    slots: Vec<Option<State>>,
    prev_sampled: Vec<u32>,
    pub results: VecDeque<StepResult>,
    pub specs: HashMap<RequestId, RequestSpec>,
    pub outputs: HashMap<RequestId, Vec<u32>>,
    pub finished: HashMap<RequestId, FinishReason>,
    pub plans: Vec<StepPlan>,
    pub keep_plans: bool,
}

impl Sim {
    pub fn new(
        config: SchedulerConfig,
        num_pages: usize,
        page_size: usize,
        num_slots: usize,
    ) -> Sim {
        let sched = Scheduler::new(config, cache(num_pages, page_size, num_slots)).unwrap();
        Sim {
            sched,
            page_size,
            kv: vec![vec![None; page_size]; num_pages],
            slots: vec![None; num_slots],
            prev_sampled: Vec::new(),
            results: VecDeque::new(),
            specs: HashMap::new(),
            outputs: HashMap::new(),
            finished: HashMap::new(),
            plans: Vec::new(),
            keep_plans: false,
        }
    }

    pub fn submit(&mut self, spec: RequestSpec) {
        self.specs.insert(spec.id, spec.clone());
        self.outputs.insert(spec.id, Vec::new());
        self.sched.submit(spec).unwrap();
    }

    pub fn abort(&mut self, id: RequestId) {
        self.sched.abort(id).unwrap();
        self.finished.insert(id, FinishReason::Abort);
    }

    /// Plans and executes one step (GPU order: right away); returns the plan.
    pub fn schedule(&mut self) -> StepPlan {
        let plan = self.sched.schedule();
        for &(id, reason) in &plan.finished {
            assert!(
                self.finished.insert(id, reason).is_none(),
                "request {id} finished twice"
            );
        }
        if !plan.is_empty() {
            let sampled = self.execute(&plan);
            self.prev_sampled = sampled.clone();
            self.results.push_back(StepResult {
                step: plan.step,
                sampled,
            });
        }
        if self.keep_plans {
            self.plans.push(plan.clone());
        }
        plan
    }

    /// Commits the oldest executed step; false if none.
    pub fn commit(&mut self) -> bool {
        let Some(result) = self.results.pop_front() else {
            return false;
        };
        let out = self.sched.commit(result).unwrap();
        for (id, t) in out.tokens {
            self.outputs.get_mut(&id).unwrap().push(t);
        }
        for (id, reason) in out.finished {
            assert!(
                self.finished.insert(id, reason).is_none(),
                "request {id} finished twice"
            );
        }
        true
    }

    /// One engine iteration: plan + launch step N+1, then commit step N when `overlap`
    /// (otherwise commit right away).
    pub fn step(&mut self, overlap: bool) -> StepPlan {
        let plan = self.schedule();
        let keep = usize::from(overlap && !plan.is_empty());
        while self.results.len() > keep {
            self.commit();
        }
        plan
    }

    /// Runs until nothing is live or in flight; panics after `max_steps`.
    pub fn drain(&mut self, overlap: bool, max_steps: usize) {
        for _ in 0..max_steps {
            if self.sched.is_idle() {
                return;
            }
            self.step(overlap);
            self.sched.check_integrity().unwrap();
        }
        panic!(
            "not drained after {max_steps} steps: {:?}",
            self.sched.stats()
        );
    }

    /// Executes a plan against the simulated memory, checking it; returns the sampled tokens.
    pub fn execute(&mut self, plan: &StepPlan) -> Vec<u32> {
        let ps = self.page_size;
        let n = plan.len();
        for v in [&plan.num_cached, &plan.working_slots] {
            assert_eq!(v.len(), n);
        }
        assert_eq!(plan.cu_seqlens.len(), n + 1);
        assert_eq!(plan.cu_pages.len(), n + 1);
        assert_eq!(plan.positions.len(), plan.input_ids.len());
        // Resources written this step are distinct, never the reserved id 0, never a CoW source.
        let mut written_slots = HashSet::new();
        for (&w, &c) in plan.working_slots.iter().zip(&plan.checkpoint_slots) {
            assert!(
                w != 0 && written_slots.insert(w),
                "working slot {w} reused in one step"
            );
            if c >= 0 {
                assert!(
                    c != 0 && written_slots.insert(c as u32),
                    "checkpoint slot {c} reused"
                );
            }
        }
        for &src in &plan.copy_src {
            assert!(
                !written_slots.contains(&src) || plan.copy_dst.contains(&src),
                "CoW source {src} written"
            );
        }
        // State initialisation before the step.
        let copies: Vec<_> = plan
            .copy_src
            .iter()
            .map(|&s| self.slots[s as usize].expect("CoW from empty slot"))
            .collect();
        for (&dst, st) in plan.copy_dst.iter().zip(copies) {
            self.slots[dst as usize] = Some(st);
        }
        for &z in &plan.zero_slots {
            self.slots[z as usize] = Some(State::ZERO);
        }
        let mut input = plan.input_ids.clone();
        for (&dst, &src) in plan.prev_token_dst.iter().zip(&plan.prev_token_src) {
            input[dst as usize] = self.prev_sampled[src as usize];
        }
        assert!(!input.contains(&PREV_STEP_TOKEN));
        let mut written_kv = HashSet::new();
        let mut sampled = Vec::new();
        for i in 0..n {
            let id = plan.request_ids[i];
            let start = plan.num_cached[i] as usize;
            let new = &input[plan.cu_seqlens[i] as usize..plan.cu_seqlens[i + 1] as usize];
            let row = plan.pages_of(i);
            assert_eq!(
                row.len(),
                (start + new.len()).div_ceil(ps),
                "page row of {id} has the wrong length"
            );
            assert!(!row.contains(&0), "page row of {id} uses the padding page");
            // The context read through the page table is exactly the known prefix...
            let known = self.sched.tokens_of(id).expect("planned request is live");
            let ctx: Vec<u32> = (0..start)
                .map(|p| self.kv[row[p / ps] as usize][p % ps].expect("unwritten KV"))
                .collect();
            assert_eq!(
                &ctx[..],
                &known[..start],
                "KV of request {id} does not spell its tokens"
            );
            // ...and the working state is the state of exactly that prefix.
            let w = plan.working_slots[i] as usize;
            let mut state = self.slots[w].expect("working slot never initialised");
            assert_eq!(
                state,
                State::of(&ctx),
                "working state of request {id} is not its context's"
            );
            let (ck_slot, ck_off) = (plan.checkpoint_slots[i], plan.checkpoint_offsets[i]);
            if ck_slot >= 0 {
                let off = ck_off as usize;
                assert!(
                    off > start
                        && off <= start + new.len()
                        && off.is_multiple_of(ps)
                        && (new.len() == 1 || start.is_multiple_of(ps)),
                    "bad checkpoint offset"
                );
            }
            for (j, &t) in new.iter().enumerate() {
                let p = start + j;
                assert_eq!(plan.positions[plan.cu_seqlens[i] as usize + j] as usize, p);
                assert!(
                    written_kv.insert((row[p / ps], p % ps)),
                    "KV position written twice in a step"
                );
                self.kv[row[p / ps] as usize][p % ps] = Some(t);
                state = state.absorb(t);
                if ck_slot >= 0 && state.n == ck_off as usize {
                    self.slots[ck_slot as usize] = Some(state);
                }
            }
            self.slots[w] = Some(state);
            if plan.sample[i] {
                sampled.push(state.next_token());
            }
        }
        assert_eq!(sampled.len(), plan.num_samples());
        assert_eq!(plan.sampling.len(), plan.num_samples());
        sampled
    }

    /// Every ended request's output matches the reference (a prefix of it when aborted or
    /// failed).
    pub fn check_outputs(&self) {
        let cfg = self.sched.config();
        for (id, spec) in &self.specs {
            let Some(reason) = self.finished.get(id) else {
                continue;
            };
            let got = &self.outputs[id];
            let want = reference_output(spec, &cfg.eos_token_ids, cfg.max_context);
            match reason {
                FinishReason::Stop { token: Some(_) } | FinishReason::Length => {
                    assert_eq!(got, &want, "output of request {id} ({reason:?})")
                }
                _ => assert_eq!(
                    &want[..got.len()],
                    &got[..],
                    "output prefix of request {id} ({reason:?})"
                ),
            }
        }
    }
}

pub fn spec(id: RequestId, prompt: Vec<u32>, max_new: usize) -> RequestSpec {
    let mut s = RequestSpec::new(id, prompt, max_new);
    s.sampling.temperature = 0.0;
    s
}

/// Deterministic pseudo-random prompt tokens in `1..VOCAB` (no EOS).
pub fn prompt(seed: u64, len: usize) -> Vec<u32> {
    (0..len as u64)
        .map(|i| 1 + (mix(seed, i as u32) % (VOCAB - 1)) as u32)
        .collect()
}
