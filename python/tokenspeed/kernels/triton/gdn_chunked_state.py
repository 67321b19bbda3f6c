"""GDN chunked prefill, steps 2 and 3 of 4: the state pass over chunks, then every output.

``state_kernel``: one program per (sequence, value head, block of BV value columns) holds the
fp32 state tile ``S`` ``[dk, BV]`` in registers and walks the sequence's chunks in order:
stores ``S`` as the chunk's entry state ``h_c`` (``DT``), ``Vn = U - W S`` (stored), then
``S = e^{γ_last} S + Kᵀ (Vn ⊙ e^{γ_last - γ})``. Only two dependent dots per chunk are on the
sequential path; the loads of the next chunk do not depend on ``S`` and are pipelined. k (and
q below) come normalised from `gdn_chunked_solve` and ``γ_last`` is one scalar load, so the loop
has no row reductions.
The state comes from the sequence's slot (or zero), goes back to it, and is copied to the
checkpoint slot before the checkpoint chunk (chunks are cut at checkpoint offsets).

``output_kernel``: one program per (chunk, value head, value block), all in parallel:
``O = (Q h_c) ⊙ e^γ + (Q Kᵀ ⊙ Γ ⊙ causal) Vn``.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def state_kernel(
    kn_ptr, w_ptr, u_ptr, vn_ptr, h_ptr, gamma_ptr,
    chunk_start_ptr, chunk_len_ptr, first_chunk_ptr, num_chunks_ptr, ckpt_chunk_ptr,
    state_ptr, slot_ptr, init_ptr, ckpt_slot_ptr,
    HV, HK, R, DK, DV,
    BC: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, DT: tl.constexpr, PREC: tl.constexpr,
    KT: tl.constexpr,
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
    ck_ptr = state_ptr + (tl.maximum(ck_slot, 0) * HV + hv) * DK * DV + tile
    has_init = tl.load(init_ptr + b).to(tl.int32)
    init_mask = smask & ((kk * 0 + has_init) != 0)[:, None]  # never read a fresh slot
    s = tl.load(state_ptr + (slot * HV + hv) * DK * DV + tile, mask=init_mask, other=0.0)
    first = tl.load(first_chunk_ptr + b)
    n = tl.load(num_chunks_ptr + b)
    for c in range(0, n):
        # Predicated rather than branched: a store under `if` stops the loop's pipelining.
        tl.store(ck_ptr, s, mask=ck_mask & ((kk * 0 + c) == ck_chunk)[:, None])
        gc = (first + c).to(tl.int64)
        tl.store(h_ptr + (gc * HV + hv) * DK * DV + tile, s.to(h_ptr.dtype.element_ty),
                 mask=smask)  # fmt: skip
        start = tl.load(chunk_start_ptr + gc)
        length = tl.load(chunk_len_ptr + gc)
        valid = i < length
        tok = (start + i).to(tl.int64)
        row = tok * HV + hv
        kmask = valid[:, None] & (kk < DK)[None, :]
        vmask = valid[:, None] & (vv < DV)[None, :]
        w = tl.load(w_ptr + row[:, None] * DK + kk[None, :], mask=kmask, other=0.0)
        u = tl.load(u_ptr + row[:, None] * DV + vv[None, :], mask=vmask, other=0.0)
        gamma = tl.load(gamma_ptr + row, mask=valid, other=0.0)
        if KT:  # Kᵀ loaded as [dk, chunk] (as fla does) instead of transposed in registers
            kt = tl.load(kn_ptr + tok[None, :] * (HK * DK) + hk * DK + kk[:, None],
                         mask=tl.trans(kmask), other=0.0)  # fmt: skip
        else:
            kt = tl.trans(tl.load(kn_ptr + tok[:, None] * (HK * DK) + hk * DK + kk[None, :],
                                  mask=kmask, other=0.0))  # fmt: skip
        gamma_last = tl.load(gamma_ptr + (start + length - 1).to(tl.int64) * HV + hv)
        v_new = u.to(tl.float32) - tl.dot(w.to(DT), s.to(DT), input_precision=PREC)
        tl.store(vn_ptr + row[:, None] * DV + vv[None, :], v_new.to(vn_ptr.dtype.element_ty),
                 mask=vmask)  # fmt: skip
        v_dec = v_new * tl.where(valid, tl.exp(gamma_last - gamma), 0.0)[:, None]
        s = s * tl.exp(gamma_last)
        s = tl.dot(kt.to(DT), v_dec.to(DT), s, input_precision=PREC)
    tl.store(ck_ptr, s, mask=ck_mask & ((kk * 0 + n) == ck_chunk)[:, None])
    tl.store(state_ptr + (slot * HV + hv) * DK * DV + tile, s, mask=smask)


@triton.jit
def output_kernel(
    qn_ptr, kn_ptr, vn_ptr, h_ptr, gamma_ptr, chunk_start_ptr, chunk_len_ptr, out_ptr,
    HV, HK, R, DK: tl.constexpr, DV: tl.constexpr,  # constexpr: the dk/dv masks fold away
    BC: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, DT: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    c = tl.program_id(0).to(tl.int64)
    hv = tl.program_id(1)
    hk = hv // R
    kk = tl.arange(0, BK)
    vv = tl.program_id(2) * BV + tl.arange(0, BV)
    i = tl.arange(0, BC)
    start = tl.load(chunk_start_ptr + c)
    length = tl.load(chunk_len_ptr + c)
    valid = i < length
    tok = (start + i).to(tl.int64)
    row = tok * HV + hv
    kmask = valid[:, None] & (kk < DK)[None, :]
    n_off = tok[:, None] * (HK * DK) + hk * DK + kk[None, :]
    q = tl.load(qn_ptr + n_off, mask=kmask, other=0.0).to(DT)  # normalised and scaled
    k = tl.load(kn_ptr + n_off, mask=kmask, other=0.0).to(DT)
    gamma = tl.load(gamma_ptr + row, mask=valid, other=0.0)
    h = tl.load(h_ptr + (c * HV + hv) * DK * DV + kk[:, None] * DV + vv[None, :],
                mask=(kk < DK)[:, None] & (vv < DV)[None, :], other=0.0)  # fmt: skip
    vmask = valid[:, None] & (vv < DV)[None, :]
    v_new = tl.load(vn_ptr + row[:, None] * DV + vv[None, :], mask=vmask, other=0.0)
    causal = i[:, None] >= i[None, :]
    qk = tl.dot(q, tl.trans(k), input_precision=PREC)
    qk = tl.where(causal, qk * tl.exp(tl.where(causal, gamma[:, None] - gamma[None, :], 0.0)), 0.0)
    o = tl.dot(q, h.to(DT), input_precision=PREC) * tl.exp(gamma)[:, None]
    o = tl.dot(qk.to(DT), v_new.to(DT), o, input_precision=PREC)
    tl.store(out_ptr + row[:, None] * DV + vv[None, :], o.to(out_ptr.dtype.element_ty), mask=vmask)
