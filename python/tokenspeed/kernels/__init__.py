"""Kernel interface of TokenSpeed.

Every op the model runs goes through this package. Each op has a plain PyTorch reference
(`tokenspeed.kernels.reference`) that runs on CPU and GPU and defines the exact math; Triton
implementations live beside it and are selected with `set_backend`.

Installed as `tokenspeed.kernels` (the repository keeps it at the top-level `kernels/`).
"""
