//! [`StepPlan`]: one step of work for the executor, as flat arrays (one entry per sequence,
//! or concatenations with `cu_*` offsets) that map onto tensors without per-element work.

use tokenspeed_cache::{PageId, SlotId, TokenId};

use crate::{FinishReason, RequestId, SamplingBatch, SamplingParams};

/// Placeholder in [`StepPlan::input_ids`] for a token sampled by the previous step, not known
/// when the plan was made. [`StepPlan::prev_token_dst`] / [`StepPlan::prev_token_src`] say
/// where to take it from.
pub const PREV_STEP_TOKEN: TokenId = TokenId::MAX;

/// How the working state slot must be initialised before the sequence's tokens run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateInit {
    /// The slot already holds the state after `num_cached` tokens.
    Continue,
    /// No cached prefix: zero the slot.
    Zero,
    /// Prefix hit: copy the cached checkpoint in this slot into the working slot (copy on
    /// write; the cached slot itself is never written).
    CopyFrom(SlotId),
}

/// Where a sequence's new tokens come from.
#[derive(Debug, Clone, Copy)]
pub enum RowTokens<'a> {
    /// Known token ids.
    Known(&'a [TokenId]),
    /// One token: the one sampled by sampling row `.0` of the previous step.
    PrevStep(u32),
}

/// One sequence of a plan, as the planner hands it to [`StepPlan::push`].
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    /// The request.
    pub id: RequestId,
    /// Tokens of context before this row's tokens (their KV and state already exist).
    pub start: usize,
    /// The new tokens.
    pub tokens: RowTokens<'a>,
    /// Page ids covering the whole context including the new tokens.
    pub pages: &'a [PageId],
    /// Working state slot.
    pub working: SlotId,
    /// Initialisation of the working slot.
    pub init: StateInit,
    /// Snapshot to take: slot, and the token count the snapshotted state has absorbed.
    pub checkpoint: Option<(SlotId, usize)>,
    /// Sample a token after the last new token, with these parameters.
    pub sampling: Option<&'a SamplingParams>,
}

/// One step of work. Per-sequence arrays have one entry per sequence; `cu_*` arrays have one
/// more (offsets into the concatenations). Sampling arrays have one entry per sampling row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepPlan {
    /// Step number, echoed by [`StepResult`](crate::StepResult). Empty plans have none to
    /// commit and reuse the next number.
    pub step: u64,
    /// Request of each sequence.
    pub request_ids: Vec<RequestId>,
    /// Per sequence: tokens of context already computed (= position of its first new token).
    pub num_cached: Vec<u32>,
    /// Per sequence: working state slot.
    pub working_slots: Vec<SlotId>,
    /// Per sequence: checkpoint slot to copy into the working slot first, `-1` for none.
    pub cow_src_slots: Vec<i32>,
    /// Per sequence: slot receiving a snapshot of the recurrent state, `-1` for none.
    pub checkpoint_slots: Vec<i32>,
    /// Per sequence: the snapshot is the state after exactly this many tokens of context
    /// (`num_cached < offset <= num_cached + new tokens`), `-1` for none.
    pub checkpoint_offsets: Vec<i32>,
    /// Per sequence: whether a token is sampled after its last new token.
    pub sample: Vec<bool>,
    /// New token ids of all sequences ([`PREV_STEP_TOKEN`] where not yet known).
    pub input_ids: Vec<TokenId>,
    /// Position of every new token.
    pub positions: Vec<u32>,
    /// Offsets of each sequence's tokens in `input_ids` / `positions`.
    pub cu_seqlens: Vec<u32>,
    /// Page-table rows of all sequences, each covering its whole context after this step.
    pub page_table: Vec<PageId>,
    /// Offsets of each sequence's row in `page_table`.
    pub cu_pages: Vec<u32>,
    /// Indices in `input_ids` to fill from the previous step's sampled tokens...
    pub prev_token_dst: Vec<u32>,
    /// ...taken from these sampling rows of the previous step.
    pub prev_token_src: Vec<u32>,
    /// State copies to run before the step (`copy_src[i] -> copy_dst[i]`, copy on write).
    pub copy_src: Vec<SlotId>,
    /// Destinations of `copy_src`.
    pub copy_dst: Vec<SlotId>,
    /// Working slots to zero before the step (sequences without a cached prefix).
    pub zero_slots: Vec<SlotId>,
    /// Per sampling row: index in `input_ids` of the token whose logits are sampled.
    pub logits_indices: Vec<u32>,
    /// Per sampling row: the sequence it belongs to.
    pub sample_seqs: Vec<u32>,
    /// Per sampling row: sampling parameters.
    pub sampling: SamplingBatch,
    /// Requests that ended while this plan was made (e.g. out of memory), with the reason.
    pub finished: Vec<(RequestId, FinishReason)>,
}

