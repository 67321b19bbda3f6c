"""Weight loading: safetensors checkpoints (or random dummy weights) -> canonical parameters."""

from tokenspeed.weights.dummy import dummy_weights
from tokenspeed.weights.fused_experts import shares_expert_slot, with_shared_expert
from tokenspeed.weights.loader import load_weights
from tokenspeed.weights.specs import ParamSpec, WeightError, param_specs

__all__ = [
    "ParamSpec",
    "WeightError",
    "dummy_weights",
    "load_weights",
    "param_specs",
    "shares_expert_slot",
    "with_shared_expert",
]
