"""Plain PyTorch reference of every kernel op (CPU and GPU); defines the exact math."""

from tokenspeed.kernels.reference.activation import silu_and_mul
from tokenspeed.kernels.reference.attention import paged_attention, write_kv_cache
from tokenspeed.kernels.reference.attention_input import qk_norm_rope_kv_write
from tokenspeed.kernels.reference.conv import conv1d_decode, conv1d_varlen
from tokenspeed.kernels.reference.gdn import gdn_chunked, gdn_gates, gdn_recurrent
from tokenspeed.kernels.reference.gemv import gated_norm_linear, linear_small, norm_linear
from tokenspeed.kernels.reference.moe import (
    add_gated_shared_expert,
    moe_experts,
    moe_route,
    moe_route_shared,
)
from tokenspeed.kernels.reference.norm import add_rms_norm, gated_rms_norm, rms_norm
from tokenspeed.kernels.reference.rope import apply_rope, rope_inv_freq

__all__ = [
    "add_gated_shared_expert",
    "add_rms_norm",
    "apply_rope",
    "conv1d_decode",
    "conv1d_varlen",
    "gated_norm_linear",
    "gated_rms_norm",
    "gdn_chunked",
    "gdn_gates",
    "gdn_recurrent",
    "linear_small",
    "moe_experts",
    "moe_route",
    "moe_route_shared",
    "norm_linear",
    "paged_attention",
    "qk_norm_rope_kv_write",
    "rms_norm",
    "rope_inv_freq",
    "silu_and_mul",
    "write_kv_cache",
]
