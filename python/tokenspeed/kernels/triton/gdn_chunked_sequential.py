"""GDN chunked prefill, the first (sequential) version, kept for comparison in the benchmark.

Semantics and math: `reference/gdn.py::gdn_chunked`, spec §6.2. Two launches:

1. ``_wy_kernel``, one program per (chunk, value head), all chunks in parallel: in-chunk
   log-decay cumsum ``γ``, ``A = strict_lower(diag(β) K Kᵀ ⊙ Γ)``, ``T = (I + A)^-1`` by
   forward substitution, then ``W = T diag(β)(K ⊙ e^γ)`` and ``U = T diag(β) V`` (fp32).
2. ``_state_kernel``, one program per (sequence, value head, block of value columns), chunks
   in order: ``Vn = U - W S``, ``O = (Q ⊙ e^γ) S + (Q Kᵀ ⊙ Γ) Vn``,
   ``S = e^{γ_last} S + (K ⊙ e^{γ_last-γ})ᵀ Vn``; the state is read from and written to slots.

Chunks never straddle a sequence end or a checkpoint offset: a sequence with a checkpoint is
cut there, so the state at the cut exists and is stored to the checkpoint slot. The chunk
table is built on the host (one sync on ``cu_seqlens``, like every prefill step's planning).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from tokenspeed.kernels.triton.common import int_tensor, next_pow2
from tokenspeed.kernels.triton.gdn_recurrent import gdn_gate_values


@triton.jit
def _load_qk(ptr, s_t, s_h, tok, hk, valid, kk, DK, scale):
    """L2-normalised (and scaled) q or k rows of one chunk, fp32 ``[CHUNK, BK]``."""
    m = valid[:, None] & (kk < DK)[None, :]
    x = tl.load(ptr + tok.to(tl.int64)[:, None] * s_t + hk * s_h + kk[None, :], mask=m, other=0.0)
    x = x.to(tl.float32)
    return x * (tl.rsqrt(tl.sum(x * x, axis=1) + 1e-6) * scale)[:, None]


@triton.jit
def _wy_kernel(
    k_ptr, k_st, k_sh, v_ptr, v_st, v_sh, a_ptr, a_st, b_ptr, b_st, A_log_ptr, dt_bias_ptr,
    chunk_start_ptr, chunk_len_ptr, w_ptr, u_ptr, gamma_ptr,
    HV, R, DK, DV,
    BC: tl.constexpr, BK: tl.constexpr, BVF: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    ci = tl.program_id(0)
    hv = tl.program_id(1)
    start = tl.load(chunk_start_ptr + ci)
    length = tl.load(chunk_len_ptr + ci)
    i = tl.arange(0, BC)
    valid = i < length
    tok = start + i
    kk = tl.arange(0, BK)
    vv = tl.arange(0, BVF)
    k = _load_qk(k_ptr, k_st, k_sh, tok, hv // R, valid, kk, DK, 1.0)
    a = tl.load(a_ptr + tok.to(tl.int64) * a_st + hv, mask=valid, other=0.0)
    b = tl.load(b_ptr + tok.to(tl.int64) * b_st + hv, mask=valid, other=0.0)
    g, beta = gdn_gate_values(a, b, tl.load(A_log_ptr + hv), tl.load(dt_bias_ptr + hv))
    g = tl.where(valid, g, 0.0)
    beta = tl.where(valid, beta, 0.0)
    gamma = tl.cumsum(g, axis=0)

    # A = strict_lower(diag(β) K Kᵀ ⊙ Γ), Γ_ij = exp(γ_i - γ_j)
    lower = i[:, None] > i[None, :]
    diff = tl.where(lower, gamma[:, None] - gamma[None, :], 0.0)
    kkt = tl.dot(k, tl.trans(k), input_precision=PREC)
    A = tl.where(lower, beta[:, None] * kkt * tl.exp(diff), 0.0)
    # T = (I + A)^-1 by forward substitution: row i = e_i - A[i, :] T (rows < i are final).
    t_inv = tl.where(i[:, None] == i[None, :], 1.0, 0.0)
    for r in range(1, BC):
        a_row = tl.sum(tl.where(i[:, None] == r, A, 0.0), axis=0)  # A[r, :]
        new_row = tl.sum(a_row[:, None] * t_inv, axis=0)
        t_inv = tl.where(i[:, None] == r, t_inv - new_row[None, :], t_inv)

    kb = k * (beta * tl.exp(gamma))[:, None]
    w = tl.dot(t_inv, kb, input_precision=PREC)
    vmask = valid[:, None] & (vv < DV)[None, :]
    v = tl.load(v_ptr + tok.to(tl.int64)[:, None] * v_st + hv * v_sh + vv[None, :], mask=vmask,
                other=0.0).to(tl.float32)  # fmt: skip
    u = tl.dot(t_inv, v * beta[:, None], input_precision=PREC)
    row = tok.to(tl.int64) * HV + hv
    tl.store(w_ptr + row[:, None] * DK + kk[None, :], w, mask=valid[:, None] & (kk < DK)[None, :])
    tl.store(u_ptr + row[:, None] * DV + vv[None, :], u, mask=vmask)
    tl.store(gamma_ptr + row, gamma, mask=valid)


@triton.jit
def _state_kernel(
    q_ptr, q_st, q_sh, k_ptr, k_st, k_sh, w_ptr, u_ptr, gamma_ptr,
    chunk_start_ptr, chunk_len_ptr, first_chunk_ptr, num_chunks_ptr, ckpt_chunk_ptr,
    state_ptr, slot_ptr, init_ptr, ckpt_slot_ptr, out_ptr,
    HV, R, DK, DV, scale,
    BC: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    b = tl.program_id(0)
    hv = tl.program_id(1)
    hk = hv // R
    kk = tl.arange(0, BK)
    vv = tl.program_id(2) * BV + tl.arange(0, BV)
    i = tl.arange(0, BC)
    smask = (kk < DK)[:, None] & (vv < DV)[None, :]
    tile = kk[:, None] * DV + vv[None, :]
    slot = tl.load(slot_ptr + b).to(tl.int64)
    ck_slot = tl.load(ckpt_slot_ptr + b).to(tl.int64)
    ck_chunk = tl.load(ckpt_chunk_ptr + b)
    ck_mask = smask & ((kk * 0 + ck_slot) >= 0)[:, None]  # vector mask (interpreter)
    has_init = tl.load(init_ptr + b).to(tl.int32)
    init_mask = smask & ((kk * 0 + has_init) != 0)[:, None]  # never read a fresh slot
    s = tl.load(state_ptr + (slot * HV + hv) * DK * DV + tile, mask=init_mask, other=0.0)
    first = tl.load(first_chunk_ptr + b)
    n = tl.load(num_chunks_ptr + b)
    causal = i[:, None] >= i[None, :]
    for c in range(0, n):
        if c == ck_chunk:
            tl.store(state_ptr + (ck_slot * HV + hv) * DK * DV + tile, s, mask=ck_mask)
        start = tl.load(chunk_start_ptr + first + c)
        length = tl.load(chunk_len_ptr + first + c)
        valid = i < length
        tok = start + i
        row = tok.to(tl.int64) * HV + hv
        q = _load_qk(q_ptr, q_st, q_sh, tok, hk, valid, kk, DK, scale)
        k = _load_qk(k_ptr, k_st, k_sh, tok, hk, valid, kk, DK, 1.0)
        kmask = valid[:, None] & (kk < DK)[None, :]
        vmask = valid[:, None] & (vv < DV)[None, :]
        w = tl.load(w_ptr + row[:, None] * DK + kk[None, :], mask=kmask, other=0.0)
        u = tl.load(u_ptr + row[:, None] * DV + vv[None, :], mask=vmask, other=0.0)
        gamma = tl.load(gamma_ptr + row, mask=valid, other=0.0)
        gamma_last = tl.sum(tl.where(i == length - 1, gamma, 0.0))
        v_new = u - tl.dot(w, s, input_precision=PREC)
        diff = tl.where(causal, gamma[:, None] - gamma[None, :], 0.0)
        qk = tl.where(causal, tl.dot(q, tl.trans(k), input_precision=PREC) * tl.exp(diff), 0.0)
        o = tl.dot(q * tl.exp(gamma)[:, None], s, input_precision=PREC)
        o += tl.dot(qk, v_new, input_precision=PREC)
        tl.store(out_ptr + row[:, None] * DV + vv[None, :], o.to(out_ptr.dtype.element_ty),
                 mask=vmask)  # fmt: skip
        k_decayed = k * tl.where(valid, tl.exp(gamma_last - gamma), 0.0)[:, None]
        s = s * tl.exp(gamma_last) + tl.dot(tl.trans(k_decayed), v_new, input_precision=PREC)
    if n == ck_chunk:
        tl.store(state_ptr + (ck_slot * HV + hv) * DK * DV + tile, s, mask=ck_mask)
    tl.store(state_ptr + (slot * HV + hv) * DK * DV + tile, s, mask=smask)


def run_sequential(
    q,
    k,
    v,
    a,
    b,
    A_log,
    dt_bias,
    state,
    slot_ids,
    has_initial_state,
    ck_slots: list[int],
    table: tuple,
    chunk: int,
) -> Tensor:
    """Both launches for a chunk table from ``gdn_chunked.chunk_table``."""
    starts, lengths, first, count, ckpt = table
    tokens, hk, dk = q.shape
    hv, dv = v.shape[1], v.shape[2]
    device = q.device
    out = torch.empty((tokens, hv, dv), dtype=q.dtype, device=device)
    w = torch.empty((tokens, hv, dk), dtype=torch.float32, device=device)
    u = torch.empty((tokens, hv, dv), dtype=torch.float32, device=device)
    gamma = torch.empty((tokens, hv), dtype=torch.float32, device=device)
    bk, bvf = next_pow2(dk, 16), next_pow2(dv, 16)
    prec = "ieee" if device.type != "cuda" else "tf32x3"
    if starts:
        _wy_kernel[(len(starts), hv)](
            k, k.stride(0), k.stride(1), v, v.stride(0), v.stride(1), a, a.stride(0),
            b, b.stride(0), A_log, dt_bias,
            int_tensor(starts, device), int_tensor(lengths, device), w, u, gamma,
            hv, hv // hk, dk, dv,
            BC=chunk, BK=bk, BVF=bvf, PREC=prec, num_warps=4,
        )  # fmt: skip
    bv = min(32, bvf)
    _state_kernel[(len(first), hv, triton.cdiv(dv, bv))](
        q, q.stride(0), q.stride(1), k, k.stride(0), k.stride(1), w, u, gamma,
        int_tensor(starts or [0], device), int_tensor(lengths or [0], device),
        int_tensor(first, device), int_tensor(count, device), int_tensor(ckpt, device),
        state, slot_ids, has_initial_state, int_tensor(ck_slots, device, torch.int64), out,
        hv, hv // hk, dk, dv, dk**-0.5,
        BC=chunk, BK=bk, BV=bv, PREC=prec, num_warps=8, num_stages=1,  # 3 stages overflow smem
    )  # fmt: skip
    return out
