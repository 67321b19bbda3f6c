"""Host copies of small device tensors (sequence offsets, checkpoint tables) that kernel
wrappers plan launches with, computed once per step instead of once per layer."""

from __future__ import annotations

from torch import Tensor


def host_list(t: Tensor) -> list:
    """``t.tolist()``, kept on the tensor so the layers of one step reuse it: on CUDA each
    ``tolist`` waits for the GPU queue to drain, which left the GPU idle while the host launched
    the next layer's kernels. The executor primes it from the plan's host arrays (`set_host_list`).
    Only for step inputs, which nothing writes in place (inference tensors keep no version
    counter to detect that)."""
    cached = getattr(t, "_tokenspeed_host", None)
    if cached is not None:
        return cached
    values = t.tolist()
    set_host_list(t, values)
    return values


def set_host_list(t: Tensor, values: list) -> None:
    """Records ``values`` as ``t.tolist()`` (the caller guarantees they are equal)."""
    t._tokenspeed_host = values  # type: ignore[attr-defined]
