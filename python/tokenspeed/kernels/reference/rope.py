"""Partial NeoX rotary embedding (spec §2.4)."""

from __future__ import annotations

import torch
from torch import Tensor


def rope_inv_freq(rotary_dim: int, theta: float, device: torch.device | str = "cpu") -> Tensor:
    """``1 / theta^(2j / rotary_dim)`` for ``j < rotary_dim / 2``: the exponent's denominator is
    the rotary dim, not head_dim (fp32, computed exactly as HF does)."""
    exponent = torch.arange(0, rotary_dim, 2, dtype=torch.float, device=device) / rotary_dim
    return 1.0 / (theta**exponent)


def apply_rope(q: Tensor, k: Tensor, positions: Tensor, inv_freq: Tensor) -> tuple[Tensor, Tensor]:
    """Rotate the first ``2 * len(inv_freq)`` dims of every head of ``q`` ``[T, nh, hd]`` and
    ``k`` ``[T, nkv, hd]``; the rest of each head passes through.

    NeoX pairing: dim ``j`` with ``j + rotary_dim/2`` (``rotate_half``). cos/sin are computed in
    fp32 and cast to the activation dtype before use, like HF.
    """
    rotary_dim = 2 * inv_freq.shape[0]
    freqs = positions.float()[:, None] * inv_freq.float()[None, :]  # [T, rd/2]
    emb = torch.cat([freqs, freqs], dim=-1)[:, None, :]  # [T, 1, rd]
    cos, sin = emb.cos().to(q.dtype), emb.sin().to(q.dtype)

    def rotate(x: Tensor) -> Tensor:
        x_rot, x_pass = x[..., :rotary_dim], x[..., rotary_dim:]
        half = rotary_dim // 2
        rotated = torch.cat([-x_rot[..., half:], x_rot[..., :half]], dim=-1)
        return torch.cat([x_rot * cos + rotated * sin, x_pass], dim=-1)

    return rotate(q), rotate(k)
