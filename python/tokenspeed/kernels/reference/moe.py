"""Sparse MoE pieces (spec §2.6): softmax→top-k→renorm routing, expert SwiGLU, shared gate."""

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


def moe_experts(
    x: Tensor, w_gate_up: Tensor, w_down: Tensor, weights: Tensor, ids: Tensor
) -> Tensor:
    """``Σ_j weights[:, j] * down_e(silu(gate_e(x)) * up_e(x))`` over the chosen experts
    ``e = ids[:, j]``. ``w_gate_up`` ``[E, 2*Im, H]`` (gate rows first), ``w_down``
    ``[E, H, Im]``. Sums expert by expert in the activation dtype (HF's eager order)."""
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
