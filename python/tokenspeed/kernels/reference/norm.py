"""RMSNorm variants (spec §2.3): zero-centred, fused residual add, gated (GDN output)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """Zero-centred RMSNorm over the last dim: ``x * rsqrt(mean(x²) + eps) * (1 + w)``.

    The checkpoint stores ``w`` zero-centred; the scale ``1 + w`` is applied in fp32 before the
    single cast back to ``x.dtype`` (Gemma style, spec pitfall 6).
    """
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (xf * (1.0 + weight.float())).to(x.dtype)


def add_rms_norm(x: Tensor, residual: Tensor, weight: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """``residual = x + residual`` (in the activation dtype), then ``rms_norm(residual)``.

    Returns ``(normed, residual)``; the pre-norm residual stream of a decoder layer.
    """
    residual = x + residual
    return rms_norm(residual, weight, eps), residual


def gated_rms_norm(x: Tensor, gate: Tensor, weight: Tensor, eps: float) -> Tensor:
    """GDN output norm (spec §2.3 b): plain (not zero-centred) scale, norm before a SiLU gate.

    ``x``, ``gate``: ``[..., dv]``. The normalised value is cast to ``x.dtype`` before the
    weight multiply, as HF does; the gate multiply runs in fp32.
    """
    xf = x.float()
    xn = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)
    y = weight * xn
    return (y * F.silu(gate.float())).to(x.dtype)
