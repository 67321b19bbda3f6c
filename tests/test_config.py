"""tokenspeed.config against transformers' own config classes (the reference for defaults)."""

from __future__ import annotations

import json

import hf_fixtures as fx
import pytest
from tokenspeed.config import FULL, LINEAR, ConfigError, ModelConfig
from transformers import CONFIG_MAPPING


def hf_text_config(d: dict):
    """What HF makes of a config.json dict (its text config for wrappers)."""
    hf = CONFIG_MAPPING[d["model_type"]].from_dict(json.loads(json.dumps(d)))
    return getattr(hf, "text_config", hf) if hasattr(hf, "text_config") else hf


def assert_matches_hf(cfg: ModelConfig, d: dict) -> None:
    hf = hf_text_config(d)
    for field in (
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "linear_num_key_heads",
        "linear_num_value_heads",
        "linear_key_head_dim",
        "linear_value_head_dim",
        "linear_conv_kernel_dim",
        "rms_norm_eps",
        "max_position_embeddings",
    ):
        assert getattr(cfg, field) == getattr(hf, field), field
    assert cfg.layer_types == tuple(hf.layer_types)
    assert cfg.rope_theta == hf.rope_parameters["rope_theta"]
    assert cfg.partial_rotary_factor == hf.rope_parameters["partial_rotary_factor"]


def mlp_kinds(model) -> tuple[str, ...]:
    layers = model.model.language_model.layers if hasattr(model.model, "language_model") else None
    layers = layers if layers is not None else model.model.layers
    return tuple("moe" if "Sparse" in type(layer.mlp).__name__ else "dense" for layer in layers)


# ---- every model type, from the fixtures' real config.json -----------------------------------
FAMILY = {
    "dense": "qwen3_5",
    "dense_tied": "qwen3_5",
    "dense_layer_types": "qwen3_5",
    "moe": "qwen3_5_moe",
    "next": "qwen3_next",
    "vlm": "qwen3_5",
    "vlm_moe": "qwen3_5_moe",
}


@pytest.mark.parametrize("name", fx.FIXTURE_NAMES)
def test_fixture_configs_match_hf(name, tmp_path):
    model = fx.build(name)
    fx.save_checkpoint(model, tmp_path)
    d = json.loads((tmp_path / "config.json").read_text())
    cfg = ModelConfig.from_pretrained(tmp_path)

    assert cfg.model_type == d["model_type"]
    wrapper = name.startswith("vlm")
    assert cfg.checkpoint_prefix == ("model.language_model." if wrapper else "model.")
    assert cfg.family == FAMILY[name]
    assert_matches_hf(cfg, d)
    assert cfg.mlp_types == mlp_kinds(model)  # which layers HF actually built as MoE
    assert cfg.tie_word_embeddings == model.config.tie_word_embeddings
    assert cfg.eos_token_ids == (319,)
    assert cfg.torch_dtype == "float32"
    text = getattr(model.config, "text_config", model.config)
    if "moe" in cfg.mlp_types:
        assert (cfg.num_experts, cfg.num_experts_per_tok) == (6, 2)
        assert cfg.moe_intermediate_size == text.moe_intermediate_size
        assert cfg.shared_expert_intermediate_size == text.shared_expert_intermediate_size
    assert cfg.intermediate_size == (96 if "dense" in cfg.mlp_types else 0)


def test_qwen3_next_mixed_layers_and_legacy_rope(tmp_path):
    fx.save_checkpoint(fx.build("next"), tmp_path)
    d = json.loads((tmp_path / "config.json").read_text())
    assert "rope_parameters" not in d and d["rope_theta"] == 500_000.0  # legacy form on disk
    cfg = ModelConfig.from_pretrained(tmp_path)
    assert cfg.mlp_types == ("dense", "moe", "dense", "dense", "dense", "moe")
    assert cfg.layer_types == (LINEAR, LINEAR, FULL) * 2
    assert (cfg.rope_theta, cfg.partial_rotary_factor, cfg.rotary_dim) == (500_000.0, 0.5, 16)
    assert cfg.attention_layer_ids == (2, 5) and cfg.linear_layer_ids == (0, 1, 3, 4)
    assert (cfg.num_attention_layers, cfg.num_linear_layers) == (2, 4)


