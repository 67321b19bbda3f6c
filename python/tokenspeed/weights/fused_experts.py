"""The shared expert stored as expert ``E`` of the routed experts' tensors.

When the shared expert is as wide as a routed expert (every released Qwen3.5-MoE and Qwen3-Next
model), the model runs it as one more expert that every token uses (`ops.moe_route_shared`):
at decode that saves five launches per MoE layer (its GEMVs, activation and gated add). Its
weights must then be row ``E`` of ``[E+1, 2Im, H]`` / ``[E+1, H, Im]`` tensors. The loaders
allocate those tensors once and hand out the canonical parameters as views of them (routed
experts ``[:E]``, the shared expert's ``gate_proj`` / ``up_proj`` / ``down_proj`` in row ``E``),
so filling the canonical parameters fills the fused tensors: nothing is copied or held twice.
"""

from __future__ import annotations

import torch

from tokenspeed.config import ModelConfig


def shares_expert_slot(cfg: ModelConfig) -> bool:
    """Whether the shared expert runs as expert ``E`` of the routed experts' kernels."""
    return cfg.num_experts > 0 and cfg.shared_expert_intermediate_size == cfg.moe_intermediate_size


def fused_expert_views(
    cfg: ModelConfig, dtype: torch.dtype, device: str | torch.device
) -> dict[str, torch.Tensor]:
    """Uninitialised ``[E+1, ...]`` expert tensors of every MoE layer, as views under the
    canonical names of their parts (empty when `shares_expert_slot` is false)."""
    if not shares_expert_slot(cfg):
        return {}
    H, E, Im = cfg.hidden_size, cfg.num_experts, cfg.moe_intermediate_size
    out: dict[str, torch.Tensor] = {}
    for i, kind in enumerate(cfg.mlp_types):
        if kind != "moe":
            continue
        p = f"layers.{i}.mlp."
        gate_up = torch.empty((E + 1, 2 * Im, H), dtype=dtype, device=device)
        down = torch.empty((E + 1, H, Im), dtype=dtype, device=device)
        out[p + "experts.gate_up_proj"] = gate_up[:E]
        out[p + "shared_expert.gate_proj.weight"] = gate_up[E, :Im]
        out[p + "shared_expert.up_proj.weight"] = gate_up[E, Im:]
        out[p + "experts.down_proj"] = down[:E]
        out[p + "shared_expert.down_proj.weight"] = down[E]
    return out


def with_shared_expert(experts: torch.Tensor, shared: list[torch.Tensor]) -> torch.Tensor:
    """Routed experts ``[E, R, C]`` and the shared expert's projections (rows concatenated:
    ``[R, C]``) as one ``[E+1, R, C]`` tensor, the shared expert last.

    Free when they are the views `fused_expert_views` hands out (the memory right after
    ``experts`` holds ``shared``, in order). Weights built elsewhere (an HF state dict) are
    concatenated: a transient copy of one layer's experts."""
    if _followed_by(experts, shared):
        return experts.as_strided((experts.shape[0] + 1, *experts.shape[1:]), experts.stride())
    return torch.cat([experts, torch.cat(shared)[None]])


def _followed_by(w: torch.Tensor, parts: list[torch.Tensor]) -> bool:
    if not w.is_contiguous() or sum(p.numel() for p in parts) != w[0].numel():
        return False
    storage = w.untyped_storage().data_ptr()
    end = w.data_ptr() + w.numel() * w.element_size()
    for p in parts:
        same_buffer = p.untyped_storage().data_ptr() == storage and p.data_ptr() == end
        if not (same_buffer and p.is_contiguous() and p.dtype == w.dtype):
            return False
        end += p.numel() * p.element_size()
    return True
