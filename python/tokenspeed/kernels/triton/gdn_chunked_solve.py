"""GDN chunked prefill, step 1a of 4: gates, normalised q/k and the chunk inverse ``T``.

One program per (chunk, value head), all chunks in parallel:

- ``γ`` = in-chunk cumsum of the log-decay ``g`` (stored per token and value head, fp32);
- the L2-normalised k (and the normalised, scaled q) are stored once per key head (by the
  program of the head group's first value head) so that the later kernels load them instead
  of recomputing the row norms (cross-warp reductions) in their loops;
- ``A = strict_lower(diag(β) K Kᵀ ⊙ Γ)`` as one 64×64 dot, stored fp32 into the chunk's
  ``T`` slot, which doubles as scratch: Triton cannot slice register tensors, so rows and
  16×16 blocks of ``A`` are read back from there (L1/L2) after a barrier;
- ``T = (I + A)^-1`` blockwise: the four diagonal 16×16 blocks by forward substitution in ONE
  loop over a ``[4, 16, 16]`` tensor (the row of ``A`` is a plain load, so each step has a
  single reduction, and the four blocks proceed together), then
  ``T_ij = -T_ii Σ_{j<=m<i} A_im T_mj`` for the blocks below the diagonal (or, CONFIG
  ``solve_merge64``, as four 64×64 dots, see `_merge64`). ``T`` is stored
  fp32 over ``A``; `gdn_chunked_wy.wu_kernel` multiplies it with K and V.
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
def _blk(base, BI: tl.constexpr, BJ: tl.constexpr):
    """Block (I, J) of the chunk's 64×64 fp32 scratch."""
    m = tl.arange(0, 16)
    return tl.load(base + (BI * 16 + m)[:, None] * 64 + BJ * 16 + m[None, :])


@triton.jit
def _diag(t3, b3, J: tl.constexpr):
    """Block ``J`` of the ``[4, 16, 16]`` diagonal inverses (a size-4 reduction, done once)."""
    return tl.sum(tl.where(b3 == J, t3, 0.0), axis=0)


@triton.jit
def _mm(x, y, PREC: tl.constexpr):
    return tl.dot(x, y, input_precision=PREC)


@triton.jit
def _put(base, t, BI: tl.constexpr, BJ: tl.constexpr):
    m = tl.arange(0, 16)
    tl.store(base + (BI * 16 + m)[:, None] * 64 + BJ * 16 + m[None, :], t)


@triton.jit
def solve_kernel(
    q_ptr, q_st, q_sh, k_ptr, k_st, k_sh, a_ptr, a_st, b_ptr, b_st, A_log_ptr, dt_bias_ptr,
    chunk_start_ptr, chunk_len_ptr, qn_ptr, kn_ptr, gamma_ptr, t_ptr,
    HV, HK, R, DK, scale,
    BK: tl.constexpr, DT: tl.constexpr, PREC: tl.constexpr, PREC_INV: tl.constexpr,
    MERGE64: tl.constexpr,
):  # fmt: skip
    c = tl.program_id(0).to(tl.int64)
    hv = tl.program_id(1)
    hk = hv // R
    start = tl.load(chunk_start_ptr + c)
    length = tl.load(chunk_len_ptr + c)
    i = tl.arange(0, 64)
    kk = tl.arange(0, BK)
    valid = i < length
    tok = (start + i).to(tl.int64)
    a = tl.load(a_ptr + tok * a_st + hv, mask=valid, other=0.0)
    b = tl.load(b_ptr + tok * b_st + hv, mask=valid, other=0.0)
    g, beta = gdn_gate_values(a, b, tl.load(A_log_ptr + hv), tl.load(dt_bias_ptr + hv))
    gamma = tl.cumsum(tl.where(valid, g, 0.0), axis=0)
    beta = tl.where(valid, beta, 0.0)
    tl.store(gamma_ptr + tok * HV + hv, gamma, mask=valid)
    k = load_qk(k_ptr, k_st, k_sh, tok, hk, valid, kk, DK, 1.0)
    if hv % R == 0:  # one writer per key head
        nmask = valid[:, None] & (kk < DK)[None, :]
        n_off = tok[:, None] * (HK * DK) + hk * DK + kk[None, :]
        tl.store(kn_ptr + n_off, k.to(kn_ptr.dtype.element_ty), mask=nmask)
        q = load_qk(q_ptr, q_st, q_sh, tok, hk, valid, kk, DK, scale)
        tl.store(qn_ptr + n_off, q.to(qn_ptr.dtype.element_ty), mask=nmask)
    # Padding rows have β = 0 and k = 0: their rows and columns of A vanish, T is I there.
    x = tl.dot((k * beta[:, None]).to(DT), tl.trans(k.to(DT)), input_precision=PREC)
    lower = i[:, None] > i[None, :]
    x = tl.where(lower, x * tl.exp(tl.where(lower, gamma[:, None] - gamma[None, :], 0.0)), 0.0)
    base = t_ptr + (c * HV + hv) * 4096
    tl.store(base + i[:, None] * 64 + i[None, :], x)
    tl.debug_barrier()  # the scratch rows below are written by other threads

    # Four diagonal blocks at once: row r of block J is e_r - A[16J+r, 16J:16J+16] T_JJ.
    m = tl.arange(0, 16)
    b3 = tl.arange(0, 4)[:, None, None]
    row3 = m[None, :, None] + b3 * 0
    t3 = tl.where(row3 == m[None, None, :], 1.0, 0.0)
    diag_row = (tl.arange(0, 4) * 16)[:, None] * 65 + m[None, :]  # (16J + r) * 64 + 16J + m
    for r in tl.static_range(1, 16):  # unrolled: the row loads issue ahead
        a_r = tl.load(base + diag_row + r * 64)  # [4, 16]; zero from column r on
        t3 = tl.where(row3 == r, t3 - tl.sum(a_r[:, :, None] * t3, axis=1)[:, None, :], t3)
    if MERGE64:
        _merge64(base, t3, b3, row3, PREC_INV)
    else:
        _merge16(base, t3, b3, PREC_INV)


