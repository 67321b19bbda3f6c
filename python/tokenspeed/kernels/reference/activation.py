"""SwiGLU activation."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def silu_and_mul(x: Tensor) -> Tensor:
    """``silu(gate) * up`` where ``x = [gate | up]`` along the last dim (gate first)."""
    gate, up = x.chunk(2, dim=-1)
    return F.silu(gate) * up