# ---- released-model shaped configs ------------------------------------------------------------
def qwen35_35b_a3b() -> dict:
    """Shape of Qwen3.5-35B-A3B's config.json (spec §1.3), VLM wrapper form."""
    rope = {
        "rope_type": "default",
        "rope_theta": 10_000_000,
        "partial_rotary_factor": 0.25,
        "mrope_section": [11, 11, 10],
        "mrope_interleaved": True,
    }
    text = {
        "model_type": "qwen3_5_moe_text",
        "vocab_size": 248320,
        "hidden_size": 2048,
        "num_hidden_layers": 40,
        "num_attention_heads": 16,
        "num_key_value_heads": 2,
        "head_dim": 256,
        "linear_num_key_heads": 16,
        "linear_num_value_heads": 32,
        "linear_key_head_dim": 128,
        "linear_value_head_dim": 128,
        "linear_conv_kernel_dim": 4,
        "full_attention_interval": 4,
        "num_experts": 256,
        "num_experts_per_tok": 8,
        "moe_intermediate_size": 512,
        "shared_expert_intermediate_size": 512,
        "rope_parameters": rope,
        "max_position_embeddings": 262144,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": False,
        "eos_token_id": 248044,
        "dtype": "bfloat16",
    }
    return {
        "model_type": "qwen3_5_moe",
        "text_config": text,
        "vision_config": {"model_type": "qwen3_5_moe_vision"},
        "tie_word_embeddings": False,
    }


def test_released_moe_shape():
    d = qwen35_35b_a3b()
    cfg = ModelConfig.from_hf_dict(d)
    assert_matches_hf(cfg, d)
    assert (cfg.num_linear_layers, cfg.num_attention_layers) == (30, 10)
    assert cfg.attention_layer_ids[:3] == (3, 7, 11)
    assert (cfg.rotary_dim, cfg.key_dim, cfg.value_dim, cfg.conv_dim) == (64, 2048, 4096, 8192)
    assert cfg.mlp_types == ("moe",) * 40 and cfg.intermediate_size == 0
    assert cfg.norm_topk_prob is True and cfg.torch_dtype == "bfloat16"
    assert cfg.eos_token_ids == (248044,)


def test_qwen3_next_80b_shape_legacy_fields():
    d = {
        "model_type": "qwen3_next",
        "vocab_size": 151936,
        "hidden_size": 2048,
        "intermediate_size": 5120,
        "num_hidden_layers": 48,
        "num_attention_heads": 16,
        "num_key_value_heads": 2,
        "linear_num_value_heads": 32,
        "num_experts": 512,
        "num_experts_per_tok": 10,
        "moe_intermediate_size": 512,
        "shared_expert_intermediate_size": 512,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
        "norm_topk_prob": True,
        "rope_theta": 10_000_000,
        "partial_rotary_factor": 0.25,
        "rope_scaling": None,
        "full_attention_interval": 4,
        "eos_token_id": [151645, 151643],
        "torch_dtype": "bfloat16",
    }
    cfg = ModelConfig.from_hf_dict(d)
    assert_matches_hf(cfg, d)
    assert cfg.mlp_types == ("moe",) * 48 and cfg.intermediate_size == 0
    assert cfg.rope_theta == 1e7 and cfg.rotary_dim == 64
    assert cfg.eos_token_ids == (151645, 151643) and cfg.torch_dtype == "bfloat16"


# ---- defaults ----------------------------------------------------------------------------------
MINIMAL = {
    "vocab_size": 1000,
    "hidden_size": 256,
    "num_hidden_layers": 8,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "linear_num_value_heads": 32,
}
MINIMAL_MOE = {
    "num_experts": 8,
    "num_experts_per_tok": 2,
    "moe_intermediate_size": 64,
    "shared_expert_intermediate_size": 64,
}


