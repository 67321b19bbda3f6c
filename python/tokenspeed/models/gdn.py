"""Gated DeltaNet linear attention (spec §2.5): projections, causal conv over q/k/v only,
gated delta rule on fp32 state slots, gated RMSNorm, out_proj."""

from __future__ import annotations

from torch import Tensor

from tokenspeed.config import ModelConfig
from tokenspeed.kernels import ops
from tokenspeed.models.context import StepContext
from tokenspeed.models.params import Params


class GatedDeltaNet:
    def __init__(self, cfg: ModelConfig, params: Params, prefix: str, cache_index: int) -> None:
        p = prefix + "linear_attn."
        self.num_k_heads = cfg.linear_num_key_heads
        self.num_v_heads = cfg.linear_num_value_heads
        self.head_k_dim = cfg.linear_key_head_dim
        self.head_v_dim = cfg.linear_value_head_dim
        self.key_dim, self.value_dim = cfg.key_dim, cfg.value_dim
        self.eps = cfg.rms_norm_eps
        self.cache_index = cache_index
        # One GEMM for [q|k|v (conv input) | z | b | a].
        self.in_proj = params.take_cat(
            p + "in_proj_qkv.weight", p + "in_proj_z.weight", p + "in_proj_b.weight",
            p + "in_proj_a.weight",
        )  # fmt: skip
        self.conv_weight = params.take(p + "conv1d.weight")[:, 0, :].contiguous()  # [C, K]
        self.A_log = params.take(p + "A_log")
        self.dt_bias = params.take(p + "dt_bias")
        self.norm = params.take(p + "norm.weight")
        self.out_proj = params.take(p + "out_proj.weight")

    @property
    def input_projection(self) -> tuple[Tensor, str]:
        """The projection the layer applies (fused with its norm) before ``forward``, and its
        site name (`ops.norm_linear`)."""
        return self.in_proj, "in_proj"

    def forward(self, proj: Tensor, ctx: StepContext) -> Tensor:
        """``proj``: the output of ``in_proj`` (the layer projects it, fused with its norm)."""
        tokens = proj.shape[0]
        hk, hv, dk, dv = self.num_k_heads, self.num_v_heads, self.head_k_dim, self.head_v_dim
        conv_dim = 2 * self.key_dim + self.value_dim
        mixed, z, b, a = proj.split([conv_dim, self.value_dim, hv, hv], -1)
        batch = ctx.batch
        conv_state = ctx.state_cache.conv[self.cache_index]
        ssm_state = ctx.state_cache.ssm[self.cache_index]
        ckpt = (batch.checkpoint_slots, batch.checkpoint_offsets)
        if batch.is_decode:
            y = ops.conv1d_decode(
                mixed, self.conv_weight, conv_state, batch.slot_ids, batch.has_initial_state, *ckpt
            )
        else:
            y = ops.conv1d_varlen(
                mixed, self.conv_weight, conv_state, batch.cu_seqlens, batch.slot_ids,
                batch.has_initial_state, *ckpt,
            )  # fmt: skip
        q, k, v = y.split([self.key_dim, self.key_dim, self.value_dim], dim=-1)
        q, k, v = q.view(tokens, hk, dk), k.view(tokens, hk, dk), v.view(tokens, hv, dv)
        gdn_args = (q, k, v, a, b, self.A_log, self.dt_bias, ssm_state)
        if batch.is_decode:
            o = ops.gdn_recurrent(*gdn_args, batch.slot_ids, batch.has_initial_state, *ckpt)
        else:
            o = ops.gdn_chunked(
                *gdn_args, batch.cu_seqlens, batch.slot_ids, batch.has_initial_state, *ckpt
            )
        # The gated norm runs as out_proj's prologue at decode (one launch, see ops).
        z = z.view(tokens, hv, dv)
        return ops.gated_norm_linear(o, z, self.norm, self.eps, self.out_proj, "out_proj")
