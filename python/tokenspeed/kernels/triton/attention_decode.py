"""Paged decode attention with split-K (flash-decoding) in Triton.

One new token per sequence (its key/value already written at position ``prefix_lens[b]``).
A program owns (sequence, KV head, split): the group's query heads are the rows of one tile,
so each K/V page is read once for the whole group, and a long context is cut into splits that
run in parallel; a second kernel merges the splits' partial outputs by their log-sum-exp (and
applies the optional sigmoid output gate in its epilogue).
The launch shape (``NSPLIT``, the most splits a sequence may use) depends only on shapes, never
on the data, so the launch needs no host sync and can be captured in a CUDA graph. Where the
splits fall is decided inside the kernel from the sequence's real length: the page table is as
wide as the longest context the server allows (256k keys), so boundaries derived from its width
would put a 1k-token context in one or two serial splits; instead a sequence of ``kv_len`` keys
uses ``min(NSPLIT, cdiv(kv_len, MIN_KEYS_PER_SPLIT))`` splits of equal size, and the programs of
the other splits store only ``lse = -inf``, which the merge skips.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from tokenspeed.kernels.triton.common import dot_precision, next_pow2, pdl_launch, pdl_supported

TARGET_PROGRAMS = 264  # ~2 waves over an H100's / H200's 132 SMs
# Shortest split: below this a program's fixed cost (q load, partial store, merge read)
# outweighs the keys it reads. One 64-key tile at head_dim <= 128.
MIN_KEYS_PER_SPLIT = 64


# Length arguments are not specialised: see common.NO_RECOMPILE.
@triton.jit(do_not_specialize=["pt_s", "NSPLIT", "MIN_KEYS"])
def _decode_split_kernel(
    q_ptr, q_st, q_sh, kc_ptr, vc_ptr, pt_ptr, pt_s, prefix_ptr, part_o_ptr, part_lse_ptr,
    NH, NKV, G, D, PAGE, NSPLIT, MIN_KEYS, scale_log2,
    BG: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr, GDC: tl.constexpr = False,
    PREC: tl.constexpr = "tf32", TILE_IN_PAGE: tl.constexpr = False,
):  # fmt: skip
    if GDC:  # PDL: nothing here is stable data, so wait first (common.PDL)
        tl.extra.cuda.gdc_wait()
        tl.extra.cuda.gdc_launch_dependents()
    b = tl.program_id(0)
    kvh = tl.program_id(1)
    split = tl.program_id(2)
    g = tl.arange(0, BG)
    d = tl.arange(0, BD)
    head = kvh * G + g
    g_ok = g < G
    d_ok = d < D
    part = (b.to(tl.int64) * NH + head) * NSPLIT + split
    kv_len = tl.load(prefix_ptr + b) + 1
    # This sequence's splits: as many as its length gives MIN_KEYS each (at most NSPLIT), of
    # equal size rounded up to whole tiles; a split past the last key is inactive.
    n_split = tl.minimum(NSPLIT, tl.cdiv(kv_len, MIN_KEYS))
    keys_per_split = tl.cdiv(tl.cdiv(kv_len, n_split), BN) * BN
    lo = split * keys_per_split
    hi = tl.minimum(lo + keys_per_split, kv_len)
    # Top-level loop (an inactive split runs it zero times): a loop under `if` lost Triton's
    # software pipelining, 72% -> 62% of HBM at batch 8, 32k (H200, 2026-12-02).
    q = tl.load(q_ptr + b.to(tl.int64) * q_st + head[:, None] * q_sh + d[None, :],
                mask=g_ok[:, None] & d_ok[None, :], other=0.0)  # fmt: skip
    acc = tl.zeros((BG, BD), dtype=tl.float32)
    m_i = tl.full((BG,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BG,), dtype=tl.float32)
    pt_row = pt_ptr + b.to(tl.int64) * pt_s
    # TILE_IN_PAGE (BN divides the page size, and tiles start at multiples of BN): a tile's
    # keys share one page, whose id is loaded an iteration ahead, so the K/V loads never wait
    # on a page-table load of their own iteration (H200, batch 1, 128k: 72% -> 78% of HBM).
    next_page = tl.load(pt_row + lo // PAGE, mask=lo < hi, other=0)
    for j0 in range(lo, hi, BN):
        j = j0 + tl.arange(0, BN)
        j_ok = j < hi
        if TILE_IN_PAGE:
            page = next_page.to(tl.int64)
            next_page = tl.load(pt_row + tl.minimum(j0 + BN, hi - 1) // PAGE)
            kv_row = ((page * PAGE + j % PAGE) * NKV + kvh) * D
        else:
            pages = tl.load(pt_row + j // PAGE, mask=j_ok, other=0)
            kv_row = ((pages.to(tl.int64) * PAGE + j % PAGE) * NKV + kvh) * D
        kv_mask = j_ok[:, None] & d_ok[None, :]
        k = tl.load(kc_ptr + kv_row[:, None] + d[None, :], mask=kv_mask, other=0.0)
        v = tl.load(vc_ptr + kv_row[:, None] + d[None, :], mask=kv_mask, other=0.0)
        scores = tl.dot(q, tl.trans(k.to(q.dtype)), input_precision=PREC) * scale_log2
        scores = tl.where(j_ok[None, :], scores, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(scores, axis=1))
        p = tl.exp2(scores - m_new[:, None])
        alpha = tl.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p.to(q.dtype), v.to(q.dtype), input_precision=PREC)
        m_i = m_new
    # An inactive split keeps l_i = 0: lse = -inf and no o store (the merge reads no o of a
    # split whose lse is -inf); every active split holds a key, so l_i > 0 on its real rows.
    l_safe = tl.where(l_i > 0.0, l_i, 1.0)
    lse = tl.where(l_i > 0.0, m_i + tl.log2(l_safe), float("-inf"))
    o = acc / l_safe[:, None]
    active = (g * 0 + lo) < hi  # vector form (interpreter)
    tl.store(part_o_ptr + part[:, None] * D + d[None, :], o,
             mask=(g_ok & active)[:, None] & d_ok[None, :])  # fmt: skip
    tl.store(part_lse_ptr + part, lse, mask=g_ok)


# Length arguments are not specialised: see common.NO_RECOMPILE.
@triton.jit(do_not_specialize=["NSPLIT"])
def _decode_merge_kernel(part_o_ptr, part_lse_ptr, out_ptr, gate_ptr, g_st, g_sh, NH, D, NSPLIT,
                         HAS_GATE: tl.constexpr, BS: tl.constexpr, BD: tl.constexpr,
                         CHUNK: tl.constexpr, GDC: tl.constexpr = False):  # fmt: skip
    if GDC:  # PDL: nothing here is stable data, so wait first (common.PDL)
        tl.extra.cuda.gdc_wait()
        tl.extra.cuda.gdc_launch_dependents()
    bh = tl.program_id(0).to(tl.int64)  # b * NH + head
    s = tl.arange(0, BS)
    d = tl.arange(0, BD)
    d_ok = d < D
    lse = tl.load(part_lse_ptr + bh * NSPLIT + s, mask=s < NSPLIT, other=float("-inf"))
    used = lse > float("-inf")  # inactive splits never stored o: their memory is garbage
    m = tl.max(lse, axis=0)
    den = tl.sum(tl.where(used, tl.exp2(lse - m), 0.0), axis=0)
    n_used = tl.max(tl.where(used, s + 1, 0), axis=0)
    # Partial outputs CHUNK splits at a time, only as far as the last active split: a whole
    # [BS, BD] tile (BS up to 256) would not fit in registers.
    acc = tl.zeros((BD,), dtype=tl.float32)
    for c0 in range(0, n_used, CHUNK):
        c = c0 + tl.arange(0, CHUNK)
        lse_c = tl.load(part_lse_ptr + bh * NSPLIT + c, mask=c < NSPLIT, other=float("-inf"))
        used_c = lse_c > float("-inf")
        o_c = tl.load(part_o_ptr + (bh * NSPLIT + c)[:, None] * D + d[None, :],
                      mask=used_c[:, None] & d_ok[None, :], other=0.0)  # fmt: skip
        acc += tl.sum(o_c * tl.where(used_c, tl.exp2(lse_c - m), 0.0)[:, None], axis=0)
    o = acc / den
    out = o.to(out_ptr.dtype.element_ty)
    if HAS_GATE:
        # The reference's rounding: o and sigmoid(gate) each in the activation dtype, their
        # product rounded once.
        act = out_ptr.dtype.element_ty
        gate = tl.load(gate_ptr + (bh // NH) * g_st + (bh % NH) * g_sh + d, mask=d_ok, other=0.0)
        sig = tl.sigmoid(gate.to(tl.float32)).to(act).to(tl.float32)
        out = (out.to(tl.float32) * sig).to(act)
    tl.store(out_ptr + bh * D + d, out, mask=d_ok)


def num_splits(batch: int, num_kv_heads: int, max_keys: int) -> int:
    """The most splits a sequence may use: enough programs to fill the GPU, but no more than a
    full page table could give MIN_KEYS_PER_SPLIT keys each (the kernel uses fewer for
    shorter sequences)."""
    want = triton.cdiv(TARGET_PROGRAMS, max(batch * num_kv_heads, 1))
    return max(1, min(want, triton.cdiv(max_keys, MIN_KEYS_PER_SPLIT)))


def paged_decode(
    q: Tensor,
    k_cache: Tensor,
    v_cache: Tensor,
    page_table: Tensor,
    prefix_lens: Tensor,
    scale: float,
    gate: Tensor | None = None,
    splits: int | None = None,
    block_n: int | None = None,
    min_keys: int | None = None,
) -> Tensor:
    """``q`` ``[B, nh, hd]``: one new token per sequence at position ``prefix_lens[b]``;
    ``gate`` ``[B, nh, hd]`` (unit stride on hd): the output is ``o * sigmoid(gate)``.
    ``splits`` (the most splits per sequence), ``block_n`` and ``min_keys`` (keys per split
    at least) override the shape-based choices (tests, tuning)."""
    batch, nh, hd = q.shape
    _, page_size, nkv, _ = k_cache.shape
    group = nh // nkv
    max_keys = page_table.shape[1] * page_size
    nsplit = splits or num_splits(batch, nkv, max_keys)
    bn = block_n or (64 if hd <= 128 else 32)
    part_o = torch.empty((batch, nh, nsplit, hd), dtype=torch.float32, device=q.device)
    part_lse = torch.empty((batch, nh, nsplit), dtype=torch.float32, device=q.device)
    out = torch.empty((batch, nh, hd), dtype=q.dtype, device=q.device)
    if batch == 0:
        return out
    if gate is not None and (gate.shape != q.shape or gate.stride(-1) != 1):
        raise ValueError(f"gate {tuple(gate.shape)} needs q's shape and a unit stride on hd")
    bd = next_pow2(hd, 16)
    gdc = pdl_supported(q)
    _decode_split_kernel[(batch, nkv, nsplit)](
        q, q.stride(0), q.stride(1), k_cache, v_cache, page_table, page_table.stride(0),
        prefix_lens, part_o, part_lse, nh, nkv, group, hd, page_size, nsplit,
        min_keys or MIN_KEYS_PER_SPLIT, scale * 1.4426950408889634,
        BG=next_pow2(group, 16), BN=bn, BD=bd, GDC=gdc, PREC=dot_precision(q),
        TILE_IN_PAGE=page_size % bn == 0, num_warps=4,
        **pdl_launch(gdc),
    )  # fmt: skip
    g = q if gate is None else gate  # a dummy (not out: the interpreter copies args back)
    _decode_merge_kernel[(batch * nh,)](
        part_o, part_lse, out, g, g.stride(0), g.stride(1), nh, hd, nsplit,
        HAS_GATE=gate is not None, BS=next_pow2(nsplit), BD=bd, CHUNK=16, GDC=gdc,
        num_warps=4, **pdl_launch(gdc),
    )  # fmt: skip
    return out
