"""What ``LLM.generate`` returns (vLLM-compatible names)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CompletionOutput:
    """One generated sequence.

    logprobs: per output position, token id -> logprob (the sampled token and the top-n), or
    None when not requested. finish_reason: "stop", "length", "abort" or "error".
    stop_reason: the stop token id that ended it, if one did.
    """

    index: int
    text: str
    token_ids: list[int]
    logprobs: list[dict[int, float]] | None
    finish_reason: str | None
    stop_reason: int | None = None
    cumulative_logprob: float | None = None


@dataclass
class RequestOutput:
    """A request's result. num_cached_tokens: prompt tokens served from the prefix cache."""

    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]
    finished: bool
    num_cached_tokens: int = 0
    error: str | None = field(default=None, repr=False)