@triton.jit
def _merge64(base, t3, b3, row3, PREC_INV: tl.constexpr):
    """``T`` from the diagonal inverses ``T_d`` with four 64×64 dots instead of ten dependent
    16×16 ones: ``I + A = D (I + N)``, ``N = T_d A_off`` strictly block-lower (``N⁴ = 0``), so
    ``T = (I - N)(I + N²) T_d``."""
    i = tl.arange(0, 64)
    m = tl.arange(0, 16)
    same = (i // 16)[:, None] == (i // 16)[None, :]
    tl.debug_barrier()  # every thread has read its rows of the diagonal blocks
    tl.store(base + b3 * 1040 + row3 * 64 + m[None, None, :], t3)  # over A's diagonal blocks
    tl.debug_barrier()
    s = tl.load(base + i[:, None] * 64 + i[None, :])  # T_d on the diagonal blocks, A below
    td = tl.where(same, s, 0.0)
    n = _mm(td, tl.where(same, 0.0, s), PREC_INV)
    eye = tl.where(i[:, None] == i[None, :], 1.0, 0.0)
    t = _mm(_mm(eye - n, eye + _mm(n, n, PREC_INV), PREC_INV), td, PREC_INV)
    tl.debug_barrier()  # every thread has read T_d before T overwrites it
    tl.store(base + i[:, None] * 64 + i[None, :], t)


@triton.jit
def _merge16(base, t3, b3, PREC_INV: tl.constexpr):
    """``T_ij = -T_ii Σ_{j<=m<i} A_im T_mj`` block by block (A's blocks from the scratch)."""
    t00 = _diag(t3, b3, 0)
    t11 = _diag(t3, b3, 1)
    t22 = _diag(t3, b3, 2)
    t33 = _diag(t3, b3, 3)
    a10 = _blk(base, 1, 0)
    a20 = _blk(base, 2, 0)
    a21 = _blk(base, 2, 1)
    a30 = _blk(base, 3, 0)
    a31 = _blk(base, 3, 1)
    a32 = _blk(base, 3, 2)
    t10 = -_mm(t11, _mm(a10, t00, PREC_INV), PREC_INV)
    t21 = -_mm(t22, _mm(a21, t11, PREC_INV), PREC_INV)
    t20 = -_mm(t22, _mm(a20, t00, PREC_INV) + _mm(a21, t10, PREC_INV), PREC_INV)
    t32 = -_mm(t33, _mm(a32, t22, PREC_INV), PREC_INV)
    t31 = -_mm(t33, _mm(a31, t11, PREC_INV) + _mm(a32, t21, PREC_INV), PREC_INV)
    t30 = -_mm(t33, _mm(a30, t00, PREC_INV) + _mm(a31, t10, PREC_INV) + _mm(a32, t20, PREC_INV),
               PREC_INV)  # fmt: skip
    tl.debug_barrier()  # every thread has read its A before T overwrites it
    _put(base, t00, 0, 0)
    _put(base, t10, 1, 0)
    _put(base, t11, 1, 1)
    _put(base, t20, 2, 0)
    _put(base, t21, 2, 1)
    _put(base, t22, 2, 2)
    _put(base, t30, 3, 0)
    _put(base, t31, 3, 1)
    _put(base, t32, 3, 2)
    _put(base, t33, 3, 3)
