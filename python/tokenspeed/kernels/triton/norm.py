"""RMSNorm family in Triton: zero-centred RMSNorm, residual add + RMSNorm, gated RMSNorm.

One kernel, specialised by constexpr flags. A program normalises ``BLOCK_R`` rows of ``D``
elements in fp32; the rounding points match the reference (`reference/norm.py`): the residual
sum is rounded to the activation dtype before it is normalised, and the gated norm rounds the
normalised value before the weight multiply, as HF does.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from tokenspeed.kernels.triton.common import as_rows, next_pow2, pdl_launch, pdl_supported


# Length arguments are not specialised: see common.NO_RECOMPILE.
@triton.jit(do_not_specialize=["rows"])
def _rms_norm_kernel(
    x_ptr, x_sa, x_sb,            # input rows: row r = (r // nb, r % nb) -> a * x_sa + b * x_sb
    res_ptr, res_sa, res_sb,      # residual (ADD) / gate (GATED) rows, same addressing
    w_ptr, out_ptr, res_out_ptr,  # outputs are contiguous [rows, D]
    rows, nb, D, eps,
    ADD: tl.constexpr,            # residual = x + residual, normalise that (zero-centred weight)
    GATED: tl.constexpr,          # plain weight, then * silu(gate)
    ROUND_WX: tl.constexpr,       # gated: the weight product is rounded to the activation dtype
    BLOCK_R: tl.constexpr,
    BLOCK_D: tl.constexpr,
    GDC: tl.constexpr = False,    # launched with PDL: the weight loads before the wait
):  # fmt: skip
    if GDC:
        tl.extra.cuda.gdc_launch_dependents()
    r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    d = tl.arange(0, BLOCK_D)
    w = tl.load(w_ptr + d, mask=d < D, other=0.0).to(tl.float32)
    if GDC:
        tl.extra.cuda.gdc_wait()
    mask = (r < rows)[:, None] & (d < D)[None, :]
    a_idx = (r // nb).to(tl.int64)
    b_idx = (r % nb).to(tl.int64)
    x_off = (a_idx * x_sa + b_idx * x_sb)[:, None] + d[None, :]
    out_off = r.to(tl.int64)[:, None] * D + d[None, :]
    x = tl.load(x_ptr + x_off, mask=mask, other=0.0)
    act = x.dtype
    xf = x.to(tl.float32)
    if ADD or GATED:
        o_off = (a_idx * res_sa + b_idx * res_sb)[:, None] + d[None, :]
        other = tl.load(res_ptr + o_off, mask=mask, other=0.0)
    if ADD:
        summed = (xf + other.to(tl.float32)).to(act)  # the residual stream is rounded
        tl.store(res_out_ptr + out_off, summed, mask=mask)
        xf = summed.to(tl.float32)
    inv = tl.rsqrt(tl.sum(xf * xf, axis=1) / D + eps)
    xn = xf * inv[:, None]
    if GATED:
        y = w[None, :] * xn.to(act).to(tl.float32)
        if ROUND_WX:
            y = y.to(act).to(tl.float32)
        gate = other.to(tl.float32)
        y = y * gate * tl.sigmoid(gate)
    else:
        y = xn * (1.0 + w[None, :])
    tl.store(out_ptr + out_off, y.to(act), mask=mask)


def _launch(
    x: Tensor, other: Tensor | None, weight: Tensor, eps: float, add: bool, gated: bool
) -> tuple[Tensor, Tensor | None]:
    d = x.shape[-1]
    xv, x_sa, x_sb, nb = as_rows(x)
    if other is None:
        ov, o_sa, o_sb = xv, x_sa, x_sb
    else:
        if other.shape != x.shape:
            raise ValueError(f"shape mismatch: {tuple(other.shape)} vs {tuple(x.shape)}")
        ov, o_sa, o_sb, o_nb = as_rows(other)
        if o_nb != nb:  # different row grouping: fall back to a contiguous copy of both
            xv, x_sa, x_sb, nb = as_rows(x.contiguous())
            ov, o_sa, o_sb, _ = as_rows(other.contiguous())
    rows = x.numel() // d if d else 0
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    res_out = torch.empty_like(out) if add else out
    if rows == 0:
        return out, res_out if add else None
    block_d = next_pow2(d)
    block_r = max(1, min(16, 4096 // block_d))
    round_wx = gated and torch.promote_types(weight.dtype, x.dtype) != torch.float32
    grid = (triton.cdiv(rows, block_r),)
    gdc = pdl_supported(x)
    _rms_norm_kernel[grid](
        xv, x_sa, x_sb, ov, o_sa, o_sb, weight, out, res_out, rows, nb, d, eps,
        ADD=add, GATED=gated, ROUND_WX=round_wx, BLOCK_R=block_r, BLOCK_D=block_d, GDC=gdc,
        num_warps=4 if block_d <= 2048 else 8, **pdl_launch(gdc),
    )  # fmt: skip
    return out, res_out if add else None


def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """Zero-centred RMSNorm, see `reference.norm.rms_norm`."""
    return _launch(x, None, weight, eps, add=False, gated=False)[0]


def add_rms_norm(x: Tensor, residual: Tensor, weight: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Residual add + zero-centred RMSNorm, see `reference.norm.add_rms_norm`."""
    if residual.dtype != x.dtype:
        raise ValueError(f"residual dtype {residual.dtype} != activation dtype {x.dtype}")
    out, res = _launch(x, residual, weight, eps, add=True, gated=False)
    assert res is not None
    return out, res


def gated_rms_norm(x: Tensor, gate: Tensor, weight: Tensor, eps: float) -> Tensor:
    """GDN output norm ``w * norm(x) * silu(gate)``, see `reference.norm.gated_rms_norm`."""
    return _launch(x, gate, weight, eps, add=False, gated=True)[0]
