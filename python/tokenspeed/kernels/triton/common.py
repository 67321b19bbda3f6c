"""Small helpers shared by the Triton kernel wrappers (shapes, strides, block sizes)."""

from __future__ import annotations

import functools
import os

import torch
from torch import Tensor

# Kernels are built by the interpreter when TRITON_INTERPRET=1 was set at import time; they
# then run on CPU tensors (tests), otherwise they need CUDA tensors.
INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"

# NO_RECOMPILE: Triton compiles one variant per distinct specialisation key, and plain int
# arguments are keyed on ``== 1`` and ``% 16 == 0``, pointers on 16-byte alignment. Arguments
# that follow the request (token counts, page-table width, split sizes) are therefore listed in
# ``do_not_specialize`` (they only bound masks and loops, so nothing is lost), and int tables
# packed into one buffer start every table on a 16-byte boundary (`align4`): otherwise the n-th
# request with a new combination recompiles on the GPU (hundreds of ms in its TTFT).


def align4(n: int) -> int:
    """``n`` rounded up to a multiple of 4: 4-byte tables of these sizes packed one after the
    other each start 16-byte aligned (see NO_RECOMPILE)."""
    return -(-n // 4) * 4


def next_pow2(n: int, minimum: int = 1) -> int:
    """Smallest power of two >= max(n, minimum) (Triton block shapes must be powers of two)."""
    n = max(int(n), minimum)
    return 1 << (n - 1).bit_length()


def as_rows(x: Tensor) -> tuple[Tensor, int, int, int]:
    """Describe the rows (last dim = the row) of ``x`` without copying where possible.

    Returns ``(t, stride_a, stride_b, nb)``: row ``r`` starts at element
    ``(r // nb) * stride_a + (r % nb) * stride_b`` of ``t``. Handles any view whose leading
    dims merge into one, and 3-D views whose two leading dims do not (e.g. a head split of
    a column slice); everything else is copied.
    """
    if x.dim() == 0:
        raise ValueError("expected at least one dimension")
    if x.stride(-1) != 1 and x.shape[-1] > 1:
        x = x.contiguous()
    d = x.shape[-1]
    if x.dim() == 1:
        return x, 0, 0, 1
    try:
        flat = x.view(-1, d)
        return flat, flat.stride(0), 0, 1
    except RuntimeError:
        pass
    if x.dim() == 3:
        return x, x.stride(0), x.stride(1), max(x.shape[1], 1)
    return as_rows(x.contiguous())


def check_device(*tensors: Tensor) -> None:
    """Compiled kernels need CUDA tensors; interpreted ones run on CPU tensors."""
    for t in tensors:
        if t is None:
            continue
        if not INTERPRETED and t.device.type != "cuda":
            raise ValueError(
                f"Triton kernels need CUDA tensors, got a {t.device} tensor "
                "(set TRITON_INTERPRET=1 before importing to run them on CPU)"
            )


def dot_precision(x: Tensor) -> str:
    """``tl.dot``'s ``input_precision`` for operands of ``x``'s dtype: exact fp32 ("ieee")
    for fp32 activations (the GPU's default, TF32, keeps 10 mantissa bits and parts from the
    fp32 references by ~1e-3), "tf32" (the default: no effect) for bf16 / fp16."""
    return "ieee" if x.dtype == torch.float32 else "tf32"


def int_tensor(values: list[int], device: torch.device, dtype: torch.dtype = torch.int32) -> Tensor:
    return torch.tensor(values, dtype=dtype, device=device)


# PDL: programmatic dependent launch (Hopper or newer). A kernel launched with ``launch_pdl``
# may start while the kernel before it in the stream still runs; it calls ``gdc_wait`` before
# reading anything an earlier kernel of the step writes, and may load only STABLE data before
# that wait: weights, recurrent state and conv windows (written by earlier steps) and the
# step's inputs (written before the layers start). Kernels call ``gdc_launch_dependents`` at
# their top so the next kernel's programs become resident, load their stable data and wait
# (at batch 1 this hides each launch's ramp-up: benches/results/*sweep_moe_decode*). Stores
# only ever happen after the wait, when every earlier kernel has finished, so buffers the
# allocator recycles within a step are safe. TOKENSPEED_PDL=0 turns it off.
PDL = os.environ.get("TOKENSPEED_PDL", "1") != "0"


def pdl_supported(t: Tensor) -> bool:
    """Whether kernels on ``t``'s device launch with PDL (compiled, CUDA, Hopper or newer)."""
    if not PDL or INTERPRETED or not t.is_cuda:
        return False
    return _hopper_or_newer(t.device.index)  # a CUDA tensor's device always has its index


@functools.cache
def _hopper_or_newer(index: int) -> bool:
    """Per device, asked once: every Triton launch asks, and prefill launches are eager."""
    return torch.cuda.get_device_capability(index)[0] >= 9


def pdl_launch(on: bool) -> dict[str, bool]:
    """The launch keyword of a kernel whose ``GDC`` flag is ``on``."""
    return {"launch_pdl": True} if on else {}
