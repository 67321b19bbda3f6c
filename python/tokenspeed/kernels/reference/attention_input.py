"""The gated-attention input step (spec §2.4) as one op, so a backend can fuse it.

Defined by composition of the other reference ops; a fused kernel must match it.
"""

from __future__ import annotations

from torch import Tensor

from tokenspeed.kernels.reference.attention import write_kv_cache
from tokenspeed.kernels.reference.norm import rms_norm
from tokenspeed.kernels.reference.rope import apply_rope


def qk_norm_rope_kv_write(
    qkv: Tensor,
    q_norm: Tensor,
    k_norm: Tensor,
    eps: float,
    positions: Tensor,
    inv_freq: Tensor,
    num_heads: int,
    num_kv_heads: int,
    head_dim: int,
    k_cache: Tensor,
    v_cache: Tensor,
    kv_indices: Tensor,
) -> tuple[Tensor, Tensor]:
    """Split the packed projection ``qkv`` ``[T, 2*nh*hd + 2*nkv*hd]`` (per q head
    ``[q | gate]``, then k, then v), zero-centred RMSNorm q and k per head, partial NeoX RoPE
    on both, and store k and v at flat cache rows ``kv_indices`` ``[T]``.

    Returns ``(q [T, nh, hd], gate [T, nh, hd])``; ``gate`` may be a view of ``qkv``.
    """
    tokens = qkv.shape[0]
    nh, nkv, hd = num_heads, num_kv_heads, head_dim
    if qkv.shape[1] != 2 * nh * hd + 2 * nkv * hd:
        raise ValueError(f"qkv width {qkv.shape[1]} != 2*{nh}*{hd} + 2*{nkv}*{hd}")
    qg, k, v = qkv.split([2 * nh * hd, nkv * hd, nkv * hd], dim=-1)
    q, gate = qg.view(tokens, nh, 2 * hd).chunk(2, dim=-1)
    q = rms_norm(q, q_norm, eps)
    k = rms_norm(k.view(tokens, nkv, hd), k_norm, eps)
    q, k = apply_rope(q, k, positions, inv_freq)
    write_kv_cache(k, v.view(tokens, nkv, hd), k_cache, v_cache, kv_indices)
    return q, gate
