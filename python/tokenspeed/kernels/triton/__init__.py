"""Triton implementations of the kernel ops, registered as backend ``"triton"``.

Importing this package registers every op it implements; ops it does not implement fall back
to the PyTorch reference (see `tokenspeed.kernels.registry`). Select it with
``tokenspeed.kernels.set_backend("triton")``. Set ``TRITON_INTERPRET=1`` *before* importing
it to run the kernels on CPU tensors through Triton's interpreter (tests); the variable must
stay set while they run.
"""

from __future__ import annotations

from tokenspeed.kernels.registry import register
from tokenspeed.kernels.triton import (
    activation,
    attention,
    conv,
    gdn_chunked,
    gdn_recurrent,
    gemv,
    moe,
    norm,
    rope,
)
from tokenspeed.kernels.triton.common import INTERPRETED

BACKEND = "triton"

IMPLEMENTED = {
    "rms_norm": norm.rms_norm,
    "add_rms_norm": norm.add_rms_norm,
    "gated_rms_norm": norm.gated_rms_norm,
    "conv1d_varlen": conv.conv1d_varlen,
    "conv1d_decode": conv.conv1d_decode,
    "gdn_recurrent": gdn_recurrent.gdn_recurrent,
    "gdn_chunked": gdn_chunked.gdn_chunked,
    "write_kv_cache": attention.write_kv_cache,
    "paged_attention": attention.paged_attention,
    "moe_route": moe.moe_route,
    "moe_route_shared": moe.moe_route_shared,
    "moe_experts": moe.moe_experts,
    "add_gated_shared_expert": moe.add_gated_shared_expert,
    "apply_rope": rope.apply_rope,
    "qk_norm_rope_kv_write": rope.qk_norm_rope_kv_write,
    "silu_and_mul": activation.silu_and_mul,
    "norm_linear": gemv.norm_linear,
    "gated_norm_linear": gemv.gated_norm_linear,
    "linear_small": gemv.linear_small,
}
for _name, _fn in IMPLEMENTED.items():
    register(BACKEND, _name, _fn)

__all__ = ["BACKEND", "IMPLEMENTED", "INTERPRETED"]
