"""One step's sampling for every sampling row at once, on the logits' device.

Order (as vLLM v1): logit bias -> penalties -> min_tokens stop-token masking -> greedy
rows take the argmax; the others: temperature -> min-p -> top-k -> top-p -> one draw with the
exponential-race trick (``argmax(p / q)``, ``q ~ Exp(1)``). Seeded rows draw their noise from a
generator seeded with ``(seed, position)``, so a request's samples depend only on its seed and
its tokens, never on the batch it ran in or on preemptions. Logprobs are of the raw model
distribution (vLLM's default ``raw_logprobs``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from tokenspeed.sampling.penalties import apply_penalties

_GREEDY_EPS = 1e-5
_SEED_MIX = 0x9E3779B97F4A7C15  # golden-ratio multiplier: spreads (seed, position) pairs
_MASK63 = (1 << 63) - 1


@dataclass
class SampleBatch:
    """Per-row sampling parameters (device tensors ``[R]`` unless noted).

    seeds / positions (host ints): the row's seed (-1 for none) and the position of the token
    being sampled. penalty_rows: rows with penalties, with their prompt masks and output
    counts stacked ``[P, V]``. banned: (row, token ids) pairs masked to -inf (min_tokens).
    bias: (row, token id, value) triplets added to the logits (``logit_bias``).
    num_logprobs: top logprobs to return (the widest row), -1 for none.
    """

    temperature: Tensor
    top_p: Tensor
    top_k: Tensor
    min_p: Tensor
    presence: Tensor
    frequency: Tensor
    repetition: Tensor
    seeds: list[int]
    positions: list[int]
    penalty_rows: Tensor | None = None
    prompt_mask: Tensor | None = None
    output_counts: Tensor | None = None
    banned_rows: Tensor | None = None
    banned_tokens: Tensor | None = None
    bias_rows: Tensor | None = None
    bias_tokens: Tensor | None = None
    bias_values: Tensor | None = None
    num_logprobs: int = -1
    # Host-side facts (from the plan's host arrays), so no device sync decides a branch.
    all_greedy: bool = False
    use_min_p: bool = True
    use_top_k_p: bool = True


@dataclass
class SampleOutput:
    tokens: Tensor  # [R] int64
    logprobs: Tensor | None  # [R] f32: logprob of the sampled token
    top_ids: Tensor | None  # [R, k] int64
    top_logprobs: Tensor | None  # [R, k] f32


def sample(
    logits: Tensor, batch: SampleBatch, generator: torch.Generator | None = None
) -> SampleOutput:
    logits = logits.float()
    raw = logits
    if batch.bias_rows is not None:
        assert batch.bias_tokens is not None and batch.bias_values is not None
        index = (batch.bias_rows, batch.bias_tokens)
        logits = logits.index_put(index, batch.bias_values, accumulate=True)
    if batch.penalty_rows is not None:
        rows = batch.penalty_rows
        assert batch.prompt_mask is not None and batch.output_counts is not None
        penalised = apply_penalties(
            logits[rows], batch.prompt_mask, batch.output_counts,
            batch.presence[rows], batch.frequency[rows], batch.repetition[rows],
        )  # fmt: skip
        logits = logits.index_copy(0, rows, penalised)
    if batch.banned_rows is not None:
        logits = logits.index_put(
            (batch.banned_rows, batch.banned_tokens), torch.tensor(-torch.inf)
        )
    greedy = batch.temperature < _GREEDY_EPS
    tokens = logits.argmax(dim=-1)
    if not batch.all_greedy:
        drawn = _draw(logits, batch, greedy, generator)
        tokens = torch.where(greedy, tokens, drawn)
    if batch.num_logprobs < 0:
        return SampleOutput(tokens, None, None, None)
    logprobs = torch.log_softmax(raw, dim=-1)
    chosen = logprobs.gather(1, tokens[:, None])[:, 0]
    top = logprobs.topk(batch.num_logprobs, dim=-1) if batch.num_logprobs > 0 else None
    return SampleOutput(
        tokens,
        chosen,
        top.indices if top is not None else logprobs.new_zeros((len(tokens), 0), dtype=torch.long),
        top.values if top is not None else logprobs.new_zeros((len(tokens), 0)),
    )


def _draw(
    logits: Tensor, batch: SampleBatch, greedy: Tensor, generator: torch.Generator | None
) -> Tensor:
    temperature = torch.where(greedy, torch.ones_like(batch.temperature), batch.temperature)
    logits = logits / temperature[:, None]
    if batch.use_min_p:
        probs = logits.softmax(dim=-1)
        threshold = batch.min_p[:, None] * probs.amax(dim=-1, keepdim=True)
        logits = logits.masked_fill(probs < threshold, -torch.inf)
    if batch.use_top_k_p:
        logits = _top_k_top_p(logits, batch.top_k, batch.top_p)
    probs = logits.softmax(dim=-1)
    return (probs / _exponential_noise(probs, batch, generator)).argmax(dim=-1)


def _top_k_top_p(logits: Tensor, top_k: Tensor, top_p: Tensor) -> Tensor:
    """vLLM's ``apply_top_k_top_p``: sort ascending, mask below the k-th largest, then mask the
    low tail whose mass is at most ``1 - p`` (always keeping the largest)."""
    vocab = logits.shape[-1]
    k = torch.where((top_k <= 0) | (top_k > vocab), torch.full_like(top_k, vocab), top_k)
    sorted_logits, order = logits.sort(dim=-1, descending=False)
    kth = sorted_logits.gather(1, (vocab - k.long())[:, None])
    sorted_logits = sorted_logits.masked_fill(sorted_logits < kth, -torch.inf)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    tail = cumulative <= 1 - top_p[:, None]
    tail[:, -1] = False
    sorted_logits = sorted_logits.masked_fill(tail, -torch.inf)
    return sorted_logits.scatter(1, order, sorted_logits)


def _exponential_noise(
    probs: Tensor, batch: SampleBatch, generator: torch.Generator | None
) -> Tensor:
    """``Exp(1)`` noise ``[R, V]``; seeded rows from their own ``(seed, position)`` generator."""
    return fill_exponential_noise(torch.empty_like(probs), batch.seeds, batch.positions, generator)


def fill_exponential_noise(
    noise: Tensor, seeds: list[int], positions: list[int], generator: torch.Generator | None
) -> Tensor:
    """Fills ``noise`` ``[R, V]`` in place (and returns it) with the draws :func:`sample` uses,
    so a CUDA graph that reads a static noise buffer samples exactly what the eager path
    would."""
    noise.exponential_(generator=generator)
    for row, (seed, position) in enumerate(zip(seeds, positions, strict=True)):
        if seed >= 0:
            g = torch.Generator(device=noise.device)
            g.manual_seed((seed * _SEED_MIX + position) & _MASK63)
            noise[row].exponential_(generator=g)
    return noise


# Rows with 1 <= top_k <= this sample inside the decode graph (from the TOP_K_CAP most likely
# tokens); a larger top_k, or top-p / min-p without top-k, samples eagerly.
TOP_K_CAP = 64


def greedy_or_temperature(
    logits: Tensor,
    temperature: Tensor,
    noise: Tensor | None,
    truncation: tuple[Tensor, Tensor, Tensor] | None = None,
) -> Tensor:
    """Tokens ``[R]`` of :func:`sample` for a batch without penalties, banned tokens or
    logprobs, written with fixed shapes and no host decisions so it can be captured in a CUDA
    graph. ``noise`` None: every row is greedy. ``truncation``: per-row ``(top_k, top_p,
    min_p)`` where rows with ``1 <= top_k <= TOP_K_CAP`` are truncated and the others
    (``top_k`` 0) must have ``top_p`` 1 and ``min_p`` 0."""
    logits = logits.float()
    tokens = logits.argmax(dim=-1)
    if noise is None:
        return tokens
    greedy = temperature < _GREEDY_EPS
    scaled = logits / torch.where(greedy, torch.ones_like(temperature), temperature)[:, None]
    probs = scaled.softmax(dim=-1)
    drawn = (probs / noise).argmax(dim=-1)
    if truncation is not None:
        top_k, top_p, min_p = truncation
        cut = _truncated_draw(scaled, probs, noise, top_k, top_p, min_p)
        drawn = torch.where(top_k > 0, cut, drawn)
    return torch.where(greedy, tokens, drawn)


def _truncated_draw(
    scaled: Tensor, probs: Tensor, noise: Tensor, top_k: Tensor, top_p: Tensor, min_p: Tensor
) -> Tensor:
    """:func:`_draw`'s min-p -> top-k -> top-p -> race on the ``TOP_K_CAP`` most likely tokens,
    which hold every token a row with ``top_k <= TOP_K_CAP`` keeps (same arithmetic as the
    eager path, so the same tokens but for rounding at a cut boundary)."""
    cap = min(TOP_K_CAP, scaled.shape[-1])
    candidates, index = scaled.topk(cap, dim=-1)  # descending
    p = probs.gather(1, index)
    keep = ~(p < min_p[:, None] * probs.amax(dim=-1, keepdim=True))
    keep &= torch.arange(cap, device=scaled.device)[None, :] < top_k[:, None]
    kept = candidates.masked_fill(~keep, -torch.inf).softmax(dim=-1)
    # vLLM's top-p: drop the low tail (ascending cumulative mass <= 1 - p), never the largest.
    tail = kept.flip(-1).cumsum(dim=-1).flip(-1) <= 1 - top_p[:, None]
    tail[:, 0] = False
    final = candidates.masked_fill(~keep | tail, -torch.inf).softmax(dim=-1)
    pick = (final / noise.gather(1, index)).argmax(dim=-1, keepdim=True)
    return index.gather(1, pick)[:, 0]
