"""Feed-forward blocks (spec §2.6): dense SwiGLU and sparse MoE with a gated shared expert."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from tokenspeed.config import ModelConfig
from tokenspeed.kernels import ops
from tokenspeed.models.params import Params
from tokenspeed.weights import shares_expert_slot


class DenseMLP:
    def __init__(self, params: Params, prefix: str) -> None:
        self.gate_up = params.take_cat(prefix + "gate_proj.weight", prefix + "up_proj.weight")
        self.down = params.take(prefix + "down_proj.weight")

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(ops.silu_and_mul(F.linear(x, self.gate_up)), self.down)

    def norm_forward(
        self, x: Tensor, residual: Tensor, norm_weight: Tensor, eps: float
    ) -> tuple[Tensor, Tensor]:
        """``forward`` of the residual add + RMSNorm of ``x``: ``(out, residual)``."""
        h, residual = ops.add_rms_norm(x, residual, norm_weight, eps)
        return self.forward(h), residual


class SparseMoE:
    """Routed experts (softmax → top-k → renorm) plus one always-on shared expert whose output
    is scaled by ``sigmoid(shared_expert_gate(x))``.

    One GEMV gives the router logits and, as its last column, the shared gate's logit. A shared
    expert as wide as the routed ones is expert ``E`` of the experts' tensors (see
    `weights.fused_experts`): routing appends it to every token's choices and the expert kernels
    compute it and sum it with the routed outputs (4 launches at decode instead of 9). Otherwise
    it runs as a dense MLP added by ``add_gated_shared_expert``.
    """

    def __init__(self, cfg: ModelConfig, params: Params, prefix: str) -> None:
        p = prefix + "mlp."
        self.top_k = cfg.num_experts_per_tok
        self.renormalize = cfg.norm_topk_prob
        self.router = params.take_cat(p + "gate.weight", p + "shared_expert_gate.weight")
        self.shared_expert: DenseMLP | None = None
        if shares_expert_slot(cfg):
            s = p + "shared_expert."
            self.experts_gate_up = params.take_with_shared(
                p + "experts.gate_up_proj", s + "gate_proj.weight", s + "up_proj.weight"
            )
            self.experts_down = params.take_with_shared(
                p + "experts.down_proj", s + "down_proj.weight"
            )
        else:
            self.experts_gate_up = params.take(p + "experts.gate_up_proj")
            self.experts_down = params.take(p + "experts.down_proj")
            self.shared_expert = DenseMLP(params, p + "shared_expert.")

    def norm_forward(
        self, x: Tensor, residual: Tensor, norm_weight: Tensor, eps: float
    ) -> tuple[Tensor, Tensor]:
        """``forward`` of the residual add + RMSNorm of ``x``: ``(out, residual)``. The norm is
        the router GEMV's prologue (at decode on Triton), which also writes the normed input
        for the experts."""
        logits, residual, h = ops.norm_linear(
            x, residual, norm_weight, eps, self.router, True, "router"
        )
        assert h is not None
        return self.forward(h, logits), residual

    def forward(self, x: Tensor, logits: Tensor) -> Tensor:
        """``x``: the normed input, ``logits = x @ router^T`` (``[N, E + 1]``: routed experts,
        then the shared gate), computed by the layer fused with the norm."""
        if self.shared_expert is None:
            weights, ids = ops.moe_route_shared(logits, self.top_k, self.renormalize)
            return ops.moe_experts(x, self.experts_gate_up, self.experts_down, weights, ids)
        weights, ids = ops.moe_route(logits[:, :-1], self.top_k, self.renormalize)
        routed = ops.moe_experts(x, self.experts_gate_up, self.experts_down, weights, ids)
        shared = self.shared_expert.forward(x)
        return ops.add_gated_shared_expert(routed, shared, logits[:, -1:])
