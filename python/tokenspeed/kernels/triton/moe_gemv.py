"""MoE experts for few tokens (decode): GEMVs over only the selected experts' weights.

Two launches, nothing sorted or padded, so at batch 1 every weight byte read is one the math
needs:

* ``up_gemv_kernel``, one program per (token, slot) pair and block of ``BN`` intermediate rows:
  ``act = silu(x Wgᵀ) * (x Wuᵀ)`` (gate and up rows side by side, fp32 accumulation).
* ``down_gemv_sum_kernel``, one program per token and block of ``BN`` output rows: for each of
  the token's ``TOP_K`` experts ``round(round(act Wdᵀ) * weight)`` (the reference's rounding),
  summed in fp32 and rounded once. Summing in the kernel saves the ``[pairs, H]`` intermediate
  and the two reduction launches that decode would otherwise pay in every MoE layer.

Memory-bound: the launch shapes only have to keep enough loads in flight on every SM
(`moe.DECODE_CONFIG`, swept by benches/kernels.py).

Programmatic dependent launch (Hopper, ``GDC``): at batch 1 each launch is ~12 us, a few of
them the launch and the first loads' latency. ``down_gemv_tiles_kernel`` reads only the routing
(two launches old) and its weights before ``gdc_wait``, so when it is launched with
``launch_pdl`` after an up kernel that triggers its dependents, its weight loads overlap the up
kernel's last wave; ``act`` is read after the wait.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def swiglu(g, u, act: tl.constexpr):
    """``silu(g) * u`` with the reference's rounding: projections, silu and product in ``act``."""
    g = g.to(act).to(tl.float32)
    u = u.to(act).to(tl.float32)
    s = (g * tl.sigmoid(g)).to(act).to(tl.float32)
    return (s * u).to(act)


