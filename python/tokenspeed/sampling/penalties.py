"""Repetition / frequency / presence penalties exactly as vLLM defines them
(``vllm.model_executor.layers.utils.apply_penalties``)."""

from __future__ import annotations

import torch
from torch import Tensor


def apply_penalties(
    logits: Tensor,
    prompt_mask: Tensor,
    output_counts: Tensor,
    presence: Tensor,
    frequency: Tensor,
    repetition: Tensor,
) -> Tensor:
    """Penalised copy of ``logits`` ``[R, V]``.

    prompt_mask [R, V] bool: token occurs in the prompt; output_counts [R, V]: occurrences in
    the output so far; presence / frequency / repetition [R].
    * repetition (multiplicative, prompt and output tokens): positive logits are divided by
      it, the others multiplied;
    * frequency (OpenAI): ``logit -= frequency * count``;
    * presence (OpenAI): ``logit -= presence * (count > 0)``.
    """
    output_mask = output_counts > 0
    seen = prompt_mask | output_mask
    scale = torch.where(seen, repetition[:, None], torch.ones_like(logits))
    out = torch.where(logits > 0, logits / scale, logits * scale)
    out = out - frequency[:, None] * output_counts.to(logits.dtype)
    return out - presence[:, None] * output_mask.to(logits.dtype)
