"""Kernel interface of TokenSpeed.

Every op the model runs goes through this package (`tokenspeed.kernels.ops`). Each op has a
plain PyTorch reference (`tokenspeed.kernels.reference`) that runs on CPU and GPU and defines
the exact math; Triton implementations live beside it and are selected with `set_backend`.
An op a backend does not (yet) provide falls back to the reference.

Installed as `tokenspeed.kernels` (the repository keeps it at the top-level `kernels/`).
"""

from tokenspeed.kernels import ops
from tokenspeed.kernels.registry import available_backends, get_backend, register, set_backend

__all__ = ["available_backends", "get_backend", "ops", "register", "set_backend"]
