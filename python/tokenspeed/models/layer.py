"""One pre-norm decoder layer: token mixer (GDN or gated attention) then FFN (dense or MoE)."""

from __future__ import annotations

from torch import Tensor

from tokenspeed.config import FULL, ModelConfig
from tokenspeed.kernels import ops
from tokenspeed.models.attention import GatedAttention
from tokenspeed.models.context import StepContext
from tokenspeed.models.ffn import DenseMLP, SparseMoE
from tokenspeed.models.gdn import GatedDeltaNet
from tokenspeed.models.params import Params


class DecoderLayer:
    def __init__(self, cfg: ModelConfig, params: Params, index: int) -> None:
        prefix = f"layers.{index}."
        self.eps = cfg.rms_norm_eps
        self.input_norm = params.take(prefix + "input_layernorm.weight")
        self.post_attention_norm = params.take(prefix + "post_attention_layernorm.weight")
        self.mixer: GatedAttention | GatedDeltaNet
        if cfg.layer_types[index] == FULL:
            cache_index = cfg.attention_layer_ids.index(index)
            self.mixer = GatedAttention(cfg, params, prefix, cache_index)
        else:
            cache_index = cfg.linear_layer_ids.index(index)
            self.mixer = GatedDeltaNet(cfg, params, prefix, cache_index)
        self.ffn: DenseMLP | SparseMoE
        if cfg.mlp_types[index] == "moe":
            self.ffn = SparseMoE(cfg, params, prefix)
        else:
            self.ffn = DenseMLP(params, prefix + "mlp.")

    def forward(
        self, x: Tensor, residual: Tensor | None, ctx: StepContext
    ) -> tuple[Tensor, Tensor]:
        """``(x, residual)`` -> ``(ffn_out, residual)``; the caller adds the last pair.

        Residual adds happen in the activation dtype, fused with the following norm; at decode
        (Triton) the norm is also the prologue of the next projection's GEMV (`ops.norm_linear`).
        """
        weight, site = self.mixer.input_projection
        proj, residual, _ = ops.norm_linear(
            x, residual, self.input_norm, self.eps, weight, False, site
        )
        h = self.mixer.forward(proj, ctx)
        return self.ffn.norm_forward(h, residual, self.post_attention_norm, self.eps)
