"""Sparse MoE pieces (spec §2.6): softmax→top-k→renorm routing, expert SwiGLU, shared gate.

Two ways to run the shared expert: as a dense MLP added by `add_gated_shared_expert` (any
width), or, when it is as wide as the routed experts, as expert ``E`` of the experts' tensors
that every token uses with weight ``sigmoid(gate logit)`` (`moe_route_shared` appends it, then
`moe_experts` computes and sums it with the routed ones: the same math, fewer launches).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def moe_route(router_logits: Tensor, top_k: int, renormalize: bool) -> tuple[Tensor, Tensor]:
    """Softmax over all experts in fp32, then top-k, then (optionally) renormalise the k
    probabilities to sum to 1. Returns ``(weights [N, k]`` in the logits dtype, ``ids [N, k])``."""
    probs = torch.softmax(router_logits, dim=-1, dtype=torch.float32)
    weights, ids = torch.topk(probs, top_k, dim=-1)
    if renormalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights.to(router_logits.dtype), ids


def moe_route_shared(router_logits: Tensor, top_k: int, renormalize: bool) -> tuple[Tensor, Tensor]:
    """`moe_route` over the first ``E`` of ``router_logits [N, E+1]``, plus the shared expert
    as slot ``k``: id ``E``, weight ``sigmoid(router_logits[:, E])`` (the ``shared_expert_gate``
    logit; gated, not routed). Returns ``(weights [N, k+1]`` in the logits dtype,
    ``ids [N, k+1])``."""
    weights, ids = moe_route(router_logits[:, :-1], top_k, renormalize)
    shared = torch.full_like(ids[:, :1], router_logits.shape[1] - 1)
    gate = torch.sigmoid(router_logits[:, -1:])
    return torch.cat([weights, gate], dim=1), torch.cat([ids, shared], dim=1)


def moe_experts(
    x: Tensor, w_gate_up: Tensor, w_down: Tensor, weights: Tensor, ids: Tensor
) -> Tensor:
    """``Σ_j weights[:, j] * down_e(silu(gate_e(x)) * up_e(x))`` over the chosen experts
    ``e = ids[:, j]``. ``w_gate_up`` ``[E, 2*Im, H]`` (gate rows first), ``w_down``
    ``[E, H, Im]``. Sums expert by expert in the activation dtype (HF's eager order: with the
    shared expert as the last expert, from `moe_route_shared`, it is added last, after the
    routed sum, exactly as spec §2.6 adds it)."""
    out = torch.zeros_like(x)
    for expert in torch.unique(ids).tolist():
        token_idx, slot = torch.where(ids == expert)
        gate, up = F.linear(x[token_idx], w_gate_up[expert]).chunk(2, dim=-1)
        y = F.linear(F.silu(gate) * up, w_down[expert]) * weights[token_idx, slot, None]
        out.index_add_(0, token_idx, y.to(out.dtype))
    return out


def add_gated_shared_expert(routed: Tensor, shared: Tensor, gate_logit: Tensor) -> Tensor:
    """``routed + sigmoid(gate_logit) * shared``; ``gate_logit`` ``[N, 1]`` is the output of
    ``shared_expert_gate`` (a Linear(H, 1)): the shared expert is *not* weighted by routing."""
    return routed + torch.sigmoid(gate_logit) * shared
