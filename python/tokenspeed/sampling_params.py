"""``SamplingParams``: how one request samples and when it stops (vLLM names and semantics)."""

from __future__ import annotations

from dataclasses import dataclass, field

_GREEDY_EPS = 1e-5  # temperatures below this are greedy, as in vLLM


@dataclass
class SamplingParams:
    """Sampling and stopping for one request.

    temperature: 0 means greedy. top_k: 0 or -1 disables. top_p in (0, 1]. min_p in [0, 1].
    presence/frequency penalties in [-2, 2] act on output tokens; repetition_penalty > 0 acts
    on prompt and output tokens (1 disables). seed makes the request's samples reproducible.
    max_tokens / min_tokens bound the output; stop_token_ids end it (as do the model's EOS ids
    unless ignore_eos). logprobs: None for none, n >= 0 for the sampled token's logprob plus
    the n most likely tokens' (raw model distribution). logit_bias: token id -> value in
    [-100, 100] added to that token's logit before penalties and sampling (OpenAI's field;
    logprobs stay those of the raw model).
    """

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    seed: int | None = None
    max_tokens: int | None = 16
    min_tokens: int = 0
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False
    logprobs: int | None = None
    skip_special_tokens: bool = True
    logit_bias: dict[int, float] | None = None

    def __post_init__(self) -> None:
        def bad(name: str, rule: str) -> None:
            raise ValueError(f"SamplingParams.{name}={getattr(self, name)!r}: {rule}")

        if self.n != 1:
            bad("n", "only n=1 is supported (submit the prompt several times instead)")
        if self.temperature < 0:
            bad("temperature", "must be >= 0")
        if not 0 < self.top_p <= 1:
            bad("top_p", "must be in (0, 1]")
        if self.top_k < -1:
            bad("top_k", "must be -1, 0 (disabled) or a positive count")
        if not 0 <= self.min_p <= 1:
            bad("min_p", "must be in [0, 1]")
        for name in ("presence_penalty", "frequency_penalty"):
            if not -2 <= getattr(self, name) <= 2:
                bad(name, "must be in [-2, 2]")
        if self.repetition_penalty <= 0:
            bad("repetition_penalty", "must be > 0")
        if self.seed is not None and self.seed < 0:
            bad("seed", "must be >= 0")
        if self.max_tokens is not None and self.max_tokens < 1:
            bad("max_tokens", "must be >= 1")
        if self.min_tokens < 0:
            bad("min_tokens", "must be >= 0")
        if self.max_tokens is not None and self.min_tokens > self.max_tokens:
            bad("min_tokens", f"must be <= max_tokens={self.max_tokens}")
        if self.logprobs is not None and self.logprobs < 0:
            bad("logprobs", "must be None or >= 0")
        if any(t < 0 for t in self.stop_token_ids):
            bad("stop_token_ids", "must be non-negative token ids")
        bias = self.logit_bias or {}
        if any(not isinstance(t, int) or t < 0 for t in bias):
            bad("logit_bias", "keys must be non-negative token ids")
        if any(not -100 <= v <= 100 for v in bias.values()):
            bad("logit_bias", "values must be in [-100, 100]")

    @property
    def greedy(self) -> bool:
        return self.temperature < _GREEDY_EPS

    @property
    def has_penalties(self) -> bool:
        return (
            self.presence_penalty != 0
            or self.frequency_penalty != 0
            or self.repetition_penalty != 1
        )
