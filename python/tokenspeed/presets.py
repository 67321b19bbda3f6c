"""Built-in model presets: Hugging Face-style ``config.json`` dicts of released models, so a
model whose checkpoint is not on the machine can run with ``load_format="dummy"`` (benchmarks)
and ``num_layers=N`` (a slice of a model too big for one GPU).

Values: spec §1.3 (``qwen3_5_spec.md``). 35B-A3B is read from a real config; the others are
third-party or model-card values (see the spec's provenance column).
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

from tokenspeed.config import ModelConfig

_ROPE = {
    "rope_type": "default",
    "rope_theta": 10_000_000,
    "partial_rotary_factor": 0.25,
    "mrope_section": [11, 11, 10],
    "mrope_interleaved": True,
}
# Fields every Qwen3.5 text config shares (spec §1.3 "Common to every row").
_QWEN3_5_COMMON: dict[str, Any] = {
    "head_dim": 256,
    "linear_num_key_heads": 16,
    "linear_key_head_dim": 128,
    "linear_value_head_dim": 128,
    "linear_conv_kernel_dim": 4,
    "full_attention_interval": 4,
    "rms_norm_eps": 1e-6,
    "hidden_act": "silu",
    "attention_bias": False,
    "attn_output_gate": True,
    "max_position_embeddings": 262144,
    "vocab_size": 248320,
    "rope_parameters": _ROPE,
    "mtp_num_hidden_layers": 1,
    "mamba_ssm_dtype": "float32",
    "dtype": "bfloat16",
}
_QWEN3_5_EOS = [248046, 248044]  # <|im_end|>, <|endoftext|>


def _qwen3_5(moe: bool, tie: bool, **text: Any) -> dict[str, Any]:
    kind = "qwen3_5_moe" if moe else "qwen3_5"
    text_config = {"model_type": f"{kind}_text", **_QWEN3_5_COMMON, **text}
    text_config["tie_word_embeddings"] = tie
    text_config["eos_token_id"] = _QWEN3_5_EOS
    return {
        "model_type": kind,
        "architectures": [
            "Qwen3_5MoeForConditionalGeneration" if moe else "Qwen3_5ForConditionalGeneration"
        ],
        "text_config": text_config,
        "tie_word_embeddings": tie,
    }


PRESETS: dict[str, dict[str, Any]] = {
    "qwen3.5-0.8b": _qwen3_5(
        moe=False, tie=True, hidden_size=1024, num_hidden_layers=24, num_attention_heads=8,
        num_key_value_heads=2, linear_num_value_heads=16, intermediate_size=3584,
    ),
    "qwen3.5-35b-a3b": _qwen3_5(
        moe=True, tie=False, hidden_size=2048, num_hidden_layers=40, num_attention_heads=16,
        num_key_value_heads=2, linear_num_value_heads=32, num_experts=256,
        num_experts_per_tok=8, moe_intermediate_size=512, shared_expert_intermediate_size=512,
    ),
    "qwen3.5-397b-a17b": _qwen3_5(
        moe=True, tie=False, hidden_size=4096, num_hidden_layers=60, num_attention_heads=32,
        num_key_value_heads=2, linear_num_value_heads=64, num_experts=512,
        num_experts_per_tok=10, moe_intermediate_size=1024, shared_expert_intermediate_size=1024,
    ),
    "qwen3-next-80b-a3b": {
        "model_type": "qwen3_next",
        "architectures": ["Qwen3NextForCausalLM"],
        "vocab_size": 151936, "hidden_size": 2048, "num_hidden_layers": 48,
        "num_attention_heads": 16, "num_key_value_heads": 2, "head_dim": 256,
        "linear_num_key_heads": 16, "linear_num_value_heads": 32, "linear_key_head_dim": 128,
        "linear_value_head_dim": 128, "linear_conv_kernel_dim": 4, "full_attention_interval": 4,
        "intermediate_size": 5120, "num_experts": 512, "num_experts_per_tok": 10,
        "moe_intermediate_size": 512, "shared_expert_intermediate_size": 512,
        "decoder_sparse_step": 1, "mlp_only_layers": [], "norm_topk_prob": True,
        "rms_norm_eps": 1e-6, "rope_theta": 10_000_000, "partial_rotary_factor": 0.25,
        "max_position_embeddings": 262144, "tie_word_embeddings": False,
        "torch_dtype": "bfloat16", "eos_token_id": [151645, 151643],
    },
}  # fmt: skip


def is_preset(name: str) -> bool:
    return name.lower() in PRESETS


def preset_dict(name: str) -> dict[str, Any]:
    """A fresh copy of the preset's HF config dict."""
    key = name.lower()
    if key not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; presets: {', '.join(PRESETS)}")
    return copy.deepcopy(PRESETS[key])


def preset_config(name: str, num_layers: int | None = None) -> ModelConfig:
    """The preset's ``ModelConfig``, optionally cut to its first ``num_layers`` layers."""
    return slice_layers(ModelConfig.from_hf_dict(preset_dict(name)), num_layers)


def slice_layers(cfg: ModelConfig, num_layers: int | None) -> ModelConfig:
    """``cfg`` with only its first ``num_layers`` decoder layers (layer types kept), so a slice of
    a model too big for one device runs at the real per-layer shapes."""
    if num_layers is None:
        return cfg
    if not 1 <= num_layers <= cfg.num_hidden_layers:
        raise ValueError(
            f"num_layers={num_layers}: must be in [1, {cfg.num_hidden_layers}] for this model"
        )
    return replace(
        cfg,
        num_hidden_layers=num_layers,
        layer_types=cfg.layer_types[:num_layers],
        mlp_types=cfg.mlp_types[:num_layers],
    )
