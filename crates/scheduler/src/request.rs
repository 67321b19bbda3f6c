//! What a client asks for ([`RequestSpec`]), how a request ends ([`FinishReason`]) and the
//! token bookkeeping of one request ([`Sequence`]).

use crate::SamplingParams;
use tokenspeed_cache::TokenId;

/// Caller-chosen identifier of a request (unique among live requests).
pub type RequestId = u64;

/// Everything the scheduler needs to know about a new request.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestSpec {
    /// Identifier, unique among live requests.
    pub id: RequestId,
    /// Prompt token ids (at least one).
    pub prompt: Vec<TokenId>,
    /// Sampling parameters, forwarded to the executor with every sampling row.
    pub sampling: SamplingParams,
    /// Stop after this many generated tokens (at least one).
    pub max_new_tokens: usize,
    /// Extra token ids that end the request (in addition to the model's EOS ids).
    pub stop_token_ids: Vec<TokenId>,
    /// Do not stop on the model's EOS ids (`stop_token_ids` still apply).
    pub ignore_eos: bool,
    /// No stop token ends the request before this many tokens were generated.
    pub min_tokens: usize,
    /// `(token id, value)` added to the logits before sampling (OpenAI `logit_bias`); only
    /// forwarded to the executor, the scheduler never reads it.
    pub logit_bias: Vec<(TokenId, f32)>,
}

impl RequestSpec {
    /// A spec with default sampling, no extra stop ids, `ignore_eos = false`, `min_tokens = 0`,
    /// no logit bias.
    pub fn new(id: RequestId, prompt: Vec<TokenId>, max_new_tokens: usize) -> Self {
        Self {
            id,
            prompt,
            sampling: SamplingParams::default(),
            max_new_tokens,
            stop_token_ids: Vec::new(),
            ignore_eos: false,
            min_tokens: 0,
            logit_bias: Vec::new(),
        }
    }
}

/// Why a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// A stop token was sampled (`token`), or the server stopped it (`token: None`, e.g. a
    /// stop string matched).
    Stop {
        /// The stop token that ended the request, if a token did.
        token: Option<TokenId>,
    },
    /// `max_new_tokens` or the context limit was reached.
    Length,
    /// The client aborted it.
    Abort,
    /// The scheduler could not run it.
    Error(RequestError),
}

/// Why the scheduler gave up on a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// Even with the whole cache evicted and every other request preempted, the request needs
    /// more pages or state slots than the pools have.
    OutOfMemory {
        /// Tokens of context the request needed room for.
        context_tokens: usize,
        /// Allocatable pages in the pool.
        pool_pages: usize,
    },
    /// Publishing the request's pages into the radix cache failed (a bug; the request is
    /// ended so that its pages cannot be used after being freed).
    CacheInsert,
}

/// Token bookkeeping of one request: its spec and every token known so far.
#[derive(Debug, Clone)]
pub struct Sequence {
    spec: RequestSpec,
    /// `prompt ++ committed outputs`.
    tokens: Vec<TokenId>,
}

impl Sequence {
    /// A sequence holding only the prompt.
    pub fn new(spec: RequestSpec) -> Self {
        let tokens = spec.prompt.clone();
        Self { spec, tokens }
    }

    /// The spec it was submitted with.
    pub fn spec(&self) -> &RequestSpec {
        &self.spec
    }

    /// Prompt followed by every committed output token.
    pub fn tokens(&self) -> &[TokenId] {
        &self.tokens
    }

    /// The committed output tokens.
    pub fn output(&self) -> &[TokenId] {
        &self.tokens[self.spec.prompt.len()..]
    }

    /// Appends a sampled token and says whether the request must end, given the model's EOS
    /// ids and the context limit.
    pub fn push(
        &mut self,
        token: TokenId,
        eos: &[TokenId],
        max_context: usize,
    ) -> Option<FinishReason> {
        self.tokens.push(token);
        let generated = self.output().len();
        let spec = &self.spec;
        let stops =
            spec.stop_token_ids.contains(&token) || (!spec.ignore_eos && eos.contains(&token));
        if stops && generated >= spec.min_tokens {
            Some(FinishReason::Stop { token: Some(token) })
        } else if generated >= spec.max_new_tokens || self.tokens.len() >= max_context {
            Some(FinishReason::Length)
        } else {
            None
        }
    }
}
