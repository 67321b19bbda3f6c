//! Per-request sampling parameters and their columnar form inside a [`StepPlan`](crate::StepPlan).

/// Sampling parameters of one request (OpenAI / vLLM semantics).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature; `0.0` means greedy.
    pub temperature: f32,
    /// Nucleus sampling mass in `(0, 1]`.
    pub top_p: f32,
    /// Keep the `top_k` most likely tokens; `0` disables.
    pub top_k: u32,
    /// Drop tokens below `min_p * p_max`; `0.0` disables.
    pub min_p: f32,
    /// OpenAI presence penalty.
    pub presence_penalty: f32,
    /// OpenAI frequency penalty.
    pub frequency_penalty: f32,
    /// Multiplicative repetition penalty; `1.0` disables.
    pub repetition_penalty: f32,
    /// Seed of the request's random stream, if any.
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            repetition_penalty: 1.0,
            seed: None,
        }
    }
}

/// Sampling parameters of every sampling row of a step, one array per field, so the executor
/// turns each into a tensor without touching elements.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SamplingBatch {
    /// [`SamplingParams::temperature`] per sampling row.
    pub temperature: Vec<f32>,
    /// [`SamplingParams::top_p`] per sampling row.
    pub top_p: Vec<f32>,
    /// [`SamplingParams::top_k`] per sampling row.
    pub top_k: Vec<u32>,
    /// [`SamplingParams::min_p`] per sampling row.
    pub min_p: Vec<f32>,
    /// [`SamplingParams::presence_penalty`] per sampling row.
    pub presence_penalty: Vec<f32>,
    /// [`SamplingParams::frequency_penalty`] per sampling row.
    pub frequency_penalty: Vec<f32>,
    /// [`SamplingParams::repetition_penalty`] per sampling row.
    pub repetition_penalty: Vec<f32>,
    /// [`SamplingParams::seed`] per sampling row, `-1` when none (seeds are taken mod 2^63).
    pub seed: Vec<i64>,
}

impl SamplingBatch {
    /// Appends one row.
    pub fn push(&mut self, p: &SamplingParams) {
        self.temperature.push(p.temperature);
        self.top_p.push(p.top_p);
        self.top_k.push(p.top_k);
        self.min_p.push(p.min_p);
        self.presence_penalty.push(p.presence_penalty);
        self.frequency_penalty.push(p.frequency_penalty);
        self.repetition_penalty.push(p.repetition_penalty);
        self.seed
            .push(p.seed.map_or(-1, |s| (s & (i64::MAX as u64)) as i64));
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.temperature.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.temperature.is_empty()
    }
}
