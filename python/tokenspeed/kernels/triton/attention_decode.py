"""Paged decode attention with split-K (flash-decoding) in Triton.

One new token per sequence (its key/value already written at position ``prefix_lens[b]``).
A program owns (sequence, KV head, split): the group's query heads are the rows of one tile,
so each K/V page is read once for the whole group, and a long context is cut into splits that
run in parallel; a second kernel merges the splits' partial outputs by their log-sum-exp.
The split count depends only on shapes (batch, heads, page-table width), never on the data,
so the launch needs no host sync and can be captured in a CUDA graph.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from tokenspeed.kernels.triton.common import next_pow2

TARGET_PROGRAMS = 264  # ~2 waves over an H100's 132 SMs
MIN_KEYS_PER_SPLIT = 256


# Length arguments are not specialised: see common.NO_RECOMPILE.
@triton.jit(do_not_specialize=["pt_s", "KEYS_PER_SPLIT", "NSPLIT"])
def _decode_split_kernel(
    q_ptr, q_st, q_sh, kc_ptr, vc_ptr, pt_ptr, pt_s, prefix_ptr, part_o_ptr, part_lse_ptr,
    NH, NKV, G, D, PAGE, KEYS_PER_SPLIT, NSPLIT, scale_log2,
    BG: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr,
):  # fmt: skip
    b = tl.program_id(0)
    kvh = tl.program_id(1)
    split = tl.program_id(2)
    g = tl.arange(0, BG)
    d = tl.arange(0, BD)
    head = kvh * G + g
    g_ok = g < G
    d_ok = d < D
    q = tl.load(q_ptr + b.to(tl.int64) * q_st + head[:, None] * q_sh + d[None, :],
                mask=g_ok[:, None] & d_ok[None, :], other=0.0)  # fmt: skip
    kv_len = tl.load(prefix_ptr + b) + 1
    lo = split * KEYS_PER_SPLIT
    hi = tl.minimum(lo + KEYS_PER_SPLIT, kv_len)
    acc = tl.zeros((BG, BD), dtype=tl.float32)
    m_i = tl.full((BG,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BG,), dtype=tl.float32)
    for j0 in range(lo, hi, BN):
        j = j0 + tl.arange(0, BN)
        j_ok = j < hi
        page = tl.load(pt_ptr + b.to(tl.int64) * pt_s + j // PAGE, mask=j_ok, other=0)
        kv_row = ((page.to(tl.int64) * PAGE + j % PAGE) * NKV + kvh) * D
        kv_mask = j_ok[:, None] & d_ok[None, :]
        k = tl.load(kc_ptr + kv_row[:, None] + d[None, :], mask=kv_mask, other=0.0)
        v = tl.load(vc_ptr + kv_row[:, None] + d[None, :], mask=kv_mask, other=0.0)
        scores = tl.dot(q, tl.trans(k.to(q.dtype))) * scale_log2
        scores = tl.where(j_ok[None, :], scores, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(scores, axis=1))
        p = tl.exp2(scores - m_new[:, None])
        alpha = tl.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p.to(q.dtype), v.to(q.dtype))
        m_i = m_new
    # An empty split (past the context) leaves lse = -inf and contributes nothing.
    lse = tl.where(l_i > 0.0, m_i + tl.log2(tl.where(l_i > 0.0, l_i, 1.0)), float("-inf"))
    o = acc / tl.where(l_i > 0.0, l_i, 1.0)[:, None]
    part = (b.to(tl.int64) * NH + head) * NSPLIT + split
    tl.store(part_o_ptr + part[:, None] * D + d[None, :], o, mask=g_ok[:, None] & d_ok[None, :])
    tl.store(part_lse_ptr + part, lse, mask=g_ok)


# Length arguments are not specialised: see common.NO_RECOMPILE.
@triton.jit(do_not_specialize=["NSPLIT"])
def _decode_merge_kernel(part_o_ptr, part_lse_ptr, out_ptr, D, NSPLIT,
                         BS: tl.constexpr, BD: tl.constexpr):  # fmt: skip
    bh = tl.program_id(0).to(tl.int64)  # b * NH + head
    s = tl.arange(0, BS)
    d = tl.arange(0, BD)
    s_ok = s < NSPLIT
    lse = tl.load(part_lse_ptr + bh * NSPLIT + s, mask=s_ok, other=float("-inf"))
    weight = tl.exp2(lse - tl.max(lse, axis=0))
    o = tl.load(part_o_ptr + (bh * NSPLIT + s)[:, None] * D + d[None, :],
                mask=s_ok[:, None] & (d < D)[None, :], other=0.0)  # fmt: skip
    o = tl.sum(o * weight[:, None], axis=0) / tl.sum(weight, axis=0)
    tl.store(out_ptr + bh * D + d, o.to(out_ptr.dtype.element_ty), mask=d < D)


def num_splits(batch: int, num_kv_heads: int, max_keys: int) -> int:
    """Enough splits to fill the GPU, none shorter than MIN_KEYS_PER_SPLIT keys."""
    want = triton.cdiv(TARGET_PROGRAMS, max(batch * num_kv_heads, 1))
    return max(1, min(want, triton.cdiv(max_keys, MIN_KEYS_PER_SPLIT)))


def paged_decode(
    q: Tensor,
    k_cache: Tensor,
    v_cache: Tensor,
    page_table: Tensor,
    prefix_lens: Tensor,
    scale: float,
    splits: int | None = None,
    block_n: int | None = None,
) -> Tensor:
    """``q`` ``[B, nh, hd]``: one new token per sequence at position ``prefix_lens[b]``.
    ``splits`` and ``block_n`` override the shape-based choices (tests, tuning)."""
    batch, nh, hd = q.shape
    _, page_size, nkv, _ = k_cache.shape
    group = nh // nkv
    max_keys = page_table.shape[1] * page_size
    nsplit = splits or num_splits(batch, nkv, max_keys)
    bn = block_n or (64 if hd <= 128 else 32)
    keys_per_split = triton.cdiv(triton.cdiv(max_keys, nsplit), bn) * bn
    part_o = torch.empty((batch, nh, nsplit, hd), dtype=torch.float32, device=q.device)
    part_lse = torch.empty((batch, nh, nsplit), dtype=torch.float32, device=q.device)
    out = torch.empty((batch, nh, hd), dtype=q.dtype, device=q.device)
    if batch == 0:
        return out
    bd = next_pow2(hd, 16)
    _decode_split_kernel[(batch, nkv, nsplit)](
        q, q.stride(0), q.stride(1), k_cache, v_cache, page_table, page_table.stride(0),
        prefix_lens, part_o, part_lse, nh, nkv, group, hd, page_size, keys_per_split, nsplit,
        scale * 1.4426950408889634,
        BG=next_pow2(group, 16), BN=bn, BD=bd, num_warps=4,
    )  # fmt: skip
    _decode_merge_kernel[(batch * nh,)](
        part_o, part_lse, out, hd, nsplit, BS=next_pow2(nsplit), BD=bd, num_warps=4
    )
    return out
