"""The ops the model calls: typed entry points that dispatch to the active backend.

The signatures and docstrings in `tokenspeed.kernels.reference` are the contract; a backend
registers functions with exactly those signatures under the same names.
"""

from __future__ import annotations

from torch import Tensor

from tokenspeed.kernels import reference
from tokenspeed.kernels.registry import REFERENCE, lookup, register

OP_NAMES = (
    "rms_norm",
    "add_rms_norm",
    "gated_rms_norm",
    "apply_rope",
    "qk_norm_rope_kv_write",
    "silu_and_mul",
    "conv1d_varlen",
    "conv1d_decode",
    "gdn_chunked",
    "gdn_recurrent",
    "write_kv_cache",
    "paged_attention",
    "moe_route",
    "moe_route_shared",
    "moe_experts",
    "add_gated_shared_expert",
    "norm_linear",
    "gated_norm_linear",
    "linear_small",
)
for _name in OP_NAMES:
    register(REFERENCE, _name, getattr(reference, _name))


def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    return lookup("rms_norm")(x, weight, eps)


def add_rms_norm(x: Tensor, residual: Tensor, weight: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    return lookup("add_rms_norm")(x, residual, weight, eps)


def gated_rms_norm(x: Tensor, gate: Tensor, weight: Tensor, eps: float) -> Tensor:
    return lookup("gated_rms_norm")(x, gate, weight, eps)


def apply_rope(q: Tensor, k: Tensor, positions: Tensor, inv_freq: Tensor) -> tuple[Tensor, Tensor]:
    return lookup("apply_rope")(q, k, positions, inv_freq)


def qk_norm_rope_kv_write(
    qkv: Tensor,
    q_norm: Tensor,
    k_norm: Tensor,
    eps: float,
    positions: Tensor,
    inv_freq: Tensor,
    num_heads: int,
    num_kv_heads: int,
    head_dim: int,
    k_cache: Tensor,
    v_cache: Tensor,
    kv_indices: Tensor,
) -> tuple[Tensor, Tensor]:
    return lookup("qk_norm_rope_kv_write")(
        qkv, q_norm, k_norm, eps, positions, inv_freq, num_heads, num_kv_heads, head_dim,
        k_cache, v_cache, kv_indices,
    )  # fmt: skip


def silu_and_mul(x: Tensor) -> Tensor:
    return lookup("silu_and_mul")(x)


def conv1d_varlen(
    x: Tensor,
    weight: Tensor,
    conv_state: Tensor,
    cu_seqlens: Tensor,
    slot_ids: Tensor,
    has_initial_state: Tensor,
    checkpoint_slots: Tensor | None = None,
    checkpoint_offsets: Tensor | None = None,
) -> Tensor:
    return lookup("conv1d_varlen")(
        x, weight, conv_state, cu_seqlens, slot_ids, has_initial_state,
        checkpoint_slots, checkpoint_offsets,
    )  # fmt: skip


def conv1d_decode(
    x: Tensor,
    weight: Tensor,
    conv_state: Tensor,
    slot_ids: Tensor,
    has_initial_state: Tensor,
    checkpoint_slots: Tensor | None = None,
    checkpoint_offsets: Tensor | None = None,
) -> Tensor:
    return lookup("conv1d_decode")(
        x, weight, conv_state, slot_ids, has_initial_state, checkpoint_slots, checkpoint_offsets
    )


def gdn_chunked(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    a: Tensor,
    b: Tensor,
    A_log: Tensor,
    dt_bias: Tensor,
    state: Tensor,
    cu_seqlens: Tensor,
    slot_ids: Tensor,
    has_initial_state: Tensor,
    checkpoint_slots: Tensor | None = None,
    checkpoint_offsets: Tensor | None = None,
) -> Tensor:
    return lookup("gdn_chunked")(
        q, k, v, a, b, A_log, dt_bias, state, cu_seqlens, slot_ids, has_initial_state,
        checkpoint_slots, checkpoint_offsets,
    )  # fmt: skip


def gdn_recurrent(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    a: Tensor,
    b: Tensor,
    A_log: Tensor,
    dt_bias: Tensor,
    state: Tensor,
    slot_ids: Tensor,
    has_initial_state: Tensor,
    checkpoint_slots: Tensor | None = None,
    checkpoint_offsets: Tensor | None = None,
) -> Tensor:
    return lookup("gdn_recurrent")(
        q, k, v, a, b, A_log, dt_bias, state, slot_ids, has_initial_state,
        checkpoint_slots, checkpoint_offsets,
    )  # fmt: skip


def write_kv_cache(
    k: Tensor, v: Tensor, k_cache: Tensor, v_cache: Tensor, kv_indices: Tensor
) -> None:
    lookup("write_kv_cache")(k, v, k_cache, v_cache, kv_indices)


def paged_attention(
    q: Tensor,
    k_cache: Tensor,
    v_cache: Tensor,
    page_table: Tensor,
    cu_seqlens: Tensor,
    prefix_lens: Tensor,
    scale: float,
    gate: Tensor | None = None,
) -> Tensor:
    """`reference.attention.paged_attention`; ``gate``: the output is ``o * sigmoid(gate)``
    (fused into the attention epilogue on Triton)."""
    return lookup("paged_attention")(
        q, k_cache, v_cache, page_table, cu_seqlens, prefix_lens, scale, gate
    )


def moe_route(router_logits: Tensor, top_k: int, renormalize: bool) -> tuple[Tensor, Tensor]:
    return lookup("moe_route")(router_logits, top_k, renormalize)


def moe_route_shared(router_logits: Tensor, top_k: int, renormalize: bool) -> tuple[Tensor, Tensor]:
    return lookup("moe_route_shared")(router_logits, top_k, renormalize)


def moe_experts(
    x: Tensor, w_gate_up: Tensor, w_down: Tensor, weights: Tensor, ids: Tensor
) -> Tensor:
    return lookup("moe_experts")(x, w_gate_up, w_down, weights, ids)


def add_gated_shared_expert(routed: Tensor, shared: Tensor, gate_logit: Tensor) -> Tensor:
    return lookup("add_gated_shared_expert")(routed, shared, gate_logit)


def norm_linear(
    x: Tensor,
    residual: Tensor | None,
    norm_weight: Tensor,
    eps: float,
    weight: Tensor,
    return_h: bool,
    site: str = "",
) -> tuple[Tensor, Tensor, Tensor | None]:
    return lookup("norm_linear")(x, residual, norm_weight, eps, weight, return_h, site)


def gated_norm_linear(
    o: Tensor, gate: Tensor, norm_weight: Tensor, eps: float, weight: Tensor, site: str = ""
) -> Tensor:
    return lookup("gated_norm_linear")(o, gate, norm_weight, eps, weight, site)


def linear_small(x: Tensor, weight: Tensor, site: str = "") -> Tensor:
    return lookup("linear_small")(x, weight, site)
