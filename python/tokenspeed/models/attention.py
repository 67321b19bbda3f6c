"""Gated full attention (spec §2.4): q/gate per-head interleave, zero-centred q/k norm,
partial NeoX RoPE, paged causal GQA attention, sigmoid output gate."""

from __future__ import annotations

from torch import Tensor

from tokenspeed.config import ModelConfig
from tokenspeed.kernels import ops
from tokenspeed.models.context import StepContext
from tokenspeed.models.params import Params


class GatedAttention:
    def __init__(self, cfg: ModelConfig, params: Params, prefix: str, cache_index: int) -> None:
        p = prefix + "self_attn."
        self.num_heads = cfg.num_attention_heads
        self.num_kv_heads = cfg.num_key_value_heads
        self.head_dim = cfg.head_dim
        self.eps = cfg.rms_norm_eps
        self.scale = cfg.head_dim**-0.5
        self.cache_index = cache_index
        # q_proj rows stay in the checkpoint order [q_0, gate_0, q_1, gate_1, ...].
        self.qkv_proj = params.take_cat(
            p + "q_proj.weight", p + "k_proj.weight", p + "v_proj.weight"
        )
        self.o_proj = params.take(p + "o_proj.weight")
        self.q_norm = params.take(p + "q_norm.weight")
        self.k_norm = params.take(p + "k_norm.weight")

    @property
    def input_projection(self) -> tuple[Tensor, str]:
        """The projection the layer applies (fused with its norm) before ``forward``, and its
        site name (`ops.norm_linear`)."""
        return self.qkv_proj, "qkv_proj"

    def forward(self, qkv: Tensor, ctx: StepContext) -> Tensor:
        """``qkv``: the output of ``qkv_proj`` (the layer projects it, fused with its norm)."""
        tokens = qkv.shape[0]
        nh, nkv, hd = self.num_heads, self.num_kv_heads, self.head_dim
        k_cache = ctx.kv_cache.k[self.cache_index]
        v_cache = ctx.kv_cache.v[self.cache_index]
        # q/k norm + partial RoPE + gate split + K/V cache write, one op (fused on Triton).
        q, gate = ops.qk_norm_rope_kv_write(
            qkv, self.q_norm, self.k_norm, self.eps,
            ctx.batch.positions, ctx.inv_freq, nh, nkv, hd, k_cache, v_cache, ctx.kv_indices,
        )  # fmt: skip
        b = ctx.batch
        # The sigmoid output gate is applied inside the attention op (its epilogue on Triton).
        o = ops.paged_attention(
            q, k_cache, v_cache, b.page_table, b.cu_seqlens, b.prefix_lens, self.scale, gate
        ).reshape(tokens, nh * hd)
        return ops.linear_small(o, self.o_proj, "o_proj")