@triton.jit
def up_gemv_kernel(x_ptr, x_st, w_ptr, ids_ptr, act_ptr, H, IM, TOP_K: tl.constexpr,
                   BN: tl.constexpr, BK: tl.constexpr, EVEN: tl.constexpr,
                   GDC: tl.constexpr = False):  # fmt: skip
    """``EVEN``: ``H % BK == 0`` and ``IM % BN == 0``, so no load needs a mask. ``GDC``
    (launched with PDL after the routing kernel): wait for the routing, then let the down kernel
    launch: it reads the routing before its own wait, so the trigger must come after ours."""
    if GDC:
        tl.extra.cuda.gdc_wait()
        tl.extra.cuda.gdc_launch_dependents()
    pair = tl.program_id(0)
    n = tl.program_id(1) * BN + tl.arange(0, BN)
    k = tl.arange(0, BK)
    expert = tl.load(ids_ptr + pair).to(tl.int64)
    x_row = x_ptr + (pair // TOP_K).to(tl.int64) * x_st
    w_gate = w_ptr + expert * 2 * IM * H + n.to(tl.int64)[:, None] * H + k[None, :]
    w_up = w_gate + IM * H
    n_ok = (n < IM)[:, None]
    acc_g = tl.zeros((BN, BK), dtype=tl.float32)
    acc_u = tl.zeros((BN, BK), dtype=tl.float32)
    for k0 in range(0, H, BK):
        if EVEN:
            x = tl.load(x_row + k0 + k).to(tl.float32)[None, :]
            wg = tl.load(w_gate + k0, eviction_policy="evict_first")
            wu = tl.load(w_up + k0, eviction_policy="evict_first")
        else:
            k_ok = k0 + k < H
            x = tl.load(x_row + k0 + k, mask=k_ok, other=0.0).to(tl.float32)[None, :]
            wg = tl.load(w_gate + k0, mask=n_ok & k_ok[None, :], other=0.0)
            wu = tl.load(w_up + k0, mask=n_ok & k_ok[None, :], other=0.0)
        acc_g += wg.to(tl.float32) * x
        acc_u += wu.to(tl.float32) * x
    y = swiglu(tl.sum(acc_g, axis=1), tl.sum(acc_u, axis=1), act_ptr.dtype.element_ty)
    tl.store(act_ptr + pair.to(tl.int64) * IM + n, y, mask=n < IM)


@triton.jit
def down_gemv_sum_kernel(act_ptr, w_ptr, ids_ptr, rw_ptr, out_ptr, H, IM, TOP_K: tl.constexpr,
                         BN: tl.constexpr, BK: tl.constexpr, EVEN: tl.constexpr):  # fmt: skip
    """``EVEN``: ``IM % BK == 0`` and ``H % BN == 0``. The expert loop is unrolled so the
    loads of all ``TOP_K`` experts can be in flight together."""
    t = tl.program_id(0).to(tl.int64)
    n = tl.program_id(1) * BN + tl.arange(0, BN)
    k = tl.arange(0, BK)
    n_ok = (n < H)[:, None]
    act = out_ptr.dtype.element_ty
    total = tl.zeros((BN,), dtype=tl.float32)
    for j in tl.static_range(TOP_K):
        pair = t * TOP_K + j
        expert = tl.load(ids_ptr + pair).to(tl.int64)
        a_row = act_ptr + pair * IM
        w = w_ptr + expert * H * IM + n.to(tl.int64)[:, None] * IM + k[None, :]
        acc = tl.zeros((BN, BK), dtype=tl.float32)
        for k0 in range(0, IM, BK):
            if EVEN:
                a = tl.load(a_row + k0 + k).to(tl.float32)[None, :]
                ww = tl.load(w + k0, eviction_policy="evict_first")
            else:
                k_ok = k0 + k < IM
                a = tl.load(a_row + k0 + k, mask=k_ok, other=0.0).to(tl.float32)[None, :]
                ww = tl.load(w + k0, mask=n_ok & k_ok[None, :], other=0.0)
            acc += ww.to(tl.float32) * a
        # F.linear's output is rounded, then scaled by the routing weight and rounded again.
        rw = tl.load(rw_ptr + pair).to(tl.float32)
        total += (tl.sum(acc, axis=1).to(act).to(tl.float32) * rw).to(act).to(tl.float32)
    tl.store(out_ptr + t * H + n, total.to(act), mask=n < H)


@triton.jit
def _expert_tile(w_ptr, ids_ptr, rw_ptr, t, n, H, IM, J0: tl.constexpr, TOP_K: tl.constexpr,
                 KJ: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):  # fmt: skip
    """Slots ``J0 .. J0+KJ`` of token ``t`` (masked at TOP_K): pair ids, routing weights and
    the ``[KJ, BN, BK]`` down-projection tile of their experts (rows ``n``)."""
    j = J0 + tl.arange(0, KJ)
    j_ok = j < TOP_K
    pair = t * TOP_K + j
    expert = tl.load(ids_ptr + pair, mask=j_ok, other=0).to(tl.int64)
    rw = tl.load(rw_ptr + pair, mask=j_ok, other=0.0).to(tl.float32)
    k = tl.arange(0, BK)
    ptr = (w_ptr + expert[:, None, None] * H * IM + n.to(tl.int64)[None, :, None] * IM
           + k[None, None, :])  # fmt: skip
    m = j_ok[:, None, None] & (n < H)[None, :, None] & (k < IM)[None, None, :]
    return pair, j_ok, rw, tl.load(ptr, mask=m, other=0.0, eviction_policy="evict_first")


@triton.jit
def _tile_sum(act_ptr, pair, j_ok, rw, w, IM, BK: tl.constexpr):
    """``Σ_j round(round(act_j W_jᵀ) * rw_j)`` over the tile's slots, fp32 ``[BN]``."""
    act = w.dtype
    k = tl.arange(0, BK)
    a = tl.load(act_ptr + pair.to(tl.int64)[:, None] * IM + k[None, :],
                mask=j_ok[:, None] & (k < IM)[None, :], other=0.0).to(tl.float32)  # fmt: skip
    s = tl.sum(w.to(tl.float32) * a[:, None, :], axis=2)
    s = (s.to(act).to(tl.float32) * rw[:, None]).to(act).to(tl.float32)
    return tl.sum(tl.where(j_ok[:, None], s, 0.0), axis=0)


@triton.jit
def down_gemv_tiles_kernel(act_ptr, w_ptr, ids_ptr, rw_ptr, out_ptr, H, IM, TOP_K: tl.constexpr,
                           KA: tl.constexpr, KB: tl.constexpr, BN: tl.constexpr,
                           BK: tl.constexpr, GDC: tl.constexpr):  # fmt: skip
    """Like ``down_gemv_sum_kernel``, with every slot's whole ``[BN, IM]`` weight block loaded
    at once (``BK >= IM``) as two tiles of ``KA`` (a power of two <= TOP_K) and ``KB`` slots,
    before ``act`` is needed: under ``GDC`` they load while the up kernel still runs."""
    if GDC:
        tl.extra.cuda.gdc_launch_dependents()
    t = tl.program_id(0).to(tl.int64)
    n = tl.program_id(1) * BN + tl.arange(0, BN)
    pair_a, ok_a, rw_a, w_a = _expert_tile(w_ptr, ids_ptr, rw_ptr, t, n, H, IM, 0, TOP_K, KA,
                                           BN, BK)  # fmt: skip
    if KB > 0:
        pair_b, ok_b, rw_b, w_b = _expert_tile(w_ptr, ids_ptr, rw_ptr, t, n, H, IM, KA, TOP_K,
                                               KB, BN, BK)  # fmt: skip
    if GDC:
        tl.extra.cuda.gdc_wait()
    total = _tile_sum(act_ptr, pair_a, ok_a, rw_a, w_a, IM, BK)
    if KB > 0:
        total += _tile_sum(act_ptr, pair_b, ok_b, rw_b, w_b, IM, BK)
    tl.store(out_ptr + t * H + n, total.to(out_ptr.dtype.element_ty), mask=n < H)
