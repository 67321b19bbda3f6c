"""Sparse MoE in Triton: routing, expert SwiGLU GEMMs, shared-expert gate (`reference/moe.py`).

Two expert paths, both reading only the experts some token selected:

* **decode** (few tokens): one program per (token, slot) pair and block of output rows, a
  GEMV over the expert's weights. Nothing is padded or sorted; at batch 1 every weight byte
  read is one the math needs.
* **prefill** (token-sorted): the (token, slot) pairs are sorted by expert and padded to
  blocks of ``BLOCK_M`` rows of one expert each; a program multiplies one block by a tile of
  that expert's weights with tensor-core dots, so every expert is read once per block.

Both compute ``act = silu(x Wgᵀ) * (x Wuᵀ)`` in one kernel (gate and up tiles side by side) and
``y = weight * act Wdᵀ`` per pair in a second; the ``k`` outputs of a token are then summed in
fp32 and rounded once (the reference rounds after each expert; the difference is a bf16 ulp).
Rounding points otherwise follow the reference: projections and the SwiGLU product are rounded
to the activation dtype as HF's eager experts do.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from tokenspeed.kernels.triton.common import INTERPRETED, check_device, next_pow2

# Tokens at or below which the GEMV decode path runs (above: the token-sorted path); on the
# H100 GEMV still won at 32 tokens of 35B-A3B (2261 vs 1339 GB/s, benches/results).
DECODE_MAX_TOKENS = 32
# Launch shapes; benches/kernels.py reports the achieved bandwidth / throughput with them.
DECODE_CONFIG = {"block_n": 16, "block_k": 512, "num_warps": 4}  # best of the H100 sweep
PREFILL_CONFIG = {"block_m": 128, "block_n": 128, "block_k": 64, "num_warps": 8, "num_stages": 3}


@triton.jit
def _route_kernel(logits_ptr, l_st, w_ptr, ids_ptr, E, TOP_K: tl.constexpr,
                  RENORM: tl.constexpr, BLOCK_E: tl.constexpr):  # fmt: skip
    """Softmax over ``E`` logits in fp32, then top-k by repeated arg-max (lowest index wins a
    tie), then optional renormalisation of the chosen probabilities."""
    r = tl.program_id(0).to(tl.int64)
    e = tl.arange(0, BLOCK_E)
    valid = e < E
    x = tl.load(logits_ptr + r * l_st + e, mask=valid, other=float("-inf")).to(tl.float32)
    p = tl.exp(x - tl.max(x, axis=0))
    p = tl.where(valid, p / tl.sum(p, axis=0), -1.0)
    total = 0.0
    remaining = p
    for _ in tl.static_range(TOP_K):  # pass 1: the sum of the chosen probabilities
        best = tl.max(remaining, axis=0)
        idx = tl.min(tl.where(remaining == best, e, BLOCK_E), axis=0)
        total += best
        remaining = tl.where(e == idx, -1.0, remaining)
    scale = 1.0 / total if RENORM else 1.0
    remaining = p
    for j in tl.static_range(TOP_K):  # pass 2: the same choices, written out in order
        best = tl.max(remaining, axis=0)
        idx = tl.min(tl.where(remaining == best, e, BLOCK_E), axis=0)
        tl.store(w_ptr + r * TOP_K + j, (best * scale).to(w_ptr.dtype.element_ty))
        tl.store(ids_ptr + r * TOP_K + j, idx.to(tl.int64))
        remaining = tl.where(e == idx, -1.0, remaining)


def moe_route(router_logits: Tensor, top_k: int, renormalize: bool) -> tuple[Tensor, Tensor]:
    """See `reference.moe.moe_route`."""
    n, num_experts = router_logits.shape
    if not 0 < top_k <= num_experts:
        raise ValueError(f"top_k {top_k} outside [1, {num_experts}]")
    check_device(router_logits)
    logits = router_logits if router_logits.stride(-1) == 1 else router_logits.contiguous()
    weights = torch.empty((n, top_k), dtype=logits.dtype, device=logits.device)
    ids = torch.empty((n, top_k), dtype=torch.int64, device=logits.device)
    if n:
        _route_kernel[(n,)](
            logits, logits.stride(0), weights, ids, num_experts, TOP_K=top_k,
            RENORM=renormalize, BLOCK_E=next_pow2(num_experts), num_warps=4,
        )  # fmt: skip
    return weights, ids


@triton.jit
def _swiglu(g, u, act: tl.constexpr):
    """``silu(g) * u`` with the reference's rounding: projections, silu and product in ``act``."""
    g = g.to(act).to(tl.float32)
    u = u.to(act).to(tl.float32)
    s = (g * tl.sigmoid(g)).to(act).to(tl.float32)
    return (s * u).to(act)


