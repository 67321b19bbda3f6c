"""Model presets parse, and their parameter counts match the spec's (§1.3 sanity check), computed
from the canonical parameter shapes without allocating any weight."""

from __future__ import annotations

import math

import pytest
from tokenspeed.config import FULL, LINEAR
from tokenspeed.presets import PRESETS, preset_config, slice_layers
from tokenspeed.weights.specs import param_specs


def counts(name: str) -> tuple[float, float]:
    """(total, active) parameters in billions; tied embeddings counted once, like the spec."""
    cfg = preset_config(name)
    total = active = 0
    for key, spec in param_specs(cfg).items():
        if key == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        n = math.prod(spec.shape)
        total += n
        active += n * cfg.num_experts_per_tok // cfg.num_experts if ".experts." in key else n
    return total / 1e9, active / 1e9


@pytest.mark.parametrize(
    ("name", "total", "active"),
    [
        ("qwen3.5-0.8b", 0.75, 0.75),
        ("qwen3.5-35b-a3b", 34.66, 3.45),
        ("qwen3.5-397b-a17b", 396.35, 17.35),
        ("qwen3-next-80b-a3b", 79.67, 3.87),
    ],
)
def test_parameter_counts_match_spec(name: str, total: float, active: float) -> None:
    got_total, got_active = counts(name)
    assert got_total == pytest.approx(total, abs=0.006)
    assert got_active == pytest.approx(active, abs=0.006)


def test_layer_pattern_and_families() -> None:
    cfg = preset_config("qwen3.5-35b-a3b")
    assert cfg.family == "qwen3_5_moe" and cfg.num_hidden_layers == 40
    assert (cfg.num_linear_layers, cfg.num_attention_layers) == (30, 10)
    assert cfg.layer_types[:4] == (LINEAR, LINEAR, LINEAR, FULL)
    assert preset_config("qwen3.5-0.8b").tie_word_embeddings
    assert preset_config("qwen3-next-80b-a3b").family == "qwen3_next"
    assert set(PRESETS) == {"qwen3.5-0.8b", "qwen3.5-35b-a3b", "qwen3.5-397b-a17b",
                            "qwen3-next-80b-a3b"}  # fmt: skip


def test_slice_keeps_the_first_layers() -> None:
    full = preset_config("qwen3.5-397b-a17b")
    cut = preset_config("qwen3.5-397b-a17b", num_layers=4)
    assert cut.num_hidden_layers == 4 and cut.layer_types == full.layer_types[:4]
    assert cut.mlp_types == full.mlp_types[:4] and cut.hidden_size == full.hidden_size
    with pytest.raises(ValueError, match="num_layers=61"):
        slice_layers(full, 61)
    with pytest.raises(ValueError, match="unknown model preset"):
        preset_config("qwen9")


def test_llm_rejects_a_preset_without_dummy_weights() -> None:
    from tokenspeed import LLM

    with pytest.raises(ValueError, match="load_format='dummy'"):
        LLM(model="qwen3.5-35b-a3b")
