"""Sparse MoE in Triton: routing, expert SwiGLU GEMMs, shared-expert gate (`reference/moe.py`).

A shared expert as wide as the routed ones runs as expert ``E`` (`moe_route_shared` appends it
to every token's choices), so the same two paths compute it and sum it with the routed outputs.

Two expert paths, both reading only the experts some token selected: `moe_gemv` (decode,
GEMVs, the ``k`` expert outputs summed inside the down-projection kernel) and `moe_sorted`
(prefill, grouped GEMMs over token-sorted blocks, SwiGLU in the gate/up GEMM's epilogue).
The ``k`` outputs of a token are summed in fp32 and rounded once (the reference rounds after
each expert; the difference is a bf16 ulp). Rounding points otherwise follow the reference:
projections and the SwiGLU product are rounded to the activation dtype as HF's eager experts do.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from tokenspeed.kernels.triton.common import (
    INTERPRETED,
    check_device,
    next_pow2,
    pdl_launch,
    pdl_supported,
)
from tokenspeed.kernels.triton.moe_gemv import (
    down_gemv_sum_kernel,
    down_gemv_tiles_kernel,
    up_gemv_kernel,
)
from tokenspeed.kernels.triton.moe_layout import sorted_layout
from tokenspeed.kernels.triton.moe_sorted import (
    down_sorted_kernel,
    sum_slots_kernel,
    up_sorted_kernel,
)

# Tokens at or below which the GEMV decode path runs (above: the token-sorted path); on the
# H100 GEMV still won at 32 tokens of 35B-A3B (2261 vs 1339 GB/s, benches/results).
DECODE_MAX_TOKENS = 32
# Launch shapes; benches/kernels.py reports the achieved bandwidth / throughput with them.
# "down": "loop" walks the slots one by one (`down_gemv_sum_kernel`), "tiles" loads every
# slot's weights first (`down_gemv_tiles_kernel`); "pdl": programmatic dependent launch of the
# down kernel after the up kernel (Hopper or newer, not in the interpreter). Decode: best of the
# H200 sweep at batch 1 (benches/results/kernels-2026-12-02-sweep_moe_decode-moe-h200.md):
# 25.7 us with 4-row "loop" tiles, 19.8 us with "tiles", 18.8 us with "tiles" + PDL (70.7% of
# HBM); batch 8 89.6%, batch 32 73.9%.
DECODE_CONFIG = {"up_bn": 2, "up_bk": 1024, "up_warps": 4,
                 "down_bn": 4, "down_bk": 512, "down_warps": 4, "down": "tiles", "pdl": True}  # fmt: skip
# Prefill: an expert's last rows get a ``tail_m``-row block when they fit one (0: off), which
# halves the padding rows of random routing (moe_layout.sorted_layout), in the same launches:
# 8k tokens on the H100 1.226 ms with, 1.335 ms without (kernels-2026-11-22-moe-prefill-tails.md).
PREFILL_CONFIG = {"block_m": 128, "up_bn": 128, "up_bk": 64, "up_warps": 8, "up_stages": 3,
                  "down_bn": 128, "down_bk": 64, "down_warps": 8, "down_stages": 3,
                  "tail_m": 64}  # fmt: skip


@triton.jit
def _route_kernel(logits_ptr, l_st, w_ptr, ids_ptr, E, TOP_K: tl.constexpr,
                  SLOTS: tl.constexpr, RENORM: tl.constexpr, BLOCK_E: tl.constexpr,
                  BLOCK_K: tl.constexpr, GDC: tl.constexpr = False):  # fmt: skip
    """Softmax over ``E`` logits in fp32, then top-k by repeated arg-max (lowest index wins a
    tie), then optional renormalisation of the chosen probabilities. ``SLOTS == TOP_K + 1``:
    logit ``E`` is the shared expert's gate; slot ``TOP_K`` gets expert ``E``, weight
    ``sigmoid(logit)``. One pass: the choices gather in a ``BLOCK_K`` vector, stored once.
    Each arg-max is a single max reduction over ``(probability bits << 32) | (BLOCK_E - 1 - e)``:
    probabilities are >= 0, so their fp32 bits order like the values, and on equal bits the
    larger low word is the lower index."""
    if GDC:  # PDL: nothing here is stable data, so wait first (common.PDL)
        tl.extra.cuda.gdc_wait()
        tl.extra.cuda.gdc_launch_dependents()
    r = tl.program_id(0).to(tl.int64)
    e = tl.arange(0, BLOCK_E)
    valid = e < E
    x = tl.load(logits_ptr + r * l_st + e, mask=valid, other=float("-inf")).to(tl.float32)
    p = tl.exp(x - tl.max(x, axis=0))
    p = p / tl.sum(p, axis=0)
    bits = p.to(tl.int32, bitcast=True).to(tl.int64)
    key = tl.where(valid, (bits << 32) | (BLOCK_E - 1 - e).to(tl.int64), -1)
    k = tl.arange(0, BLOCK_K)
    chosen = tl.zeros((BLOCK_K,), dtype=tl.int64)
    for j in tl.static_range(TOP_K):
        best = tl.max(key, axis=0)
        chosen = tl.where(k == j, best, chosen)
        key = tl.where(key == best, -1, key)  # keys are unique (index in the low word)
    ids = BLOCK_E - 1 - (chosen & 0xFFFFFFFF)
    w = (chosen >> 32).to(tl.int32).to(tl.float32, bitcast=True)
    w = tl.where(k < TOP_K, w, 0.0)
    if RENORM:
        w = w / tl.sum(w, axis=0)
    if SLOTS > TOP_K:
        gate = tl.sigmoid(tl.load(logits_ptr + r * l_st + E).to(tl.float32))
        w = tl.where(k == TOP_K, gate, w)
        ids = tl.where(k == TOP_K, E, ids)
    tl.store(w_ptr + r * SLOTS + k, w.to(w_ptr.dtype.element_ty), mask=k < SLOTS)
    tl.store(ids_ptr + r * SLOTS + k, ids.to(tl.int64), mask=k < SLOTS)


def _route(
    router_logits: Tensor, top_k: int, renormalize: bool, shared: bool
) -> tuple[Tensor, Tensor]:
    n, num_experts = router_logits.shape[0], router_logits.shape[1] - int(shared)
    if not 0 < top_k <= num_experts:
        raise ValueError(f"top_k {top_k} outside [1, {num_experts}]")
    check_device(router_logits)
    logits = router_logits if router_logits.stride(-1) == 1 else router_logits.contiguous()
    slots = top_k + int(shared)
    weights = torch.empty((n, slots), dtype=logits.dtype, device=logits.device)
    ids = torch.empty((n, slots), dtype=torch.int64, device=logits.device)
    if n:
        gdc = pdl_supported(logits)
        _route_kernel[(n,)](
            logits, logits.stride(0), weights, ids, num_experts, TOP_K=top_k, SLOTS=slots,
            RENORM=renormalize, BLOCK_E=next_pow2(num_experts), BLOCK_K=next_pow2(slots), GDC=gdc,
            num_warps=1,  # the reductions stay inside one warp (shuffles, no barriers)
            **pdl_launch(gdc),
        )  # fmt: skip
    return weights, ids


def moe_route(router_logits: Tensor, top_k: int, renormalize: bool) -> tuple[Tensor, Tensor]:
    """See `reference.moe.moe_route`."""
    return _route(router_logits, top_k, renormalize, False)


def moe_route_shared(router_logits: Tensor, top_k: int, renormalize: bool) -> tuple[Tensor, Tensor]:
    """See `reference.moe.moe_route_shared` (one launch: routing and the shared gate)."""
    return _route(router_logits, top_k, renormalize, True)


def moe_experts(
    x: Tensor, w_gate_up: Tensor, w_down: Tensor, weights: Tensor, ids: Tensor
) -> Tensor:
    """See `reference.moe.moe_experts`."""
    tokens, hidden = x.shape
    num_experts, two_im, w_hidden = w_gate_up.shape
    im = two_im // 2
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
    ids, rw = ids.contiguous(), weights.contiguous()
    if tokens <= DECODE_MAX_TOKENS:
        return _experts_gemv(x, w_gate_up, w_down, rw, ids)
    return _experts_sorted(x, w_gate_up, w_down, rw, ids)


def _experts_gemv(x: Tensor, w_gate_up: Tensor, w_down: Tensor, rw: Tensor, ids: Tensor) -> Tensor:
    tokens, hidden = x.shape
    pairs, im = ids.numel(), w_down.shape[2]
    top_k = ids.shape[1]
    act = torch.empty((pairs, im), dtype=x.dtype, device=x.device)
    c = DECODE_CONFIG
    tiles = c["down"] == "tiles"
    pdl = bool(c["pdl"]) and tiles and pdl_supported(x)
    bn, bk = c["up_bn"], min(c["up_bk"], next_pow2(hidden, 16))
    even = hidden % bk == 0 and im % bn == 0
    up_gemv_kernel[(pairs, triton.cdiv(im, bn))](
        x, x.stride(0), w_gate_up, ids, act, hidden, im, TOP_K=top_k, BN=bn, BK=bk,
        EVEN=even, GDC=pdl, num_warps=c["up_warps"], **pdl_launch(pdl),
    )  # fmt: skip
    out = torch.empty_like(x)
    bn = c["down_bn"]
    if tiles:
        ka = 1 << (top_k.bit_length() - 1)  # the largest power of two <= top_k
        kb = next_pow2(top_k - ka) if top_k > ka else 0
        down_gemv_tiles_kernel[(tokens, triton.cdiv(hidden, bn))](
            act, w_down, ids, rw, out, hidden, im, TOP_K=top_k, KA=ka, KB=kb, BN=bn,
            BK=next_pow2(im, 16), GDC=pdl, num_warps=c["down_warps"], **pdl_launch(pdl),
        )  # fmt: skip
        return out
    bk = min(c["down_bk"], next_pow2(im, 16))
    even = im % bk == 0 and hidden % bn == 0
    down_gemv_sum_kernel[(tokens, triton.cdiv(hidden, bn))](
        act, w_down, ids, rw, out, hidden, im, TOP_K=top_k, BN=bn, BK=bk, EVEN=even,
        num_warps=c["down_warps"],
    )  # fmt: skip
    return out


def _experts_sorted(
    x: Tensor, w_gate_up: Tensor, w_down: Tensor, rw: Tensor, ids: Tensor
) -> Tensor:
    tokens, hidden = x.shape
    pairs, im = ids.numel(), w_down.shape[2]
    num_experts, top_k = w_gate_up.shape[0], ids.shape[1]
    c = PREFILL_CONFIG
    tail_m = c["tail_m"]
    pair_of_row, row_of_pair, blocks = sorted_layout(ids, num_experts, c["block_m"], tail_m)
    act = torch.empty((pair_of_row.shape[0], im), dtype=x.dtype, device=x.device)  # sorted rows
    y = torch.empty((pair_of_row.shape[0], hidden), dtype=x.dtype, device=x.device)
    prec = "ieee" if x.dtype == torch.float32 else "tf32"
    # Triton's interpreter mis-multiplies bf16 dots (3.9); exact fp32 products instead.
    upcast = INTERPRETED and x.dtype != torch.float32
    grid_blocks = blocks.expert.shape[0]
    bn, bk = c["up_bn"], c["up_bk"]
    up_sorted_kernel[(grid_blocks * triton.cdiv(im, bn),)](
        x, x.stride(0), w_gate_up, pair_of_row, blocks.expert, blocks.start, blocks.tail, act,
        pairs, num_experts, hidden, im, TOP_K=top_k, BM=c["block_m"], TAIL_M=tail_m, BN=bn,
        BK=bk, EVEN=hidden % bk == 0 and im % bn == 0, PREC=prec, UPCAST=upcast,
        num_warps=c["up_warps"], num_stages=c["up_stages"],
    )  # fmt: skip
    bn, bk = c["down_bn"], c["down_bk"]
    down_sorted_kernel[(grid_blocks * triton.cdiv(hidden, bn),)](
        act, w_down, pair_of_row, blocks.expert, blocks.start, blocks.tail, rw, y, pairs,
        num_experts, hidden, im, BM=c["block_m"], TAIL_M=tail_m, BN=bn, BK=bk,
        EVEN=im % bk == 0 and hidden % bn == 0, PREC=prec, UPCAST=upcast,
        num_warps=c["down_warps"], num_stages=c["down_stages"],
    )  # fmt: skip
    out = torch.empty_like(x)
    block = min(1024, next_pow2(hidden))
    sum_slots_kernel[(tokens, triton.cdiv(hidden, block))](
        y, row_of_pair, out, hidden, TOP_K=top_k, BLOCK=block
    )
    return out


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
