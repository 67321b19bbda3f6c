"""Per-request executor state: what sampling needs beyond the plan's per-row scalars
(penalty token statistics, min_tokens stop-token masking, logit bias)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from tokenspeed.sampling_params import SamplingParams


@dataclass
class RequestMeta:
    """Submitted with a request; handed to the executor when it becomes resident.

    stop_ids: the token ids masked while fewer than ``params.min_tokens`` were generated
    (the request's stop ids plus the model's EOS ids unless ``ignore_eos``)."""

    prompt_token_ids: list[int]
    params: SamplingParams
    stop_ids: list[int] = field(default_factory=list)


class RequestState:
    """A resident request as the executor sees it. Penalty statistics live on the device and
    are updated by the executor's own samples, so an overlapped step needs no host round trip;
    a readmission after preemption rebuilds them from the committed output."""

    def __init__(
        self, meta: RequestMeta, output: list[int], vocab: int, device: torch.device
    ) -> None:
        self.prompt_len = len(meta.prompt_token_ids)
        self.min_tokens = meta.params.min_tokens
        self.stop_ids = meta.stop_ids
        self.prompt_mask: Tensor | None = None
        self.output_counts: Tensor | None = None
        # Ids past the model's logits (a tokenizer larger than the head) have no logit to bias.
        bias = {t: v for t, v in (meta.params.logit_bias or {}).items() if t < vocab}
        self.bias_ids: list[int] = list(bias)
        self.bias_values: list[float] = list(bias.values())
        if meta.params.has_penalties:
            prompt = torch.tensor(meta.prompt_token_ids, dtype=torch.long, device=device)
            self.prompt_mask = torch.zeros(vocab, dtype=torch.bool, device=device)
            self.prompt_mask[prompt] = True
            self.output_counts = torch.zeros(vocab, dtype=torch.float32, device=device)
            if output:
                out = torch.tensor(output, dtype=torch.long, device=device)
                self.output_counts.index_add_(0, out, torch.ones_like(out, dtype=torch.float32))

    def record(self, token: Tensor) -> None:
        """Counts a sampled token (a 1-element device tensor) for the penalties."""
        if self.output_counts is not None:
            self.output_counts.index_add_(0, token, torch.ones(1, device=token.device))
