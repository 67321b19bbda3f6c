"""Feed-forward blocks (spec §2.6): dense SwiGLU and sparse MoE with a gated shared expert."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from tokenspeed.config import ModelConfig
from tokenspeed.kernels import ops
from tokenspeed.models.params import Params


class DenseMLP:
    def __init__(self, params: Params, prefix: str) -> None:
        self.gate_up = params.take_cat(prefix + "gate_proj.weight", prefix + "up_proj.weight")
        self.down = params.take(prefix + "down_proj.weight")

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(ops.silu_and_mul(F.linear(x, self.gate_up)), self.down)


class SparseMoE:
    """Routed experts (softmax → top-k → renorm) plus one always-on shared expert whose output
    is scaled by ``sigmoid(shared_expert_gate(x))``."""

    def __init__(self, cfg: ModelConfig, params: Params, prefix: str) -> None:
        p = prefix + "mlp."
        self.top_k = cfg.num_experts_per_tok
        self.renormalize = cfg.norm_topk_prob
        self.router = params.take(p + "gate.weight")
        self.experts_gate_up = params.take(p + "experts.gate_up_proj")
        self.experts_down = params.take(p + "experts.down_proj")
        self.shared_expert = DenseMLP(params, p + "shared_expert.")
        self.shared_expert_gate = params.take(p + "shared_expert_gate.weight")

    def forward(self, x: Tensor) -> Tensor:
        weights, ids = ops.moe_route(F.linear(x, self.router), self.top_k, self.renormalize)
        routed = ops.moe_experts(x, self.experts_gate_up, self.experts_down, weights, ids)
        shared = self.shared_expert.forward(x)
        return ops.add_gated_shared_expert(routed, shared, F.linear(x, self.shared_expert_gate))
