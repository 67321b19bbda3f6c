"""MoE experts for many tokens (prefill): grouped GEMMs over token-sorted blocks.

The (token, slot) pairs are sorted by expert and padded to blocks of ``BM`` rows of one expert
each, the last block of an expert a smaller tail block where its remainder fits one
(`moe_layout.sorted_layout`; both sizes in one launch, the tile shape picked per block); a
program multiplies one block by a ``BN``-wide tile of that expert's weights with tensor-core
dots, so every expert is read once per block.

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

import triton
import triton.language as tl

from tokenspeed.kernels.triton.moe_gemv import swiglu


@triton.jit
def _up_tile(x_ptr, x_st, w_ptr, pair_ptr, act_ptr, expert, start, pairs, H, IM,
             TOP_K: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
             EVEN: tl.constexpr, PREC: tl.constexpr, UPCAST: tl.constexpr):  # fmt: skip
    rows = start + tl.arange(0, BM)  # act stays in sorted order
    pair = tl.load(pair_ptr + rows)
    valid = pair < pairs
    token = tl.where(valid, pair // TOP_K, 0).to(tl.int64)
    n_tiles = tl.cdiv(IM, BN)
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
    tl.store(act_ptr + rows[:, None] * IM + n[None, :], y, mask=valid[:, None] & n_ok)


# Length arguments are not specialised: see common.NO_RECOMPILE.
@triton.jit(do_not_specialize=["pairs"])
def up_sorted_kernel(x_ptr, x_st, w_ptr, pair_ptr, block_expert_ptr, block_start_ptr,
                     block_tail_ptr, act_ptr, pairs, E, H, IM, TOP_K: tl.constexpr,
                     BM: tl.constexpr, TAIL_M: tl.constexpr, BN: tl.constexpr,
                     BK: tl.constexpr, EVEN: tl.constexpr, PREC: tl.constexpr,
                     UPCAST: tl.constexpr):  # fmt: skip
    blk = tl.program_id(0) // tl.cdiv(IM, BN)
    expert = tl.load(block_expert_ptr + blk).to(tl.int64)
    if expert >= E:  # one of the spare blocks of the upper-bound grid
        return
    start = tl.load(block_start_ptr + blk).to(tl.int64)
    if TAIL_M > 0:  # compile-time: without tail blocks only the BM tile is built
        if tl.load(block_tail_ptr + blk) != 0:
            _up_tile(x_ptr, x_st, w_ptr, pair_ptr, act_ptr, expert, start, pairs, H, IM, TOP_K,
                     TAIL_M, BN, BK, EVEN, PREC, UPCAST)  # fmt: skip
        else:
            _up_tile(x_ptr, x_st, w_ptr, pair_ptr, act_ptr, expert, start, pairs, H, IM, TOP_K,
                     BM, BN, BK, EVEN, PREC, UPCAST)  # fmt: skip
    else:
        _up_tile(x_ptr, x_st, w_ptr, pair_ptr, act_ptr, expert, start, pairs, H, IM, TOP_K,
                 BM, BN, BK, EVEN, PREC, UPCAST)  # fmt: skip


@triton.jit
def _down_tile(act_ptr, w_ptr, pair_ptr, rw_ptr, y_ptr, expert, start, pairs, H, IM,
               BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, EVEN: tl.constexpr,
               PREC: tl.constexpr, UPCAST: tl.constexpr):  # fmt: skip
    rows = start + tl.arange(0, BM)  # act and y in sorted order: no gathers
    pair = tl.load(pair_ptr + rows)
    valid = pair < pairs
    pair64 = tl.where(valid, pair, 0).to(tl.int64)
    n_tiles = tl.cdiv(H, BN)
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


# Length arguments are not specialised: see common.NO_RECOMPILE.
@triton.jit(do_not_specialize=["pairs"])
def down_sorted_kernel(act_ptr, w_ptr, pair_ptr, block_expert_ptr, block_start_ptr,
                       block_tail_ptr, rw_ptr, y_ptr, pairs, E, H, IM, BM: tl.constexpr,
                       TAIL_M: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                       EVEN: tl.constexpr, PREC: tl.constexpr, UPCAST: tl.constexpr):  # fmt: skip
    blk = tl.program_id(0) // tl.cdiv(H, BN)
    expert = tl.load(block_expert_ptr + blk).to(tl.int64)
    if expert >= E:
        return
    start = tl.load(block_start_ptr + blk).to(tl.int64)
    if TAIL_M > 0:  # compile-time: without tail blocks only the BM tile is built
        if tl.load(block_tail_ptr + blk) != 0:
            _down_tile(act_ptr, w_ptr, pair_ptr, rw_ptr, y_ptr, expert, start, pairs, H, IM, TAIL_M,
                       BN, BK, EVEN, PREC, UPCAST)  # fmt: skip
        else:
            _down_tile(act_ptr, w_ptr, pair_ptr, rw_ptr, y_ptr, expert, start, pairs, H, IM, BM, BN,
                       BK, EVEN, PREC, UPCAST)  # fmt: skip
    else:
        _down_tile(act_ptr, w_ptr, pair_ptr, rw_ptr, y_ptr, expert, start, pairs, H, IM, BM, BN,
                   BK, EVEN, PREC, UPCAST)  # fmt: skip


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
