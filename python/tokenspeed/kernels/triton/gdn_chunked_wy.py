"""GDN chunked prefill, step 1 of 3: the WY/UT form of every chunk, all chunks in parallel.

One program per (chunk, value head). With the chunk's rows in four 16-row blocks:
``γ`` = in-chunk cumsum of the log-decay ``g``; ``A = strict_lower(diag(β) K Kᵀ ⊙ Γ)`` as 10
blocks of 16×16; ``T = (I + A)^-1`` blockwise: the four diagonal blocks by forward substitution
(16 steps on 16×16 tiles), then ``T_ij = -T_ii Σ_{j<=m<i} A_im T_mj`` for the blocks below
them; finally ``W = T diag(β)(K ⊙ e^γ)`` and ``U = T diag(β) V`` block row by block row.
Dot operands are cast to ``DT`` (bf16 for bf16 activations, fp32 accumulation); the small
inverse products stay fp32. Writes ``w``, ``u`` (``DT``) and ``γ`` (fp32) per token.
"""

from __future__ import annotations

import triton
import triton.language as tl

from tokenspeed.kernels.triton.gdn_recurrent import gdn_gate_values


@triton.jit
def load_qk(ptr, s_t, s_h, tok, hk, valid, kk, DK, scale):
    """L2-normalised (eps 1e-6 inside the rsqrt) and scaled q or k rows, fp32 ``[rows, BK]``."""
    m = valid[:, None] & (kk < DK)[None, :]
    x = tl.load(ptr + tok.to(tl.int64)[:, None] * s_t + hk * s_h + kk[None, :], mask=m, other=0.0)
    x = x.to(tl.float32)
    return x * (tl.rsqrt(tl.sum(x * x, axis=1) + 1e-6) * scale)[:, None]


@triton.jit
def _rows(k_ptr, k_st, k_sh, a_ptr, a_st, b_ptr, b_st, A_log, dt_bias, start, length, hv, hk,
          g_before, J: tl.constexpr, DK, BK: tl.constexpr):  # fmt: skip
    """Block ``J`` of the chunk: normalised k ``[16, BK]``, γ and β ``[16]`` (0 on padding)."""
    r = J * 16 + tl.arange(0, 16)
    valid = r < length
    tok = (start + r).to(tl.int64)
    a = tl.load(a_ptr + tok * a_st + hv, mask=valid, other=0.0)
    b = tl.load(b_ptr + tok * b_st + hv, mask=valid, other=0.0)
    g, beta = gdn_gate_values(a, b, A_log, dt_bias)
    gamma = tl.cumsum(tl.where(valid, g, 0.0), axis=0) + g_before
    k = load_qk(k_ptr, k_st, k_sh, tok, hk, valid, tl.arange(0, BK), DK, 1.0)
    return k, gamma, tl.where(valid, beta, 0.0)


@triton.jit
def _a_block(ki, gi, bi, kj, gj, DIAG: tl.constexpr, DT: tl.constexpr, PREC: tl.constexpr):
    """``A_ij = β_i k_i k_jᵀ ⊙ exp(γ_i - γ_j)``; strictly lower on the diagonal blocks."""
    x = tl.dot((ki * bi[:, None]).to(DT), tl.trans(kj.to(DT)), input_precision=PREC)
    if DIAG:
        i = tl.arange(0, 16)
        lower = i[:, None] > i[None, :]
        return tl.where(lower, x * tl.exp(tl.where(lower, gi[:, None] - gj[None, :], 0.0)), 0.0)
    return x * tl.exp(gi[:, None] - gj[None, :])


@triton.jit
def _inv_unit_lower(a):
    """``(I + a)^-1`` of a strictly lower 16×16 ``a``: row r = e_r - a[r, :] T (rows < r done)."""
    i = tl.arange(0, 16)
    t = tl.where(i[:, None] == i[None, :], 1.0, 0.0)
    for r in range(1, 16):
        a_row = tl.sum(tl.where(i[:, None] == r, a, 0.0), axis=0)
        t = tl.where(i[:, None] == r, t - tl.sum(a_row[:, None] * t, axis=0)[None, :], t)
    return t


@triton.jit
def _mm(x, y, PREC: tl.constexpr):
    return tl.dot(x, y, input_precision=PREC)


