"""GDN chunked prefill, step 1b of 4: ``W = T diag(β)(K ⊙ e^γ)`` and ``U = T diag(β) V``.

One program per (chunk, value head): ``T`` (fp32, from `gdn_chunked_solve.solve_kernel`) is
loaded once as a 64×64 dot operand, then K (already normalised) and V are walked in blocks of
``BC`` columns, each a full 64×64×BC tensor-core dot. Splitting this from the solve keeps few
registers live (the fused kernel held four k, kb and vb blocks and was latency-bound).
Writes ``w``, ``u`` (``DT``) per token.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def wu_kernel(
    kn_ptr, v_ptr, v_st, v_sh, b_ptr, b_st, gamma_ptr, t_ptr, chunk_start_ptr, chunk_len_ptr,
    w_ptr, u_ptr,
    HV, HK, R, DK, DV,
    BK: tl.constexpr, BV: tl.constexpr, BKC: tl.constexpr, BVC: tl.constexpr,
    DT: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    c = tl.program_id(0).to(tl.int64)
    hv = tl.program_id(1)
    hk = hv // R
    start = tl.load(chunk_start_ptr + c)
    length = tl.load(chunk_len_ptr + c)
    i = tl.arange(0, 64)
    valid = i < length
    tok = (start + i).to(tl.int64)
    row = tok * HV + hv
    b = tl.load(b_ptr + tok * b_st + hv, mask=valid, other=0.0)
    beta = tl.sigmoid(b.to(tl.float32)).to(b.dtype).to(tl.float32)  # as gdn_gate_values
    beta = tl.where(valid, beta, 0.0)
    gamma = tl.load(gamma_ptr + row, mask=valid, other=0.0)
    kscale = beta * tl.exp(gamma)
    t = tl.load(t_ptr + (c * HV + hv) * 4096 + i[:, None] * 64 + i[None, :]).to(DT)
    for k0 in tl.static_range(0, BK, BKC):
        kc = k0 + tl.arange(0, BKC)
        m = valid[:, None] & (kc < DK)[None, :]
        kn = tl.load(kn_ptr + tok[:, None] * (HK * DK) + hk * DK + kc[None, :], mask=m, other=0.0)
        w = tl.dot(t, (kn.to(tl.float32) * kscale[:, None]).to(DT), input_precision=PREC)
        tl.store(w_ptr + row[:, None] * DK + kc[None, :], w.to(w_ptr.dtype.element_ty), mask=m)
    for v0 in tl.static_range(0, BV, BVC):
        vc = v0 + tl.arange(0, BVC)
        m = valid[:, None] & (vc < DV)[None, :]
        v = tl.load(v_ptr + tok[:, None] * v_st + hv * v_sh + vc[None, :], mask=m, other=0.0)
        u = tl.dot(t, (v.to(tl.float32) * beta[:, None]).to(DT), input_precision=PREC)
        tl.store(u_ptr + row[:, None] * DV + vc[None, :], u.to(u_ptr.dtype.element_ty), mask=m)
