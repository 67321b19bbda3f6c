"""Canonical parameter names and shapes the model consumes (see notes/py_contract.md)."""

from __future__ import annotations

from dataclasses import dataclass

from tokenspeed.config import FULL, ModelConfig


class WeightError(ValueError):
    """A checkpoint that does not fit the config; the message names the tensor(s)."""


@dataclass(frozen=True)
class ParamSpec:
    """Shape of one canonical parameter; ``keep_fp32`` ones stay float32 whatever the dtype."""

    shape: tuple[int, ...]
    keep_fp32: bool = False


def param_specs(cfg: ModelConfig) -> dict[str, ParamSpec]:
    """Every parameter of the text model, prefix stripped, in layer order."""
    H, V = cfg.hidden_size, cfg.vocab_size
    specs: dict[str, ParamSpec] = {"embed_tokens.weight": ParamSpec((V, H))}
    for i in range(cfg.num_hidden_layers):
        p = f"layers.{i}."
        specs[p + "input_layernorm.weight"] = ParamSpec((H,))
        specs[p + "post_attention_layernorm.weight"] = ParamSpec((H,))
        mixer = _attention(cfg) if cfg.layer_types[i] == FULL else _gated_deltanet(cfg)
        ffn = _moe(cfg) if cfg.mlp_types[i] == "moe" else _dense_mlp(cfg)
        specs.update({p + name: spec for name, spec in (mixer | ffn).items()})
    specs["norm.weight"] = ParamSpec((H,))
    specs["lm_head.weight"] = ParamSpec((V, H))
    return specs


def _gated_deltanet(cfg: ModelConfig) -> dict[str, ParamSpec]:
    H, Hv, dv = cfg.hidden_size, cfg.linear_num_value_heads, cfg.linear_value_head_dim
    a = "linear_attn."
    return {
        a + "in_proj_qkv.weight": ParamSpec((cfg.conv_dim, H)),
        a + "in_proj_z.weight": ParamSpec((cfg.value_dim, H)),
        a + "in_proj_b.weight": ParamSpec((Hv, H)),
        a + "in_proj_a.weight": ParamSpec((Hv, H)),
        a + "conv1d.weight": ParamSpec((cfg.conv_dim, 1, cfg.linear_conv_kernel_dim)),
        a + "A_log": ParamSpec((Hv,), keep_fp32=True),
        a + "dt_bias": ParamSpec((Hv,)),
        a + "norm.weight": ParamSpec((dv,), keep_fp32=True),
        a + "out_proj.weight": ParamSpec((H, cfg.value_dim)),
    }


def _attention(cfg: ModelConfig) -> dict[str, ParamSpec]:
    H, hd = cfg.hidden_size, cfg.head_dim
    q_out, kv_out = cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd
    a = "self_attn."
    return {
        a + "q_proj.weight": ParamSpec((2 * q_out, H)),  # per-head [q | gate] interleave
        a + "k_proj.weight": ParamSpec((kv_out, H)),
        a + "v_proj.weight": ParamSpec((kv_out, H)),
        a + "o_proj.weight": ParamSpec((H, q_out)),
        a + "q_norm.weight": ParamSpec((hd,)),
        a + "k_norm.weight": ParamSpec((hd,)),
    }


def _dense_mlp(cfg: ModelConfig) -> dict[str, ParamSpec]:
    H, In = cfg.hidden_size, cfg.intermediate_size
    return {
        "mlp.gate_proj.weight": ParamSpec((In, H)),
        "mlp.up_proj.weight": ParamSpec((In, H)),
        "mlp.down_proj.weight": ParamSpec((H, In)),
    }


def _moe(cfg: ModelConfig) -> dict[str, ParamSpec]:
    H, E = cfg.hidden_size, cfg.num_experts
    Im, Is = cfg.moe_intermediate_size, cfg.shared_expert_intermediate_size
    return {
        "mlp.gate.weight": ParamSpec((E, H)),
        "mlp.experts.gate_up_proj": ParamSpec((E, 2 * Im, H)),  # gate rows first
        "mlp.experts.down_proj": ParamSpec((E, H, Im)),
        "mlp.shared_expert.gate_proj.weight": ParamSpec((Is, H)),
        "mlp.shared_expert.up_proj.weight": ParamSpec((Is, H)),
        "mlp.shared_expert.down_proj.weight": ParamSpec((H, Is)),
        "mlp.shared_expert_gate.weight": ParamSpec((1, H)),
    }