@triton.jit
def _store_rows(w_ptr, u_ptr, gamma_ptr, start, length, hv, HV, DK, DV, t0, t1, t2, t3,
                kb0, kb1, kb2, kb3, vb0, vb1, vb2, vb3, gam,
                J: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, DT: tl.constexpr,
                PREC: tl.constexpr):  # fmt: skip
    """Block row ``J`` of ``W = T kb`` and ``U = T vb`` (``t_m`` = T_Jm; m > J are skipped)."""
    r = J * 16 + tl.arange(0, 16)
    valid = r < length
    row = (start + r).to(tl.int64) * HV + hv
    kk = tl.arange(0, BK)
    vv = tl.arange(0, BV)
    w = tl.dot(t0.to(DT), kb0, input_precision=PREC)
    u = tl.dot(t0.to(DT), vb0, input_precision=PREC)
    if J >= 1:
        w = tl.dot(t1.to(DT), kb1, w, input_precision=PREC)
        u = tl.dot(t1.to(DT), vb1, u, input_precision=PREC)
    if J >= 2:
        w = tl.dot(t2.to(DT), kb2, w, input_precision=PREC)
        u = tl.dot(t2.to(DT), vb2, u, input_precision=PREC)
    if J >= 3:
        w = tl.dot(t3.to(DT), kb3, w, input_precision=PREC)
        u = tl.dot(t3.to(DT), vb3, u, input_precision=PREC)
    tl.store(w_ptr + row[:, None] * DK + kk[None, :], w.to(w_ptr.dtype.element_ty),
             mask=valid[:, None] & (kk < DK)[None, :])  # fmt: skip
    tl.store(u_ptr + row[:, None] * DV + vv[None, :], u.to(u_ptr.dtype.element_ty),
             mask=valid[:, None] & (vv < DV)[None, :])  # fmt: skip
    tl.store(gamma_ptr + row, gam, mask=valid)


@triton.jit
def _vb(v_ptr, v_st, v_sh, start, length, hv, beta, J: tl.constexpr, DV, BV: tl.constexpr,
        DT: tl.constexpr):  # fmt: skip
    """``diag(β) V`` of block ``J``, cast for the dot."""
    r = J * 16 + tl.arange(0, 16)
    vv = tl.arange(0, BV)
    m = (r < length)[:, None] & (vv < DV)[None, :]
    tok = (start + r).to(tl.int64)
    v = tl.load(v_ptr + tok[:, None] * v_st + hv * v_sh + vv[None, :], mask=m, other=0.0)
    return (v.to(tl.float32) * beta[:, None]).to(DT)


