"""Random weights of the right shapes, generated directly on the device (for benchmarks of
models whose checkpoints are not on the machine). Deterministic for a given seed and device."""

from __future__ import annotations

import math

import torch

from tokenspeed.config import ModelConfig
from tokenspeed.weights.fused_experts import fused_expert_views
from tokenspeed.weights.specs import param_specs


@torch.no_grad()
def dummy_weights(
    cfg: ModelConfig, dtype: torch.dtype, device: str | torch.device, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Canonical parameters filled in place on ``device`` (no host round trip)."""
    device = torch.device(device)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    fused = fused_expert_views(cfg, dtype, device)  # filled in place like any other parameter
    for name, spec in param_specs(cfg).items():
        if name == "lm_head.weight" and cfg.tie_word_embeddings:
            out[name] = out["embed_tokens.weight"]
            continue
        t = fused.pop(name, None)
        if t is None:
            t = torch.empty(
                spec.shape, dtype=torch.float32 if spec.keep_fp32 else dtype, device=device
            )
        _fill(name, t, gen, cfg)
        out[name] = t
    return out


def _fill(name: str, t: torch.Tensor, gen: torch.Generator, cfg: ModelConfig) -> None:
    if name.endswith("A_log"):
        # A in [1, 16] like HF's init: decay exp(-A * softplus(.)) spans fast to slow heads.
        t.uniform_(1.0, 16.0, generator=gen).log_()
    elif name.endswith("dt_bias"):
        t.normal_(0.0, 0.1, generator=gen)
    elif name.endswith("linear_attn.norm.weight"):
        t.normal_(1.0, 0.02, generator=gen)  # plain (not zero-centred) gated-norm scale
    elif t.dim() == 1:
        t.normal_(0.0, 0.02, generator=gen)  # zero-centred RMSNorm weights: scale 1 + w
    elif name.endswith("conv1d.weight"):
        t.normal_(0.0, 1.0 / math.sqrt(cfg.linear_conv_kernel_dim), generator=gen)
    else:
        t.normal_(0.0, 0.02, generator=gen)
