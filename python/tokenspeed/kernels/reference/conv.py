"""Causal depthwise conv1d + SiLU of the GDN q/k/v channels (spec §2.5 step 2, §6.1, §6.3).

The conv state of a sequence is its window of the last ``K-1`` *pre-conv* rows, stored
channel-major in a slot: ``conv_state[slot]`` is ``[C, K-1]`` (oldest column first). A
sequence without initial state starts from zeros, whatever its slot holds.

Checkpoints: ``checkpoint_slots[b] >= 0`` asks for the window as it is after exactly
``checkpoint_offsets[b]`` of this step's new tokens (``0 <= offset <= new tokens``) to be
written to that slot, so the scheduler can later resume the sequence from that depth.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def conv1d_varlen(
    x: Tensor,
    weight: Tensor,
    conv_state: Tensor,
    cu_seqlens: Tensor,
    slot_ids: Tensor,
    has_initial_state: Tensor,
    checkpoint_slots: Tensor | None = None,
    checkpoint_offsets: Tensor | None = None,
) -> Tensor:
    """Packed varlen batch: ``x`` ``[T, C]`` (rows of all sequences, ``cu_seqlens`` ``[B+1]``),
    ``weight`` ``[C, K]``. Returns ``silu(conv(x))`` ``[T, C]``; updates every sequence's
    window in ``conv_state[slot_ids[b]]``."""
    channels, width = weight.shape
    out = torch.empty_like(x)
    bounds = cu_seqlens.tolist()
    slots = slot_ids.tolist()
    has_init = has_initial_state.tolist()
    ckpt_slots, ckpt_offsets = _checkpoints(checkpoint_slots, checkpoint_offsets, len(slots))
    for b, slot in enumerate(slots):
        start, end = bounds[b], bounds[b + 1]
        n = end - start
        if has_init[b]:
            window = conv_state[slot]
        else:
            window = conv_state.new_zeros(channels, width - 1)
        rows = torch.cat([window, x[start:end].t().to(conv_state.dtype)], dim=1)  # [C, K-1+n]
        if n:
            y = F.conv1d(rows[None].to(weight.dtype), weight[:, None, :], groups=channels)[0]
            out[start:end] = F.silu(y).t().to(x.dtype)
        if ckpt_slots[b] >= 0:
            off = _check_offset(ckpt_offsets[b], n)
            conv_state[ckpt_slots[b]] = rows[:, off : off + width - 1]
        conv_state[slot] = rows[:, n : n + width - 1]
    return out


def conv1d_decode(
    x: Tensor,
    weight: Tensor,
    conv_state: Tensor,
    slot_ids: Tensor,
    has_initial_state: Tensor,
    checkpoint_slots: Tensor | None = None,
    checkpoint_offsets: Tensor | None = None,
) -> Tensor:
    """One new row per sequence: ``x`` ``[B, C]``; same semantics as ``conv1d_varlen`` with
    every sequence of length 1 (checkpoint offsets are 0 = before or 1 = after the token)."""
    window = conv_state[slot_ids]  # [B, C, K-1]
    window = torch.where(has_initial_state[:, None, None], window, torch.zeros_like(window))
    rows = torch.cat([window, x[:, :, None].to(conv_state.dtype)], dim=2)  # [B, C, K]
    y = (rows.to(weight.dtype) * weight[None]).sum(-1)
    if checkpoint_slots is not None:
        assert checkpoint_offsets is not None
        chosen = (checkpoint_slots >= 0).nonzero().squeeze(1)
        if chosen.numel():
            after = (checkpoint_offsets[chosen] == 1)[:, None, None]
            picked = rows[chosen]
            conv_state[checkpoint_slots[chosen]] = torch.where(
                after, picked[:, :, 1:], picked[:, :, :-1]
            )
    conv_state[slot_ids] = rows[:, :, 1:]
    return F.silu(y).to(x.dtype)


def _checkpoints(slots: Tensor | None, offsets: Tensor | None, n: int) -> tuple[list, list]:
    if slots is None:
        return [-1] * n, [0] * n
    if offsets is None:
        raise ValueError("checkpoint_slots given without checkpoint_offsets")
    return slots.tolist(), offsets.tolist()


def _check_offset(offset: int, n: int) -> int:
    if not 0 <= offset <= n:
        raise ValueError(f"checkpoint offset {offset} outside [0, {n}] new tokens")
    return offset