@triton.jit
def wy_kernel(
    k_ptr, k_st, k_sh, v_ptr, v_st, v_sh, a_ptr, a_st, b_ptr, b_st, A_log_ptr, dt_bias_ptr,
    chunk_start_ptr, chunk_len_ptr, w_ptr, u_ptr, gamma_ptr,
    HV, R, DK, DV,
    BK: tl.constexpr, BV: tl.constexpr, DT: tl.constexpr, PREC: tl.constexpr,
    PREC_INV: tl.constexpr,
):  # fmt: skip
    c = tl.program_id(0)
    hv = tl.program_id(1)
    hk = hv // R
    start = tl.load(chunk_start_ptr + c)
    length = tl.load(chunk_len_ptr + c)
    A_log = tl.load(A_log_ptr + hv)
    dt_bias = tl.load(dt_bias_ptr + hv)
    # Log-decay sums of the rows before each 16-row block (the in-block cumsum adds the rest).
    r64 = tl.arange(0, 64)
    valid64 = r64 < length
    tok64 = (start + r64).to(tl.int64)
    a64 = tl.load(a_ptr + tok64 * a_st + hv, mask=valid64, other=0.0)
    g64, _ = gdn_gate_values(a64, a64, A_log, dt_bias)
    g64 = tl.where(valid64, g64, 0.0)
    g_at16 = tl.sum(tl.where(r64 < 16, g64, 0.0))
    g_at32 = tl.sum(tl.where(r64 < 32, g64, 0.0))
    g_at48 = tl.sum(tl.where(r64 < 48, g64, 0.0))
    k0, g0, b0 = _rows(k_ptr, k_st, k_sh, a_ptr, a_st, b_ptr, b_st, A_log, dt_bias, start, length,
                       hv, hk, 0.0, 0, DK, BK)  # fmt: skip
    k1, g1, b1 = _rows(k_ptr, k_st, k_sh, a_ptr, a_st, b_ptr, b_st, A_log, dt_bias, start, length,
                       hv, hk, g_at16, 1, DK, BK)  # fmt: skip
    k2, g2, b2 = _rows(k_ptr, k_st, k_sh, a_ptr, a_st, b_ptr, b_st, A_log, dt_bias, start, length,
                       hv, hk, g_at32, 2, DK, BK)  # fmt: skip
    k3, g3, b3 = _rows(k_ptr, k_st, k_sh, a_ptr, a_st, b_ptr, b_st, A_log, dt_bias, start, length,
                       hv, hk, g_at48, 3, DK, BK)  # fmt: skip

    # Diagonal blocks of T, then the blocks below them, column by column towards the corner.
    t00 = _inv_unit_lower(_a_block(k0, g0, b0, k0, g0, True, DT, PREC))
    t11 = _inv_unit_lower(_a_block(k1, g1, b1, k1, g1, True, DT, PREC))
    t22 = _inv_unit_lower(_a_block(k2, g2, b2, k2, g2, True, DT, PREC))
    t33 = _inv_unit_lower(_a_block(k3, g3, b3, k3, g3, True, DT, PREC))
    a10 = _a_block(k1, g1, b1, k0, g0, False, DT, PREC)
    a20 = _a_block(k2, g2, b2, k0, g0, False, DT, PREC)
    a21 = _a_block(k2, g2, b2, k1, g1, False, DT, PREC)
    a30 = _a_block(k3, g3, b3, k0, g0, False, DT, PREC)
    a31 = _a_block(k3, g3, b3, k1, g1, False, DT, PREC)
    a32 = _a_block(k3, g3, b3, k2, g2, False, DT, PREC)
    t10 = -_mm(t11, _mm(a10, t00, PREC_INV), PREC_INV)
    t21 = -_mm(t22, _mm(a21, t11, PREC_INV), PREC_INV)
    t20 = -_mm(t22, _mm(a20, t00, PREC_INV) + _mm(a21, t10, PREC_INV), PREC_INV)
    t32 = -_mm(t33, _mm(a32, t22, PREC_INV), PREC_INV)
    t31 = -_mm(t33, _mm(a31, t11, PREC_INV) + _mm(a32, t21, PREC_INV), PREC_INV)
    t30 = -_mm(t33, _mm(a30, t00, PREC_INV) + _mm(a31, t10, PREC_INV) + _mm(a32, t20, PREC_INV),
               PREC_INV)  # fmt: skip

    kb0 = (k0 * (b0 * tl.exp(g0))[:, None]).to(DT)
    kb1 = (k1 * (b1 * tl.exp(g1))[:, None]).to(DT)
    kb2 = (k2 * (b2 * tl.exp(g2))[:, None]).to(DT)
    kb3 = (k3 * (b3 * tl.exp(g3))[:, None]).to(DT)
    vb0 = _vb(v_ptr, v_st, v_sh, start, length, hv, b0, 0, DV, BV, DT)
    vb1 = _vb(v_ptr, v_st, v_sh, start, length, hv, b1, 1, DV, BV, DT)
    vb2 = _vb(v_ptr, v_st, v_sh, start, length, hv, b2, 2, DV, BV, DT)
    vb3 = _vb(v_ptr, v_st, v_sh, start, length, hv, b3, 3, DV, BV, DT)
    z = tl.zeros((16, 16), dtype=tl.float32)
    _store_rows(w_ptr, u_ptr, gamma_ptr, start, length, hv, HV, DK, DV, t00, z, z, z,
                kb0, kb1, kb2, kb3, vb0, vb1, vb2, vb3, g0, 0, BK, BV, DT, PREC)  # fmt: skip
    _store_rows(w_ptr, u_ptr, gamma_ptr, start, length, hv, HV, DK, DV, t10, t11, z, z,
                kb0, kb1, kb2, kb3, vb0, vb1, vb2, vb3, g1, 1, BK, BV, DT, PREC)  # fmt: skip
    _store_rows(w_ptr, u_ptr, gamma_ptr, start, length, hv, HV, DK, DV, t20, t21, t22, z,
                kb0, kb1, kb2, kb3, vb0, vb1, vb2, vb3, g2, 2, BK, BV, DT, PREC)  # fmt: skip
    _store_rows(w_ptr, u_ptr, gamma_ptr, start, length, hv, HV, DK, DV, t30, t31, t32, t33,
                kb0, kb1, kb2, kb3, vb0, vb1, vb2, vb3, g3, 3, BK, BV, DT, PREC)  # fmt: skip
