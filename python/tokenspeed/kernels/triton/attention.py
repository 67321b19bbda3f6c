"""Paged causal GQA attention in Triton: KV-cache write and prefill over cached prefixes.

Semantics: `reference/attention.py`. The prefill kernel is flash-attention style (online
softmax in fp32) over a packed varlen batch; one program owns one block of a sequence's new
tokens *and all query heads of one KV head*: its rows are ``(token, head in group)`` pairs, so
every K/V tile loaded from the cache serves the whole group. Keys are gathered through the
page table one tile at a time. Batches where every sequence has exactly one new token go to
the split-K decode kernel (`attention_decode.py`).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from tokenspeed.kernels.host import host_list
from tokenspeed.kernels.triton.attention_decode import paged_decode
from tokenspeed.kernels.triton.common import check_device, dot_precision, int_tensor, next_pow2

# Prefill launch shape (benches/kernels.py sweeps it): rows per program (token x group head
# pairs), keys per tile (0 = by head_dim), warps (0 = by head_dim), pipeline stages.
PREFILL_CONFIG = {
    "block_m": 128,
    "block_n": 64,
    "num_warps": 8,
    "num_stages": 2,
}  # best of the H100 sweep


@triton.jit
def _write_kv_kernel(k_ptr, k_st, k_sh, v_ptr, v_st, v_sh, kc_ptr, vc_ptr, idx_ptr, NKV, D,
                     BD: tl.constexpr):  # fmt: skip
    t = tl.program_id(0)
    h = tl.program_id(1)
    d = tl.arange(0, BD)
    m = d < D
    dst = (tl.load(idx_ptr + t).to(tl.int64) * NKV + h) * D + d
    t64 = t.to(tl.int64)
    k = tl.load(k_ptr + t64 * k_st + h * k_sh + d, mask=m)
    v = tl.load(v_ptr + t64 * v_st + h * v_sh + d, mask=m)
    tl.store(kc_ptr + dst, k.to(kc_ptr.dtype.element_ty), mask=m)
    tl.store(vc_ptr + dst, v.to(vc_ptr.dtype.element_ty), mask=m)


def write_kv_cache(
    k: Tensor, v: Tensor, k_cache: Tensor, v_cache: Tensor, kv_indices: Tensor
) -> None:
    """See `reference.attention.write_kv_cache`."""
    tokens, nkv, hd = k.shape
    if k_cache.shape[2:] != (nkv, hd) or not (k_cache.is_contiguous() and v_cache.is_contiguous()):
        raise ValueError(f"KV cache {tuple(k_cache.shape)} does not hold [*, *, {nkv}, {hd}]")
    if k.stride(-1) != 1 or v.stride(-1) != 1:
        raise ValueError("k and v need a unit stride on head_dim")
    check_device(k, k_cache)
    if tokens:
        _write_kv_kernel[(tokens, nkv)](
            k, k.stride(0), k.stride(1), v, v.stride(0), v.stride(1), k_cache, v_cache,
            kv_indices, nkv, hd, BD=next_pow2(hd),
        )  # fmt: skip


# Length arguments are not specialised: see common.NO_RECOMPILE.
@triton.jit(do_not_specialize=["pt_s"])
def _prefill_kernel(
    q_ptr, q_st, q_sh, kc_ptr, vc_ptr, pt_ptr, pt_s, out_ptr, gate_ptr, g_st, g_sh,
    blk_seq_ptr, blk_tok_ptr, cu_ptr, prefix_ptr,
    NH, NKV, G, D, PAGE, TOK_PER_BLOCK, scale_log2,
    HAS_GATE: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr,
    PREC: tl.constexpr = "tf32",
):  # fmt: skip
    blk = tl.program_id(0)
    kvh = tl.program_id(1)
    b = tl.load(blk_seq_ptr + blk)
    tok0 = tl.load(blk_tok_ptr + blk)  # first new token (index within the sequence) of the block
    start = tl.load(cu_ptr + b)
    n_new = tl.load(cu_ptr + b + 1) - start
    prefix = tl.load(prefix_ptr + b)
    m = tl.arange(0, BM)
    local = tok0 + m // G
    head = kvh * G + m % G
    row_ok = (m < TOK_PER_BLOCK * G) & (local < n_new)
    d = tl.arange(0, BD)
    d_ok = d < D
    q_off = (start + local).to(tl.int64)[:, None] * q_st + head[:, None] * q_sh + d[None, :]
    q = tl.load(q_ptr + q_off, mask=row_ok[:, None] & d_ok[None, :], other=0.0)
    q_pos = prefix + local  # position of each row's token in the whole sequence

    acc = tl.zeros((BM, BD), dtype=tl.float32)
    m_i = tl.full((BM,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BM,), dtype=tl.float32)
    last_tok = tl.minimum(tok0 + TOK_PER_BLOCK, n_new)
    kv_end = prefix + last_tok  # keys this block can see
    for j0 in range(0, kv_end, BN):
        j = j0 + tl.arange(0, BN)
        j_ok = j < kv_end
        page = tl.load(pt_ptr + b.to(tl.int64) * pt_s + j // PAGE, mask=j_ok, other=0)
        kv_row = ((page.to(tl.int64) * PAGE + j % PAGE) * NKV + kvh) * D
        kv_mask = j_ok[:, None] & d_ok[None, :]
        k = tl.load(kc_ptr + kv_row[:, None] + d[None, :], mask=kv_mask, other=0.0)
        scores = tl.dot(q, tl.trans(k.to(q.dtype)), input_precision=PREC) * scale_log2
        visible = (j[None, :] <= q_pos[:, None]) & j_ok[None, :]
        scores = tl.where(visible, scores, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(scores, axis=1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # rows that see nothing yet
        p = tl.exp2(scores - m_safe[:, None])
        alpha = tl.exp2(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        v = tl.load(vc_ptr + kv_row[:, None] + d[None, :], mask=kv_mask, other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(q.dtype), v.to(q.dtype), input_precision=PREC)
        m_i = m_new
    o = acc / tl.where(l_i == 0.0, 1.0, l_i)[:, None]
    tok = (start + local).to(tl.int64)[:, None]
    o_mask = row_ok[:, None] & d_ok[None, :]
    out = o.to(out_ptr.dtype.element_ty)
    if HAS_GATE:  # the reference's rounding: o, sigmoid(gate), their product each rounded
        act = out_ptr.dtype.element_ty
        gate = tl.load(gate_ptr + tok * g_st + head[:, None] * g_sh + d[None, :], mask=o_mask)
        sig = tl.sigmoid(gate.to(tl.float32)).to(act).to(tl.float32)
        out = (out.to(tl.float32) * sig).to(act)
    tl.store(out_ptr + tok * (NH * D) + head[:, None] * D + d[None, :], out, mask=o_mask)


def paged_attention(
    q: Tensor,
    k_cache: Tensor,
    v_cache: Tensor,
    page_table: Tensor,
    cu_seqlens: Tensor,
    prefix_lens: Tensor,
    scale: float,
    gate: Tensor | None = None,
) -> Tensor:
    """See `reference.attention.paged_attention`. A batch with as many tokens as sequences is
    a decode batch (sequences are never empty) and takes the split-K kernel without a host
    sync; prefill plans its query blocks on the host. Both apply ``gate`` in their epilogue,
    reading the strided view directly."""
    tokens, nh, hd = q.shape
    _, page_size, nkv, _ = k_cache.shape
    if nh % nkv or k_cache.shape[3] != hd or q.stride(-1) != 1:
        raise ValueError(f"q {tuple(q.shape)} does not fit KV cache {tuple(k_cache.shape)}")
    if gate is not None and (gate.shape != q.shape or gate.stride(-1) != 1):
        raise ValueError(f"gate {tuple(gate.shape)} needs q's shape and a unit stride on hd")
    check_device(q, k_cache)
    num_seqs = page_table.shape[0]
    if tokens == num_seqs:
        return paged_decode(q, k_cache, v_cache, page_table, prefix_lens, scale, gate)
    group = nh // nkv
    cfg = PREFILL_CONFIG
    block_m = max(cfg["block_m"], next_pow2(group))  # rows are (token, head of the group) pairs
    tok_per_block = block_m // group
    bounds = host_list(cu_seqlens)
    blk_seq: list[int] = []
    blk_tok: list[int] = []
    for b in range(num_seqs):
        for t0 in range(0, bounds[b + 1] - bounds[b], tok_per_block):
            blk_seq.append(b)
            blk_tok.append(t0)
    out = torch.empty((tokens, nh, hd), dtype=q.dtype, device=q.device)
    if not blk_seq:
        return out
    bd = next_pow2(hd, 16)
    g = q if gate is None else gate  # a dummy (not out: the interpreter copies args back)
    _prefill_kernel[(len(blk_seq), nkv)](
        q, q.stride(0), q.stride(1), k_cache, v_cache, page_table, page_table.stride(0), out,
        g, g.stride(0), g.stride(1),
        int_tensor(blk_seq, q.device), int_tensor(blk_tok, q.device), cu_seqlens, prefix_lens,
        nh, nkv, group, hd, page_size, tok_per_block, scale * 1.4426950408889634,
        HAS_GATE=gate is not None, BM=block_m, BN=cfg["block_n"] or (64 if bd <= 128 else 32), BD=bd,
        PREC=dot_precision(q),
        num_warps=cfg["num_warps"] or (4 if bd <= 128 else 8), num_stages=cfg["num_stages"],
    )  # fmt: skip
    return out
