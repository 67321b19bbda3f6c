"""Partial NeoX RoPE and the fused gated-attention input step in Triton.

Semantics: `reference/rope.py` (``apply_rope``) and `reference/attention_input.py`
(``qk_norm_rope_kv_write``). One program handles one (token, head) row: optional zero-centred
RMSNorm over the whole head, then NeoX rotation of dims ``j`` / ``j + rotary_dim/2`` for
``j < rotary_dim/2``; the remaining dims pass through. The output row is either the token's own
row or, for K and V, the flat KV-cache row ``kv_indices[t]``, so the fused op reads the packed
projection once and writes q, the cache K and the cache V directly (the gate stays a view).
Rounding follows the reference: the norm output, cos/sin and each rotation product are rounded
to the activation dtype, as HF does.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from tokenspeed.kernels.triton.common import check_device, next_pow2, pdl_launch, pdl_supported


@triton.jit
def _norm_rope_kernel(
    x_ptr, x_st, x_sh, w_ptr, pos_ptr, inv_freq_ptr, out_ptr, o_st, o_sh, rows_ptr, D, eps,
    NORM: tl.constexpr, ROPE: tl.constexpr, INDEXED: tl.constexpr, HALF: tl.constexpr,
    BD: tl.constexpr, BH: tl.constexpr, GDC: tl.constexpr = False,
):  # fmt: skip
    if GDC:  # PDL: nothing here is stable data, so wait first (common.PDL)
        tl.extra.cuda.gdc_wait()
        tl.extra.cuda.gdc_launch_dependents()
    t = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1).to(tl.int64)
    act = x_ptr.dtype.element_ty
    src = x_ptr + t * x_st + h * x_sh
    if INDEXED:
        dst = out_ptr + tl.load(rows_ptr + t).to(tl.int64) * o_st + h * o_sh
    else:
        dst = out_ptr + t * o_st + h * o_sh
    d = tl.arange(0, BD)
    x = tl.load(src + d, mask=d < D, other=0.0).to(tl.float32)
    inv = 1.0
    if NORM:
        inv = tl.rsqrt(tl.sum(x * x, axis=0) / D + eps)
        x = (x * inv * (1.0 + tl.load(w_ptr + d, mask=d < D, other=0.0).to(tl.float32))).to(act)
    keep = d < D
    if ROPE:
        keep = keep & (d >= 2 * HALF)
        j = tl.arange(0, BH)
        jm = j < HALF
        lo = tl.load(src + j, mask=jm, other=0.0).to(tl.float32)
        hi = tl.load(src + HALF + j, mask=jm, other=0.0).to(tl.float32)
        if NORM:  # the same normalised values as x above, for the two rotated halves
            w_lo = tl.load(w_ptr + j, mask=jm, other=0.0).to(tl.float32)
            w_hi = tl.load(w_ptr + HALF + j, mask=jm, other=0.0).to(tl.float32)
            lo = (lo * inv * (1.0 + w_lo)).to(act).to(tl.float32)
            hi = (hi * inv * (1.0 + w_hi)).to(act).to(tl.float32)
        freq = tl.load(pos_ptr + t).to(tl.float32) * tl.load(inv_freq_ptr + j, mask=jm, other=0.0)
        cos = tl.cos(freq).to(act).to(tl.float32)
        sin = tl.sin(freq).to(act).to(tl.float32)
        out_lo = (lo * cos).to(act).to(tl.float32) + (-hi * sin).to(act).to(tl.float32)
        out_hi = (hi * cos).to(act).to(tl.float32) + (lo * sin).to(act).to(tl.float32)
        out_ty = out_ptr.dtype.element_ty
        tl.store(dst + j, out_lo.to(act).to(out_ty), mask=jm)
        tl.store(dst + HALF + j, out_hi.to(act).to(out_ty), mask=jm)
    tl.store(dst + d, x.to(act).to(out_ptr.dtype.element_ty), mask=keep)


def _rows(
    x: Tensor,
    out: Tensor,
    o_st: int,
    o_sh: int,
    weight: Tensor | None,
    eps: float,
    positions: Tensor,
    inv_freq: Tensor | None,
    rows: Tensor | None,
) -> None:
    """Launch over ``x`` ``[T, heads, D]`` (unit stride on D) into ``out`` rows."""
    tokens, heads, dim = x.shape
    if x.stride(-1) != 1:
        raise ValueError("rows need a unit stride on head_dim")
    half = 0 if inv_freq is None else inv_freq.shape[0]
    if 2 * half > dim:
        raise ValueError(f"rotary dim {2 * half} exceeds head_dim {dim}")
    if tokens == 0 or heads == 0:
        return
    gdc = pdl_supported(x)
    _norm_rope_kernel[(tokens, heads)](
        x, x.stride(0), x.stride(1), weight if weight is not None else x, positions,
        inv_freq if inv_freq is not None else x, out, o_st, o_sh,
        rows if rows is not None else positions, dim, eps,
        NORM=weight is not None, ROPE=inv_freq is not None, INDEXED=rows is not None,
        HALF=half, BD=next_pow2(dim), BH=next_pow2(half), GDC=gdc,
        num_warps=1 if dim <= 256 else 4, **pdl_launch(gdc),
    )  # fmt: skip


def apply_rope(q: Tensor, k: Tensor, positions: Tensor, inv_freq: Tensor) -> tuple[Tensor, Tensor]:
    """See `reference.rope.apply_rope`."""
    check_device(q, k, positions)
    inv_freq = inv_freq.float().contiguous()
    out = []
    for x in (q, k):
        y = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        _rows(x, y, y.stride(0), y.stride(1), None, 0.0, positions, inv_freq, None)
        out.append(y)
    return out[0], out[1]


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
    """See `reference.attention_input.qk_norm_rope_kv_write`."""
    tokens = qkv.shape[0]
    nh, nkv, hd = num_heads, num_kv_heads, head_dim
    if qkv.shape[1] != 2 * nh * hd + 2 * nkv * hd:
        raise ValueError(f"qkv width {qkv.shape[1]} != 2*{nh}*{hd} + 2*{nkv}*{hd}")
    if k_cache.shape[2:] != (nkv, hd) or not (k_cache.is_contiguous() and v_cache.is_contiguous()):
        raise ValueError(f"KV cache {tuple(k_cache.shape)} does not hold [*, *, {nkv}, {hd}]")
    check_device(qkv, k_cache, v_cache, kv_indices)
    if qkv.stride(-1) != 1:
        qkv = qkv.contiguous()
    qg, k, v = qkv.split([2 * nh * hd, nkv * hd, nkv * hd], dim=-1)
    q_in, gate = qg.view(tokens, nh, 2 * hd).chunk(2, dim=-1)
    inv_freq = inv_freq.float().contiguous()
    q = torch.empty((tokens, nh, hd), dtype=qkv.dtype, device=qkv.device)
    _rows(q_in, q, q.stride(0), q.stride(1), q_norm, eps, positions, inv_freq, None)
    row_stride = nkv * hd
    _rows(k.view(tokens, nkv, hd), k_cache, row_stride, hd, k_norm, eps, positions, inv_freq,
          kv_indices)  # fmt: skip
    _rows(v.view(tokens, nkv, hd), v_cache, row_stride, hd, None, 0.0, positions, None,
          kv_indices)  # fmt: skip
    return q, gate