# ---- decode: GEMV per (token, slot) pair ----------------------------------------------------
@triton.jit
def _up_gemv_kernel(x_ptr, x_st, w_ptr, ids_ptr, act_ptr, H, IM, TOP_K: tl.constexpr,
                    BN: tl.constexpr, BK: tl.constexpr):  # fmt: skip
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
        k_ok = k0 + k < H
        x = tl.load(x_row + k0 + k, mask=k_ok, other=0.0).to(tl.float32)[None, :]
        acc_g += tl.load(w_gate + k0, mask=n_ok & k_ok[None, :], other=0.0).to(tl.float32) * x
        acc_u += tl.load(w_up + k0, mask=n_ok & k_ok[None, :], other=0.0).to(tl.float32) * x
    y = _swiglu(tl.sum(acc_g, axis=1), tl.sum(acc_u, axis=1), act_ptr.dtype.element_ty)
    tl.store(act_ptr + pair.to(tl.int64) * IM + n, y, mask=n < IM)


@triton.jit
def _down_gemv_kernel(act_ptr, w_ptr, ids_ptr, rw_ptr, y_ptr, H, IM,
                      BN: tl.constexpr, BK: tl.constexpr):  # fmt: skip
    pair = tl.program_id(0)
    n = tl.program_id(1) * BN + tl.arange(0, BN)
    k = tl.arange(0, BK)
    expert = tl.load(ids_ptr + pair).to(tl.int64)
    a_row = act_ptr + pair.to(tl.int64) * IM
    w = w_ptr + expert * H * IM + n.to(tl.int64)[:, None] * IM + k[None, :]
    n_ok = (n < H)[:, None]
    acc = tl.zeros((BN, BK), dtype=tl.float32)
    for k0 in range(0, IM, BK):
        k_ok = k0 + k < IM
        a = tl.load(a_row + k0 + k, mask=k_ok, other=0.0).to(tl.float32)[None, :]
        acc += tl.load(w + k0, mask=n_ok & k_ok[None, :], other=0.0).to(tl.float32) * a
    # F.linear's output is rounded, then scaled by the routing weight and rounded again.
    act = y_ptr.dtype.element_ty
    rw = tl.load(rw_ptr + pair).to(tl.float32)
    y = tl.sum(acc, axis=1).to(act).to(tl.float32) * rw
    tl.store(y_ptr + pair.to(tl.int64) * H + n, y.to(act), mask=n < H)


