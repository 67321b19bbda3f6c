"""Few-token GEMV (decode) with an optional normalising prologue, one launch per projection.

``out[M, N] = h[M, K] @ W[N, K]^T`` for ``M <= MAX_M`` tokens. Many programs each stream
``BN`` weight rows in ``BK``-wide coalesced blocks (evict_first: the weight is read once per
step), fp32 accumulation: elementwise FMA into a ``[BN, BK]`` tile for one token, ``tl.dot``
on a 16-row token tile otherwise. The prologue builds ``h`` from the raw inputs on the fly,
so the norm costs no launch of its own (2.25 us each at decode, mostly latency):

* ``NORM``: zero-centred RMSNorm of ``x`` (``ADD``: of ``x + residual``, rounded to the
  activation dtype first) exactly as `norm.add_rms_norm` rounds. Every program first sums the
  row's squares itself (a pass over K that hits L2), then normalises each K block before the
  dot; program 0 also writes the new residual (a new tensor: the others still read the old
  one) and, on request, ``h`` (the MoE experts read it after the router GEMV).
* ``GATED``: the GDN output norm ``w * norm(o) * silu(z)`` per head of ``DV`` (``BK`` is a
  multiple of ``DV``), rounded as `reference.norm.gated_rms_norm`.

Switches for A/B runs: ``FUSE_DECODE`` (all) and ``FUSE[site]`` per projection; when off, or
above ``MAX_M`` tokens, the op runs the unfused composition (norm kernel, then ``F.linear``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from torch import Tensor

from tokenspeed.kernels.reference.gemv import gated_norm_then_linear, norm_then_linear
from tokenspeed.kernels.triton import norm
from tokenspeed.kernels.triton.common import (
    INTERPRETED,
    check_device,
    next_pow2,
    pdl_launch,
    pdl_supported,
)

FUSE_DECODE = True
FUSE = {"in_proj": True, "qkv_proj": True, "router": True, "out_proj": True, "o_proj": True}
MAX_M = 16  # the kernel's limit
# The model takes the fused path up to this many tokens. H200, 35B-A3B shapes, CUDA graphs
# (benches/results/kernels-2026-12-02-gemv-h200.md): at 1 token fused beats norm + cuBLAS
# (in_proj 19.0 vs 20.6 us, qkv 13.8 vs 16.1, out_proj 9.5 vs 12.0, router 2.9 vs 5.4); at 8
# tokens it loses (in_proj 25.3 vs 20.9 us at best: the 16-row dot tiles and the per-program
# norm pass), so batches above 1 keep the separate norm and cuBLAS.
FUSE_MAX_TOKENS = 1
PDL_GEMV = True  # with common.PDL: launched with programmatic dependent launch on Hopper
# (BN, BK, num_warps) by site, the best of that sweep at 1 token; else `pick_config`.
CONFIGS: dict[str, tuple[int, int, int]] = {"in_proj": (4, 512, 4), "qkv_proj": (8, 256, 4)}


@triton.jit(do_not_specialize=["M"])
def _gemv_kernel(
    x_ptr, x_s, res_ptr, res_s,   # rows of x / residual (NORM+ADD) / gate z (GATED)
    nw_ptr, w_ptr, out_ptr, res_out_ptr, h_out_ptr,
    M, N, K, eps,
    NORM: tl.constexpr, ADD: tl.constexpr, GATED: tl.constexpr, ROUND_WX: tl.constexpr,
    WRITE_RES: tl.constexpr, WRITE_H: tl.constexpr, DV: tl.constexpr,
    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, PREC: tl.constexpr, UPCAST: tl.constexpr,
    GDC: tl.constexpr,            # launched with PDL: the first weight tile loads before the wait
):  # fmt: skip
    if GDC:
        tl.extra.cuda.gdc_launch_dependents()
    pid = tl.program_id(0)
    m = tl.arange(0, BM)
    n = pid * BN + tl.arange(0, BN)
    m_ok = m < M
    n_ok = n < N
    x_row = m.to(tl.int64)[:, None] * x_s
    r_row = m.to(tl.int64)[:, None] * res_s
    o_row = m.to(tl.int64)[:, None] * K  # residual / h outputs are contiguous [M, K]
    w_row = n.to(tl.int64)[:, None] * K
    m_wr = m < tl.where(pid == 0, M, 0)  # program 0 writes residual / h
    kb = tl.arange(0, BK)
    # The weight tile of the next K step is loaded one step ahead (loop-carried), the first
    # one before the PDL wait: weights are never written by the step.
    w_next = tl.load(w_ptr + w_row + kb[None, :], mask=n_ok[:, None] & (kb < K)[None, :],
                     other=0.0, eviction_policy="evict_first")  # fmt: skip
    if GDC:
        tl.extra.cuda.gdc_wait()
    if NORM:  # the row's sum of squares, recomputed by every program (4 KB per row, from L2)
        ss = tl.zeros((BM, BK), dtype=tl.float32)
        for k0 in range(0, K, BK):
            k = k0 + tl.arange(0, BK)
            mk = m_ok[:, None] & (k < K)[None, :]
            xf = tl.load(x_ptr + x_row + k[None, :], mask=mk, other=0.0).to(tl.float32)
            if ADD:
                r = tl.load(res_ptr + r_row + k[None, :], mask=mk, other=0.0)
                xf = (xf + r.to(tl.float32)).to(r.dtype).to(tl.float32)
            ss += xf * xf
        inv = tl.rsqrt(tl.sum(ss, axis=1) / K + eps)
    if BM == 1:
        acc = tl.zeros((BN, BK), dtype=tl.float32)
    else:
        acc = tl.zeros((BM, BN), dtype=tl.float32)
    for k0 in range(0, K, BK):
        w = w_next
        kn = k0 + BK + kb
        w_next = tl.load(w_ptr + w_row + kn[None, :], mask=n_ok[:, None] & (kn < K)[None, :],
                         other=0.0, eviction_policy="evict_first")  # fmt: skip
        k = k0 + kb
        k_ok = k < K
        mk = m_ok[:, None] & k_ok[None, :]
        mw = m_wr[:, None] & k_ok[None, :]
        x = tl.load(x_ptr + x_row + k[None, :], mask=mk, other=0.0)
        act = x.dtype
        if NORM:
            xf = x.to(tl.float32)
            if ADD:
                r = tl.load(res_ptr + r_row + k[None, :], mask=mk, other=0.0)
                s = (xf + r.to(tl.float32)).to(act)  # the residual stream is rounded
                if WRITE_RES:
                    tl.store(res_out_ptr + o_row + k[None, :], s, mask=mw)
                xf = s.to(tl.float32)
            nw = tl.load(nw_ptr + k, mask=k_ok, other=0.0).to(tl.float32)
            h = (xf * inv[:, None] * (1.0 + nw[None, :])).to(act)
        elif GATED:
            g = tl.load(res_ptr + r_row + k[None, :], mask=mk, other=0.0).to(tl.float32)
            xf = tl.reshape(x.to(tl.float32), (BM, BK // DV, DV))
            hinv = tl.rsqrt(tl.sum(xf * xf, axis=2) / DV + eps)
            xn = tl.reshape(xf * hinv[:, :, None], (BM, BK)).to(act).to(tl.float32)
            nw = tl.load(nw_ptr + k % DV, mask=k_ok, other=0.0).to(tl.float32)
            y = nw[None, :] * xn
            if ROUND_WX:
                y = y.to(act).to(tl.float32)
            h = (y * (g * tl.sigmoid(g))).to(act)
        else:
            h = x
        if WRITE_H:
            tl.store(h_out_ptr + o_row + k[None, :], h, mask=mw)
        if BM == 1:
            acc += w.to(tl.float32) * h.to(tl.float32)
        else:
            if UPCAST:  # the interpreter's bf16 dot is broken (see moe.py)
                acc += tl.dot(h.to(tl.float32), tl.trans(w.to(tl.float32)), input_precision=PREC)
            else:
                acc += tl.dot(h.to(w.dtype), tl.trans(w), input_precision=PREC)
    if BM == 1:
        res = tl.sum(acc, axis=1)
        tl.store(out_ptr + n, res.to(out_ptr.dtype.element_ty), mask=n_ok)
    else:
        out_off = m.to(tl.int64)[:, None] * N + n[None, :]
        tl.store(
            out_ptr + out_off, acc.to(out_ptr.dtype.element_ty), mask=m_ok[:, None] & n_ok[None, :]
        )


def pick_config(m: int, n: int, k: int) -> tuple[int, int, int]:
    """(BN, BK, num_warps): enough programs to keep every SM streaming (>= ~2 per SM on an
    H200's 132), an 8 KB weight tile per K step for one token; 16-row dot tiles otherwise."""
    bn = 4
    for cand in (32, 16, 8):
        if triton.cdiv(n, cand) >= 264:
            bn = cand
            break
    if m == 1:
        return bn, max(64, min(1024, 4096 // bn, next_pow2(k))), 4
    return max(bn, 16), max(64, min(256, next_pow2(k))), 4


def gemv(
    x: Tensor,
    weight: Tensor,
    *,
    residual: Tensor | None = None,
    norm_weight: Tensor | None = None,
    gate: Tensor | None = None,
    eps: float = 1e-6,
    head_dim: int = 0,
    write_h: bool = False,
    config: tuple[int, int, int] | None = None,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """``(out, residual_out, h)`` for ``x [M, K]`` (rows may be strided), ``weight [N, K]``.

    Prologue: none (``norm_weight`` None); RMSNorm (+ ``residual``); gated (``gate`` and
    ``head_dim``). ``residual_out`` is a new tensor when ``residual`` is given.
    """
    m, kdim = x.shape
    ndim = weight.shape[0]
    if weight.shape[1] != kdim or m > MAX_M or weight.stride(1) != 1:
        raise ValueError(f"gemv: x {tuple(x.shape)}, weight {tuple(weight.shape)}, M <= {MAX_M}")
    check_device(x, weight, residual, gate, norm_weight)
    if x.stride(1) != 1:
        x = x.contiguous()
    other = residual if residual is not None else gate
    if other is not None:
        if other.shape != x.shape or other.dtype != x.dtype:
            raise ValueError(f"gemv: {tuple(other.shape)} {other.dtype} vs x {tuple(x.shape)}")
        if other.stride(1) != 1:
            other = other.contiguous()
    weight = weight.contiguous()
    gated = gate is not None
    nrm = norm_weight is not None and not gated
    bm = 1 if m == 1 else 16
    bn, bk, warps = config or pick_config(m, ndim, kdim)
    if bm > 1:
        bn = max(bn, 16)  # tl.dot tiles are at least 16 wide
    if gated:
        assert norm_weight is not None and head_dim > 0 and kdim % head_dim == 0
        dv = next_pow2(head_dim)
        if dv != head_dim:
            raise ValueError(f"gated gemv needs a power-of-two head_dim, got {head_dim}")
        bk = max(bk, dv)
    else:
        dv = 1
    out = torch.empty(m, ndim, dtype=x.dtype, device=x.device)
    res_out = torch.empty_like(x) if residual is not None else None
    h_out = torch.empty_like(x) if write_h else None
    if m == 0:
        return out, res_out, h_out
    wx_dtype = (
        torch.promote_types(norm_weight.dtype, x.dtype) if norm_weight is not None else x.dtype
    )
    round_wx = gated and wx_dtype != torch.float32  # as `norm.gated_rms_norm`
    upcast = INTERPRETED and x.dtype != torch.float32
    prec = "ieee" if x.dtype == torch.float32 or upcast else "tf32"
    dummy = x
    gdc = PDL_GEMV and pdl_supported(x)
    _gemv_kernel[(triton.cdiv(ndim, bn),)](
        x, x.stride(0), other if other is not None else dummy,
        other.stride(0) if other is not None else 0,
        norm_weight if norm_weight is not None else dummy, weight, out,
        res_out if res_out is not None else dummy, h_out if h_out is not None else dummy,
        m, ndim, kdim, eps,
        NORM=nrm, ADD=residual is not None, GATED=gated, ROUND_WX=round_wx,
        WRITE_RES=res_out is not None, WRITE_H=write_h, DV=dv,
        BM=bm, BN=bn, BK=bk, PREC=prec, UPCAST=upcast, GDC=gdc, num_warps=warps, **pdl_launch(gdc),
    )  # fmt: skip
    return out, res_out, h_out


def _fused(site: str, tokens: int) -> bool:
    return FUSE_DECODE and FUSE.get(site, True) and 0 < tokens <= min(FUSE_MAX_TOKENS, MAX_M)


def norm_linear(
    x: Tensor,
    residual: Tensor | None,
    norm_weight: Tensor,
    eps: float,
    weight: Tensor,
    return_h: bool,
    site: str = "",
) -> tuple[Tensor, Tensor, Tensor | None]:
    """See `reference.gemv.norm_linear`."""
    if not _fused(site, x.shape[0]):
        return norm_then_linear(norm, x, residual, norm_weight, eps, weight, return_h)
    out, res_out, h = gemv(
        x, weight, residual=residual, norm_weight=norm_weight, eps=eps, write_h=return_h,
        config=CONFIGS.get(site),
    )  # fmt: skip
    return out, res_out if res_out is not None else x, h


def gated_norm_linear(
    o: Tensor, gate: Tensor, norm_weight: Tensor, eps: float, weight: Tensor, site: str = ""
) -> Tensor:
    """See `reference.gemv.gated_norm_linear`."""
    tokens, heads, dv = o.shape
    if not _fused(site, tokens) or dv != next_pow2(dv):
        return gated_norm_then_linear(norm, o, gate, norm_weight, eps, weight)
    o2, g2 = o.reshape(tokens, heads * dv), gate.reshape(tokens, heads * dv)
    cfg = CONFIGS.get(site)
    return gemv(o2, weight, norm_weight=norm_weight, gate=g2, eps=eps, head_dim=dv, config=cfg)[0]


def linear_small(x: Tensor, weight: Tensor, site: str = "") -> Tensor:
    """See `reference.gemv.linear_small`."""
    if not _fused(site, x.shape[0]):
        return F.linear(x, weight)
    return gemv(x, weight, config=CONFIGS.get(site))[0]