@pytest.mark.parametrize(
    "d",
    [
        {"model_type": "qwen3_5_text", "intermediate_size": 512, **MINIMAL},
        {"model_type": "qwen3_5_moe_text", **MINIMAL, **MINIMAL_MOE},
        {"model_type": "qwen3_next", **MINIMAL, **MINIMAL_MOE},
        {"model_type": "qwen3_5", "text_config": {"intermediate_size": 512, **MINIMAL}},
        {"model_type": "qwen3_5_moe", "text_config": {**MINIMAL, **MINIMAL_MOE}},
    ],
    ids=lambda d: d["model_type"],
)
def test_absent_optional_fields_take_hf_defaults(d):
    cfg = ModelConfig.from_hf_dict(d)
    assert_matches_hf(cfg, d)  # head_dim 256, linear dims 128, K=4, eps, rope, interval 4, ...
    hf = hf_text_config(d)
    assert cfg.tie_word_embeddings is False and cfg.eos_token_ids == ()
    assert cfg.rope_theta == 10_000.0 and cfg.partial_rotary_factor == 0.25
    assert cfg.layer_types == (LINEAR, LINEAR, LINEAR, FULL) * 2
    if d["model_type"] == "qwen3_next":
        assert cfg.norm_topk_prob is hf.norm_topk_prob is True
        assert cfg.mlp_types == ("moe",) * 8  # decoder_sparse_step 1, mlp_only_layers []


def test_full_attention_interval_and_explicit_layer_types():
    base = {"model_type": "qwen3_5_text", "intermediate_size": 64, **MINIMAL}
    cfg = ModelConfig.from_hf_dict({**base, "num_hidden_layers": 7, "full_attention_interval": 3})
    assert cfg.layer_types == (LINEAR, LINEAR, FULL, LINEAR, LINEAR, FULL, LINEAR)
    explicit = [FULL, LINEAR] * 4
    cfg = ModelConfig.from_hf_dict({**base, "layer_types": explicit, "full_attention_interval": 3})
    assert cfg.layer_types == tuple(explicit)  # the explicit list wins, like HF


def test_qwen3_next_sparse_step_and_mlp_only_layers():
    d = {"model_type": "qwen3_next", **MINIMAL, **MINIMAL_MOE, "intermediate_size": 128}
    cfg = ModelConfig.from_hf_dict({**d, "decoder_sparse_step": 2, "mlp_only_layers": [3, 6]})
    assert cfg.mlp_types == ("dense", "moe", "dense", "dense", "dense", "moe", "dense", "moe")
    assert cfg.intermediate_size == 128
    dense_only = ModelConfig.from_hf_dict({**d, "num_experts": 0})
    assert dense_only.mlp_types == ("dense",) * 8 and dense_only.num_experts == 0
    no_dense = ModelConfig.from_hf_dict(d)
    assert no_dense.intermediate_size == 0


def test_norm_topk_prob():
    d = {"model_type": "qwen3_next", **MINIMAL, **MINIMAL_MOE, "norm_topk_prob": False}
    assert ModelConfig.from_hf_dict(d).norm_topk_prob is False
    # Qwen3.5-MoE's router renormalises unconditionally (HF has no switch).
    d = {"model_type": "qwen3_5_moe_text", **MINIMAL, **MINIMAL_MOE, "norm_topk_prob": False}
    assert ModelConfig.from_hf_dict(d).norm_topk_prob is True


def test_rope_parameters_win_over_legacy_fields():
    d = {
        "model_type": "qwen3_5_text",
        "intermediate_size": 64,
        **MINIMAL,
        "rope_theta": 1.0e4,
        "partial_rotary_factor": 0.5,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1.0e7},
    }
    cfg = ModelConfig.from_hf_dict(d)
    assert_matches_hf(cfg, d)
    assert (cfg.rope_theta, cfg.partial_rotary_factor) == (1.0e7, 0.5)