impl StepPlan {
    /// An empty plan for step `step`.
    pub fn new(step: u64) -> Self {
        Self {
            step,
            cu_seqlens: vec![0],
            cu_pages: vec![0],
            ..Self::default()
        }
    }

    /// Number of sequences.
    pub fn len(&self) -> usize {
        self.request_ids.len()
    }

    /// Whether the plan runs nothing (then there is nothing to launch or commit).
    pub fn is_empty(&self) -> bool {
        self.request_ids.is_empty()
    }

    /// Number of sampling rows (tokens the [`StepResult`](crate::StepResult) must carry).
    pub fn num_samples(&self) -> usize {
        self.sample_seqs.len()
    }

    /// Total new tokens.
    pub fn num_tokens(&self) -> usize {
        self.input_ids.len()
    }

    /// Appends a sequence; returns its sampling row if it samples.
    pub fn push(&mut self, row: Row<'_>) -> Option<u32> {
        let seq = self.request_ids.len() as u32;
        let first = self.input_ids.len();
        self.request_ids.push(row.id);
        self.num_cached.push(row.start as u32);
        self.working_slots.push(row.working);
        match row.tokens {
            RowTokens::Known(ids) => self.input_ids.extend_from_slice(ids),
            RowTokens::PrevStep(src) => {
                self.prev_token_dst.push(first as u32);
                self.prev_token_src.push(src);
                self.input_ids.push(PREV_STEP_TOKEN);
            }
        }
        let end = self.input_ids.len();
        self.positions
            .extend((row.start..row.start + end - first).map(|p| p as u32));
        self.cu_seqlens.push(end as u32);
        self.page_table.extend_from_slice(row.pages);
        self.cu_pages.push(self.page_table.len() as u32);
        let cow = match row.init {
            StateInit::Continue => -1,
            StateInit::Zero => {
                self.zero_slots.push(row.working);
                -1
            }
            StateInit::CopyFrom(src) => {
                self.copy_src.push(src);
                self.copy_dst.push(row.working);
                src as i32
            }
        };
        self.cow_src_slots.push(cow);
        let (slot, offset) = row
            .checkpoint
            .map_or((-1, -1), |(s, o)| (s as i32, o as i32));
        self.checkpoint_slots.push(slot);
        self.checkpoint_offsets.push(offset);
        self.sample.push(row.sampling.is_some());
        let params = row.sampling?;
        self.logits_indices.push(end as u32 - 1);
        self.sample_seqs.push(seq);
        self.sampling.push(params);
        Some(self.sample_seqs.len() as u32 - 1)
    }

    /// The new tokens of sequence `i`.
    pub fn tokens_of(&self, i: usize) -> &[TokenId] {
        &self.input_ids[self.cu_seqlens[i] as usize..self.cu_seqlens[i + 1] as usize]
    }

    /// The page-table row of sequence `i`.
    pub fn pages_of(&self, i: usize) -> &[PageId] {
        &self.page_table[self.cu_pages[i] as usize..self.cu_pages[i + 1] as usize]
    }

    /// Index of the sequence of request `id`, if it is in the plan.
    pub fn position_of(&self, id: RequestId) -> Option<usize> {
        self.request_ids.iter().position(|&r| r == id)
    }
}
