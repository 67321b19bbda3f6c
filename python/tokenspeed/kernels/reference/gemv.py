"""Projections with their input norm folded in (decode GEMVs): the unfused composition.

Each op is exactly the norm op followed by ``F.linear``; the Triton backend computes the same
in one launch for few tokens (`tokenspeed.kernels.triton.gemv`). ``site`` names the
projection (for per-projection switches); the math ignores it.
"""

from __future__ import annotations

from types import ModuleType

import torch.nn.functional as F
from torch import Tensor

from tokenspeed.kernels.reference import norm as reference_norm


def norm_linear(
    x: Tensor,
    residual: Tensor | None,
    norm_weight: Tensor,
    eps: float,
    weight: Tensor,
    return_h: bool,
    site: str = "",
) -> tuple[Tensor, Tensor, Tensor | None]:
    """``h, residual = add_rms_norm(x, residual)`` (``rms_norm(x)`` and ``residual = x`` when
    ``residual`` is None), then ``F.linear(h, weight)``.

    Returns ``(out, residual, h if return_h else None)``. ``x``: ``[tokens, K]``.
    """
    return norm_then_linear(reference_norm, x, residual, norm_weight, eps, weight, return_h)


def gated_norm_linear(
    o: Tensor, gate: Tensor, norm_weight: Tensor, eps: float, weight: Tensor, site: str = ""
) -> Tensor:
    """``F.linear(gated_rms_norm(o, gate).reshape(tokens, -1), weight)``; ``o``, ``gate``:
    ``[tokens, heads, dv]`` (the norm is per head)."""
    return gated_norm_then_linear(reference_norm, o, gate, norm_weight, eps, weight)


def linear_small(x: Tensor, weight: Tensor, site: str = "") -> Tensor:
    """``F.linear(x, weight)`` (a GEMV of its own at decode on the Triton backend)."""
    return F.linear(x, weight)


# The compositions, with the norms of ``norms`` (a module with ``rms_norm``, ``add_rms_norm``
# and ``gated_rms_norm``): the reference's here, the Triton kernels in the Triton backend's
# unfused path (prefill, or a projection the fused GEMV does not take).
def norm_then_linear(
    norms: ModuleType,
    x: Tensor,
    residual: Tensor | None,
    norm_weight: Tensor,
    eps: float,
    weight: Tensor,
    return_h: bool,
) -> tuple[Tensor, Tensor, Tensor | None]:
    if residual is None:
        h, residual = norms.rms_norm(x, norm_weight, eps), x
    else:
        h, residual = norms.add_rms_norm(x, residual, norm_weight, eps)
    return F.linear(h, weight), residual, h if return_h else None


def gated_norm_then_linear(
    norms: ModuleType, o: Tensor, gate: Tensor, norm_weight: Tensor, eps: float, weight: Tensor
) -> Tensor:
    tokens = o.shape[0]
    return F.linear(norms.gated_rms_norm(o, gate, norm_weight, eps).reshape(tokens, -1), weight)
