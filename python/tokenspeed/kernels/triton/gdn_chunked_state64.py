"""GDN chunked prefill, step 2 of 4, the "split64" layout of the state pass (CONFIG state_impl).

Same contract as `gdn_chunked_state.state_kernel` (entry states ``h_c``, ``Vn = U - W S``,
``S = e^{γ_last} S + Kᵀ (Vn ⊙ e^{γ_last - γ})``, initial state from the slot or zero, checkpoint
and final state to their slots), laid out the way flash-linear-attention's fwd_h kernel is:

* the fp32 state ``[dk, BV]`` is held as row halves ``S1`` (key rows 0-63) and ``S2`` (64-127):
  ``W S`` is two ``[chunk, 64] @ [64, BV]`` dots into one accumulator and the update two
  ``[64, chunk] @ [chunk, BV]`` dots, smaller register tiles and wgmma-sized shapes;
* ``Kᵀ`` is loaded as ``[64 key rows, chunk]`` by its addresses, never transposed in registers;
* DK, DV and the head counts are constexpr, so the key/value masks fold away at dk = 128.

dk <= 64 uses one half (HALF2 False); dk <= 128 two; the driver takes the tile kernel beyond.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def state64_kernel(
    kn_ptr, w_ptr, u_ptr, vn_ptr, h_ptr, gamma_ptr,
    cu_ptr, cut_ptr, n_before_cut_ptr, first_chunk_ptr, num_chunks_ptr, ckpt_chunk_ptr,
    state_ptr, slot_ptr, init_ptr, ckpt_slot_ptr,
    HV: tl.constexpr, HK: tl.constexpr, R: tl.constexpr, DK: tl.constexpr, DV: tl.constexpr,
    BC: tl.constexpr, BV: tl.constexpr, DT: tl.constexpr, PREC: tl.constexpr,
    HALF2: tl.constexpr,
):  # fmt: skip
    b = tl.program_id(0)
    hv = tl.program_id(1)
    hk = hv // R
    k1 = tl.arange(0, 64)
    k2 = 64 + k1
    vv = tl.program_id(2) * BV + tl.arange(0, BV)
    i = tl.arange(0, BC)
    vm = vv < DV
    m1 = (k1 < DK)[:, None] & vm[None, :]
    m2 = (k2 < DK)[:, None] & vm[None, :]
    t1 = k1[:, None] * DV + vv[None, :]  # offsets of the halves in a [DK, DV] state
    t2 = k2[:, None] * DV + vv[None, :]
    slot = tl.load(slot_ptr + b).to(tl.int64)
    ck_slot = tl.load(ckpt_slot_ptr + b).to(tl.int64)
    ck_chunk = tl.load(ckpt_chunk_ptr + b)
    ck_on = ((k1 * 0 + ck_slot) >= 0)[:, None]  # vector masks (interpreter)
    ck_off = (tl.maximum(ck_slot, 0) * HV + hv) * DK * DV
    s_base = state_ptr + (slot * HV + hv) * DK * DV
    has_init = ((k1 * 0 + tl.load(init_ptr + b).to(tl.int32)) != 0)[:, None]  # never read a
    s1 = tl.load(s_base + t1, mask=m1 & has_init, other=0.0)  # fresh slot
    if HALF2:
        s2 = tl.load(s_base + t2, mask=m2 & has_init, other=0.0)
    first = tl.load(first_chunk_ptr + b)
    n = tl.load(num_chunks_ptr + b)
    # Chunk c's tokens by arithmetic on c (the chunk table's cut: whole chunks from the
    # sequence start up to the checkpoint cut, then from the cut to the end), not loaded from
    # the table: loads whose addresses hang on another load in the loop are not prefetched.
    seq_lo = tl.load(cu_ptr + b)
    seq_hi = tl.load(cu_ptr + b + 1)
    cut = tl.load(cut_ptr + b)
    n_before = tl.load(n_before_cut_ptr + b)
    kbase = kn_ptr + hk * DK
    for c in range(0, n):
        # Predicated rather than branched: a store under `if` stops the loop's pipelining.
        at_ck = ck_on & ((k1 * 0 + c) == ck_chunk)[:, None]
        # The address depends on c so that it is not hoisted out of the loop: a loop-invariant
        # [64, BV] pointer tile would stay live in registers all along it (ptxas spills).
        ck_base = state_ptr + tl.where(c == ck_chunk, ck_off, 0)
        h_base = h_ptr + ((first + c).to(tl.int64) * HV + hv) * DK * DV
        tl.store(ck_base + t1, s1, mask=m1 & at_ck)
        tl.store(h_base + t1, s1.to(h_ptr.dtype.element_ty), mask=m1)
        if HALF2:
            tl.store(ck_base + t2, s2, mask=m2 & at_ck)
            tl.store(h_base + t2, s2.to(h_ptr.dtype.element_ty), mask=m2)
        after_cut = c >= n_before
        start = tl.where(after_cut, cut + (c - n_before) * BC, seq_lo + c * BC)
        length = tl.minimum(tl.where(after_cut, seq_hi, cut) - start, BC)
        valid = i < length
        tok = (start + i).to(tl.int64)
        row = tok * HV + hv
        vmask = valid[:, None] & vm[None, :]
        w1 = tl.load(w_ptr + row[:, None] * DK + k1[None, :],
                     mask=valid[:, None] & (k1 < DK)[None, :], other=0.0)  # fmt: skip
        ws = tl.dot(w1.to(DT), s1.to(DT), input_precision=PREC)
        if HALF2:
            w2 = tl.load(w_ptr + row[:, None] * DK + k2[None, :],
                         mask=valid[:, None] & (k2 < DK)[None, :], other=0.0)  # fmt: skip
            ws = tl.dot(w2.to(DT), s2.to(DT), ws, input_precision=PREC)
        u = tl.load(u_ptr + row[:, None] * DV + vv[None, :], mask=vmask, other=0.0)
        v_new = u.to(tl.float32) - ws
        tl.store(vn_ptr + row[:, None] * DV + vv[None, :], v_new.to(vn_ptr.dtype.element_ty),
                 mask=vmask)  # fmt: skip
        gamma = tl.load(gamma_ptr + row, mask=valid, other=0.0)
        gamma_last = tl.load(gamma_ptr + (start + length - 1).to(tl.int64) * HV + hv)
        v_dec = (v_new * tl.where(valid, tl.exp(gamma_last - gamma), 0.0)[:, None]).to(DT)
        decay = tl.exp(gamma_last)
        # Kᵀ rows straight from memory: [64 key rows, chunk tokens].
        kt1 = tl.load(kbase + tok[None, :] * (HK * DK) + k1[:, None],
                      mask=(k1 < DK)[:, None] & valid[None, :], other=0.0)  # fmt: skip
        s1 = tl.dot(kt1.to(DT), v_dec, s1 * decay, input_precision=PREC)
        if HALF2:
            kt2 = tl.load(kbase + tok[None, :] * (HK * DK) + k2[:, None],
                          mask=(k2 < DK)[:, None] & valid[None, :], other=0.0)  # fmt: skip
            s2 = tl.dot(kt2.to(DT), v_dec, s2 * decay, input_precision=PREC)
    at_ck = ck_on & ((k1 * 0 + n) == ck_chunk)[:, None]
    ck_base = state_ptr + ck_off
    tl.store(ck_base + t1, s1, mask=m1 & at_ck)
    tl.store(s_base + t1, s1, mask=m1)
    if HALF2:
        tl.store(ck_base + t2, s2, mask=m2 & at_ck)
        tl.store(s_base + t2, s2, mask=m2)