def test_tie_word_embeddings_at_both_levels():
    text = {"intermediate_size": 64, **MINIMAL}
    d = {"model_type": "qwen3_5", "text_config": {**text, "tie_word_embeddings": True}}
    assert ModelConfig.from_hf_dict({**d, "tie_word_embeddings": True}).tie_word_embeddings
    assert ModelConfig.from_hf_dict(d).tie_word_embeddings  # only one level given
    only_top = {"model_type": "qwen3_5", "text_config": text, "tie_word_embeddings": True}
    assert ModelConfig.from_hf_dict(only_top).tie_word_embeddings
    with pytest.raises(ConfigError, match="tie_word_embeddings"):
        ModelConfig.from_hf_dict({**d, "tie_word_embeddings": False})


def test_eos_ids_int_list_and_generation_config(tmp_path):
    text = {"intermediate_size": 64, **MINIMAL, "eos_token_id": 7}
    d = {"model_type": "qwen3_5", "text_config": text, "eos_token_id": [7, 9]}
    assert ModelConfig.from_hf_dict(d).eos_token_ids == (7, 9)
    (tmp_path / "config.json").write_text(json.dumps(d))
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [9, 11]}))
    assert ModelConfig.from_pretrained(tmp_path).eos_token_ids == (7, 9, 11)


# ---- errors --------------------------------------------------------------------------------------
def dense(**changes) -> dict:
    d = {"model_type": "qwen3_5_text", "intermediate_size": 64, **MINIMAL, **changes}
    return {k: v for k, v in d.items() if v is not None}


def moe(**changes) -> dict:
    d = {"model_type": "qwen3_5_moe_text", **MINIMAL, **MINIMAL_MOE, **changes}
    return {k: v for k, v in d.items() if v is not None}


@pytest.mark.parametrize(
    ("d", "field"),
    [
        ({"model_type": "llama", **MINIMAL}, "model_type"),
        ({**MINIMAL}, "model_type"),
        ({"model_type": "qwen3_5"}, "text_config"),
        (
            {"model_type": "qwen3_5", "text_config": {"model_type": "qwen3_5_moe_text", **MINIMAL}},
            "text_config.model_type",
        ),
        (dense(num_key_value_heads=3), "num_attention_heads"),
        (dense(linear_num_key_heads=5), "linear_num_value_heads"),
        (dense(layer_types=[LINEAR, FULL]), "layer_types"),
        (
            dense(num_hidden_layers=2, layer_types=[LINEAR, "sliding_attention"]),
            r"layer_types\[1\]",
        ),
        (moe(num_experts_per_tok=9), "num_experts_per_tok"),
        (dense(hidden_size=None), "hidden_size"),
        (dense(intermediate_size=None), "intermediate_size"),
        (moe(num_experts=None), "num_experts"),
        (moe(shared_expert_intermediate_size=None), "shared_expert_intermediate_size"),
        (dense(hidden_size="64"), "hidden_size"),
        (dense(num_hidden_layers=0), "num_hidden_layers"),
        (dense(full_attention_interval=0), "full_attention_interval"),
        (dense(rope_parameters={"rope_type": "yarn", "factor": 4.0}), "rope_type"),
        (dense(rope_scaling={"type": "linear", "factor": 2.0}), "rope_type"),
        (dense(partial_rotary_factor=1.5), "partial_rotary_factor"),
        (dense(head_dim=10, partial_rotary_factor=0.1), "partial_rotary_factor"),
        (dense(eos_token_id="</s>"), "eos_token_id"),
        (
            {"model_type": "qwen3_next", **MINIMAL, **MINIMAL_MOE, "mlp_only_layers": [8]},
            "mlp_only_layers",
        ),
        (dense(tie_word_embeddings="yes"), "tie_word_embeddings"),
    ],
)
def test_config_errors_name_the_field(d, field):
    with pytest.raises(ConfigError, match=field):
        ModelConfig.from_hf_dict(d)


def test_from_pretrained_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"config\.json"):
        ModelConfig.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="JSON"):
        ModelConfig.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mamba", **MINIMAL}))
    with pytest.raises(ConfigError, match=r"model_type.*mamba"):
        ModelConfig.from_pretrained(tmp_path)


def test_config_is_frozen():
    cfg = ModelConfig.from_hf_dict(dense())
    with pytest.raises(AttributeError):
        cfg.hidden_size = 1  # type: ignore[misc]
