"""SwiGLU activation ``silu(gate) * up`` in Triton (`reference/activation.py`).

One program per row block; silu and the product are rounded to the activation dtype as the
reference (two PyTorch ops) does.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from tokenspeed.kernels.triton.common import check_device, next_pow2


@triton.jit
def _silu_and_mul_kernel(x_ptr, x_st, out_ptr, D, BLOCK: tl.constexpr):
    r = tl.program_id(0).to(tl.int64)
    d = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    m = d < D
    act = out_ptr.dtype.element_ty
    gate = tl.load(x_ptr + r * x_st + d, mask=m, other=0.0).to(tl.float32)
    up = tl.load(x_ptr + r * x_st + D + d, mask=m, other=0.0).to(tl.float32)
    s = (gate * tl.sigmoid(gate)).to(act).to(tl.float32)
    tl.store(out_ptr + r * D + d, (s * up).to(act), mask=m)


def silu_and_mul(x: Tensor) -> Tensor:
    """See `reference.activation.silu_and_mul`."""
    if x.shape[-1] % 2:
        raise ValueError(f"last dim {x.shape[-1]} is not [gate | up]")
    check_device(x)
    d = x.shape[-1] // 2
    rows = x.reshape(-1, 2 * d)
    if rows.stride(-1) != 1:
        rows = rows.contiguous()
    out = torch.empty((*x.shape[:-1], d), dtype=x.dtype, device=x.device)
    if rows.shape[0] and d:
        block = min(1024, next_pow2(d))
        _silu_and_mul_kernel[(rows.shape[0], triton.cdiv(d, block))](
            rows, rows.stride(0), out, d, BLOCK=block
        )
    return out
