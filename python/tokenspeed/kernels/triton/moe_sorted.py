"""MoE experts for many tokens (prefill): grouped GEMMs over token-sorted blocks.

The (token, slot) pairs are sorted by expert and padded to blocks of ``BM`` rows of one expert
each (`sorted_layout`); a program multiplies one block by a ``BN``-wide tile of that expert's
weights with tensor-core dots, so every expert is read once per block.

* ``up_sorted_kernel``: ``act = silu(x Wgᵀ) * (x Wuᵀ)`` (SwiGLU in the epilogue, gate and up
  tiles side by side), rows gathered from the tokens.
* ``down_sorted_kernel``: ``y = round(round(act Wdᵀ) * weight)`` per pair.
* ``sum_slots_kernel``: the ``k`` rows of a token summed in fp32, rounded once.

Programs run the ``N`` tiles of one block next to each other (the block's rows stay in L2).
``act`` and ``y`` are kept in sorted row order, so only the gate/up GEMM gathers its rows
(from ``x``) and only the slot sum scatters back (through ``row_of_pair``).
Padding rows load row 0 instead of being masked (their results are never stored), and
``EVEN`` drops the K/N masks when the shapes divide the tiles, so every load is unmasked.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from tokenspeed.kernels.triton.moe_gemv import swiglu


@triton.jit
def up_sorted_kernel(x_ptr, x_st, w_ptr, pair_ptr, block_expert_ptr, act_ptr, pairs, E, H, IM,
                     TOP_K: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
                     BK: tl.constexpr, EVEN: tl.constexpr, PREC: tl.constexpr,
                     UPCAST: tl.constexpr):  # fmt: skip
    n_tiles = tl.cdiv(IM, BN)
    blk = tl.program_id(0) // n_tiles
    expert = tl.load(block_expert_ptr + blk).to(tl.int64)
    if expert >= E:  # one of the spare blocks of the upper-bound grid
        return
    pair = tl.load(pair_ptr + blk * BM + tl.arange(0, BM))
    valid = pair < pairs
    token = tl.where(valid, pair // TOP_K, 0).to(tl.int64)
    n = (tl.program_id(0) % n_tiles) * BN + tl.arange(0, BN)
    k = tl.arange(0, BK)
    x = x_ptr + token[:, None] * x_st + k[None, :]
    w_gate = w_ptr + expert * 2 * IM * H + n.to(tl.int64)[None, :] * H + k[:, None]  # [BK, BN]
    w_up = w_gate + IM * H
    n_ok = (n < IM)[None, :]
    acc_g = tl.zeros((BM, BN), dtype=tl.float32)
    acc_u = tl.zeros((BM, BN), dtype=tl.float32)
    for k0 in range(0, H, BK):
        if EVEN:
            xa = tl.load(x + k0)
            wg = tl.load(w_gate + k0)
            wu = tl.load(w_up + k0)
        else:
            k_ok = k0 + k < H
            xa = tl.load(x + k0, mask=k_ok[None, :], other=0.0)
            wg = tl.load(w_gate + k0, mask=k_ok[:, None] & n_ok, other=0.0)
            wu = tl.load(w_up + k0, mask=k_ok[:, None] & n_ok, other=0.0)
        if UPCAST:
            xa, wg, wu = xa.to(tl.float32), wg.to(tl.float32), wu.to(tl.float32)
        acc_g = tl.dot(xa, wg, acc_g, input_precision=PREC)
        acc_u = tl.dot(xa, wu, acc_u, input_precision=PREC)
    y = swiglu(acc_g, acc_u, act_ptr.dtype.element_ty)
    rows = blk.to(tl.int64) * BM + tl.arange(0, BM)  # act stays in sorted order
    tl.store(act_ptr + rows[:, None] * IM + n[None, :], y, mask=valid[:, None] & n_ok)


@triton.jit
def down_sorted_kernel(act_ptr, w_ptr, pair_ptr, block_expert_ptr, rw_ptr, y_ptr, pairs, E, H,
                       IM, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                       EVEN: tl.constexpr, PREC: tl.constexpr, UPCAST: tl.constexpr):  # fmt: skip
    n_tiles = tl.cdiv(H, BN)
    blk = tl.program_id(0) // n_tiles
    expert = tl.load(block_expert_ptr + blk).to(tl.int64)
    if expert >= E:
        return
    pair = tl.load(pair_ptr + blk * BM + tl.arange(0, BM))
    valid = pair < pairs
    pair64 = tl.where(valid, pair, 0).to(tl.int64)
    rows = blk.to(tl.int64) * BM + tl.arange(0, BM)  # act and y in sorted order: no gathers
    n = (tl.program_id(0) % n_tiles) * BN + tl.arange(0, BN)
    k = tl.arange(0, BK)
    a = act_ptr + rows[:, None] * IM + k[None, :]
    w = w_ptr + expert * H * IM + n.to(tl.int64)[None, :] * IM + k[:, None]  # [BK, BN]
    n_ok = (n < H)[None, :]
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for k0 in range(0, IM, BK):
        if EVEN:
            aa = tl.load(a + k0)
            ww = tl.load(w + k0)
        else:
            k_ok = k0 + k < IM
            aa = tl.load(a + k0, mask=k_ok[None, :], other=0.0)
            ww = tl.load(w + k0, mask=k_ok[:, None] & n_ok, other=0.0)
        if UPCAST:
            aa, ww = aa.to(tl.float32), ww.to(tl.float32)
        acc = tl.dot(aa, ww, acc, input_precision=PREC)
    act = y_ptr.dtype.element_ty
    rw = tl.load(rw_ptr + pair64).to(tl.float32)
    y = acc.to(act).to(tl.float32) * rw[:, None]
    tl.store(y_ptr + rows[:, None] * H + n[None, :], y.to(act), mask=valid[:, None] & n_ok)


@triton.jit
def sum_slots_kernel(y_ptr, row_of_pair_ptr, out_ptr, H, TOP_K: tl.constexpr,
                     BLOCK: tl.constexpr):  # fmt: skip
    t = tl.program_id(0).to(tl.int64)
    d = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    m = d < H
    total = tl.zeros((BLOCK,), dtype=tl.float32)
    for j in tl.static_range(TOP_K):
        row = tl.load(row_of_pair_ptr + t * TOP_K + j).to(tl.int64)
        total += tl.load(y_ptr + row * H + d, mask=m, other=0.0).to(tl.float32)
    tl.store(out_ptr + t * H + d, total.to(out_ptr.dtype.element_ty), mask=m)


def sorted_layout(ids: Tensor, num_experts: int, block_m: int) -> tuple[Tensor, Tensor, Tensor]:
    """Pairs sorted by expert, padded per expert to whole blocks of ``block_m`` rows.

    Returns ``(pair_of_row [blocks * block_m]``, ``block_expert [blocks]``,
    ``row_of_pair [pairs])``: padding rows hold the sentinel ``pairs``; spare blocks of the
    (upper-bound) grid hold expert ``num_experts``. Pair ``p`` is token ``p // k``, slot
    ``p % k``. No host sync (``bincount`` would read the maximum id back).
    """
    flat = ids.reshape(-1).to(torch.int32)  # 32-bit keys: half the radix-sort passes
    pairs = flat.numel()
    device = flat.device
    sorted_experts, order = torch.sort(flat, stable=True)
    counts = torch.zeros(num_experts, dtype=torch.int64, device=device)
    counts.scatter_add_(0, flat.long(), torch.ones(pairs, dtype=torch.int64, device=device))
    blocks = (counts + block_m - 1) // block_m
    block_end = torch.cumsum(blocks, 0)
    # rank of a sorted pair inside its expert = its sorted index - the expert's first index
    row_shift = (block_end - blocks) * block_m - (torch.cumsum(counts, 0) - counts)
    max_blocks = triton.cdiv(pairs, block_m) + min(num_experts, pairs)
    pair_of_row = torch.full((max_blocks * block_m,), pairs, dtype=torch.int32, device=device)
    rows = torch.arange(pairs, device=device) + row_shift[sorted_experts.long()]
    pair_of_row[rows] = order.to(torch.int32)
    row_of_pair = torch.empty(pairs, dtype=torch.int32, device=device)
    row_of_pair[order] = rows.to(torch.int32)
    block_ids = torch.arange(max_blocks, device=device)
    block_expert = torch.searchsorted(block_end, block_ids, right=True).to(torch.int32)
    return pair_of_row, block_expert, row_of_pair