# ---- prefill: token-sorted blocks of one expert ----------------------------------------------
@triton.jit
def _up_sorted_kernel(x_ptr, x_st, w_ptr, pair_ptr, block_expert_ptr, act_ptr, pairs, E, H, IM,
                      TOP_K: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
                      BK: tl.constexpr, PREC: tl.constexpr, UPCAST: tl.constexpr):  # fmt: skip
    blk = tl.program_id(0)
    expert = tl.load(block_expert_ptr + blk).to(tl.int64)
    if expert >= E:  # one of the spare blocks of the upper-bound grid
        return
    pair = tl.load(pair_ptr + blk * BM + tl.arange(0, BM))
    valid = pair < pairs
    n = tl.program_id(1) * BN + tl.arange(0, BN)
    k = tl.arange(0, BK)
    x = x_ptr + (pair // TOP_K).to(tl.int64)[:, None] * x_st + k[None, :]
    w_gate = w_ptr + expert * 2 * IM * H + n.to(tl.int64)[None, :] * H + k[:, None]  # [BK, BN]
    w_up = w_gate + IM * H
    n_ok = (n < IM)[None, :]
    acc_g = tl.zeros((BM, BN), dtype=tl.float32)
    acc_u = tl.zeros((BM, BN), dtype=tl.float32)
    for k0 in range(0, H, BK):
        k_ok = k0 + k < H
        xa = tl.load(x + k0, mask=valid[:, None] & k_ok[None, :], other=0.0)
        wg = tl.load(w_gate + k0, mask=k_ok[:, None] & n_ok, other=0.0)
        wu = tl.load(w_up + k0, mask=k_ok[:, None] & n_ok, other=0.0)
        if UPCAST:
            xa, wg, wu = xa.to(tl.float32), wg.to(tl.float32), wu.to(tl.float32)
        acc_g = tl.dot(xa, wg, acc_g, input_precision=PREC)
        acc_u = tl.dot(xa, wu, acc_u, input_precision=PREC)
    y = _swiglu(acc_g, acc_u, act_ptr.dtype.element_ty)
    dst = act_ptr + pair.to(tl.int64)[:, None] * IM + n[None, :]
    tl.store(dst, y, mask=valid[:, None] & n_ok)


@triton.jit
def _down_sorted_kernel(act_ptr, w_ptr, pair_ptr, block_expert_ptr, rw_ptr, y_ptr, pairs, E, H,
                        IM, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                        PREC: tl.constexpr, UPCAST: tl.constexpr):  # fmt: skip
    blk = tl.program_id(0)
    expert = tl.load(block_expert_ptr + blk).to(tl.int64)
    if expert >= E:
        return
    pair = tl.load(pair_ptr + blk * BM + tl.arange(0, BM))
    valid = pair < pairs
    pair64 = tl.where(valid, pair, 0).to(tl.int64)
    n = tl.program_id(1) * BN + tl.arange(0, BN)
    k = tl.arange(0, BK)
    a = act_ptr + pair64[:, None] * IM + k[None, :]
    w = w_ptr + expert * H * IM + n.to(tl.int64)[None, :] * IM + k[:, None]  # [BK, BN]
    n_ok = (n < H)[None, :]
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for k0 in range(0, IM, BK):
        k_ok = k0 + k < IM
        aa = tl.load(a + k0, mask=valid[:, None] & k_ok[None, :], other=0.0)
        ww = tl.load(w + k0, mask=k_ok[:, None] & n_ok, other=0.0)
        if UPCAST:
            aa, ww = aa.to(tl.float32), ww.to(tl.float32)
        acc = tl.dot(aa, ww, acc, input_precision=PREC)
    act = y_ptr.dtype.element_ty
    rw = tl.load(rw_ptr + pair64, mask=valid, other=0.0).to(tl.float32)
    y = acc.to(act).to(tl.float32) * rw[:, None]
    tl.store(y_ptr + pair64[:, None] * H + n[None, :], y.to(act), mask=valid[:, None] & n_ok)


def sorted_layout(ids: Tensor, num_experts: int, block_m: int) -> tuple[Tensor, Tensor]:
    """Pairs sorted by expert, padded per expert to whole blocks of ``block_m`` rows.

    Returns ``(pair_of_row [blocks * block_m]``, ``block_expert [blocks])``: padding rows hold
    the sentinel ``pairs``; spare blocks of the (upper-bound, sync-free) grid hold expert
    ``num_experts``. Pair ``p`` is token ``p // k``, slot ``p % k``.
    """
    flat = ids.reshape(-1)
    pairs = flat.numel()
    device = flat.device
    order = torch.argsort(flat, stable=True)
    counts = torch.bincount(flat, minlength=num_experts)
    blocks = (counts + block_m - 1) // block_m
    block_end = torch.cumsum(blocks, 0)
    padded_start = (block_end - blocks) * block_m
    expert_start = torch.cumsum(counts, 0) - counts
    sorted_experts = flat[order]
    rank = torch.arange(pairs, device=device) - expert_start[sorted_experts]
    max_blocks = triton.cdiv(pairs, block_m) + min(num_experts, pairs)
    pair_of_row = torch.full((max_blocks * block_m,), pairs, dtype=torch.int32, device=device)
    pair_of_row[padded_start[sorted_experts] + rank] = order.to(torch.int32)
    block_ids = torch.arange(max_blocks, device=device)
    block_expert = torch.searchsorted(block_end, block_ids, right=True).to(torch.int32)
    return pair_of_row, block_expert


def moe_experts(
    x: Tensor, w_gate_up: Tensor, w_down: Tensor, weights: Tensor, ids: Tensor
) -> Tensor:
    """See `reference.moe.moe_experts`."""
    tokens, hidden = x.shape
    num_experts, two_im, w_hidden = w_gate_up.shape
    im = two_im // 2
    top_k = ids.shape[1]
    if w_hidden != hidden or tuple(w_down.shape) != (num_experts, hidden, im) or two_im % 2:
        raise ValueError(f"expert weights {tuple(w_gate_up.shape)} / {tuple(w_down.shape)} do "
                         f"not fit hidden size {hidden}")  # fmt: skip
    if not (w_gate_up.is_contiguous() and w_down.is_contiguous()):
        raise ValueError("expert weights must be contiguous")
    if tuple(weights.shape) != tuple(ids.shape) or ids.shape[0] != tokens:
        raise ValueError(f"routing {tuple(weights.shape)} / {tuple(ids.shape)} vs {tokens} tokens")
    check_device(x, w_gate_up, w_down)
    if tokens == 0:
        return torch.zeros_like(x)
    if x.stride(-1) != 1:
        x = x.contiguous()
    pairs = tokens * top_k
    ids = ids.contiguous()
    rw = weights.contiguous()
    act = torch.empty((pairs, im), dtype=x.dtype, device=x.device)
    y = torch.empty((pairs, hidden), dtype=x.dtype, device=x.device)
    if tokens <= DECODE_MAX_TOKENS:
        c = DECODE_CONFIG
        bn, bk, warps = c["block_n"], min(c["block_k"], next_pow2(hidden, 16)), c["num_warps"]
        _up_gemv_kernel[(pairs, triton.cdiv(im, bn))](
            x, x.stride(0), w_gate_up, ids, act, hidden, im, TOP_K=top_k, BN=bn, BK=bk,
            num_warps=warps,
        )  # fmt: skip
        bk = min(c["block_k"], next_pow2(im, 16))
        _down_gemv_kernel[(pairs, triton.cdiv(hidden, bn))](
            act, w_down, ids, rw, y, hidden, im, BN=bn, BK=bk, num_warps=warps
        )
    else:
        c = PREFILL_CONFIG
        bm, bn, bk = c["block_m"], c["block_n"], c["block_k"]
        pair_of_row, block_expert = sorted_layout(ids, num_experts, bm)
        prec = "ieee" if x.dtype == torch.float32 else "tf32"
        # Triton's interpreter mis-multiplies bf16 dots (3.9); exact fp32 products instead.
        upcast = INTERPRETED and x.dtype != torch.float32
        launch = {"num_warps": c["num_warps"], "num_stages": c["num_stages"]}
        blocks = block_expert.shape[0]
        _up_sorted_kernel[(blocks, triton.cdiv(im, bn))](
            x, x.stride(0), w_gate_up, pair_of_row, block_expert, act, pairs, num_experts,
            hidden, im, TOP_K=top_k, BM=bm, BN=bn, BK=bk, PREC=prec, UPCAST=upcast, **launch,
        )  # fmt: skip
        _down_sorted_kernel[(blocks, triton.cdiv(hidden, bn))](
            act, w_down, pair_of_row, block_expert, rw, y, pairs, num_experts, hidden, im,
            BM=bm, BN=bn, BK=bk, PREC=prec, UPCAST=upcast, **launch,
        )  # fmt: skip
    return y.view(tokens, top_k, hidden).sum(1, dtype=torch.float32).to(x.dtype)


@triton.jit
def _gated_add_kernel(routed_ptr, shared_ptr, gate_ptr, g_st, out_ptr, H, BLOCK: tl.constexpr):
    t = tl.program_id(0).to(tl.int64)
    d = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    m = d < H
    act = out_ptr.dtype.element_ty
    gate = tl.sigmoid(tl.load(gate_ptr + t * g_st).to(tl.float32)).to(act).to(tl.float32)
    shared = tl.load(shared_ptr + t * H + d, mask=m, other=0.0).to(tl.float32)
    routed = tl.load(routed_ptr + t * H + d, mask=m, other=0.0).to(tl.float32)
    scaled = (gate * shared).to(act).to(tl.float32)
    tl.store(out_ptr + t * H + d, (routed + scaled).to(act), mask=m)


def add_gated_shared_expert(routed: Tensor, shared: Tensor, gate_logit: Tensor) -> Tensor:
    """See `reference.moe.add_gated_shared_expert` (same rounding: sigmoid, product, sum)."""
    tokens, hidden = routed.shape
    if tuple(shared.shape) != (tokens, hidden) or tuple(gate_logit.shape) != (tokens, 1):
        raise ValueError(f"shared {tuple(shared.shape)} / gate {tuple(gate_logit.shape)} do not "
                         f"fit routed {tuple(routed.shape)}")  # fmt: skip
    check_device(routed, shared, gate_logit)
    routed, shared = routed.contiguous(), shared.contiguous()
    out = torch.empty_like(routed)
    if tokens:
        block = min(1024, next_pow2(hidden))
        _gated_add_kernel[(tokens, triton.cdiv(hidden, block))](
            routed, shared, gate_logit, gate_logit.stride(0), out, hidden, BLOCK=block
        )
    return out
