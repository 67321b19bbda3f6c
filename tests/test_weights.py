"""tokenspeed.weights: every fixture and checkpoint layout loads to exactly HF's parameters."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import hf_fixtures as fx
import pytest
import torch
from safetensors.torch import load_file, save_file
from tokenspeed.config import ConfigError, ModelConfig
from tokenspeed.models import Qwen3_5Model
from tokenspeed.weights import (
    WeightError,
    dummy_weights,
    load_weights,
    param_specs,
    shares_expert_slot,
)

QWEN3_NEXT_FUSED = (
    "in_proj_qkv.weight",
    "in_proj_z.weight",
    "in_proj_b.weight",
    "in_proj_a.weight",
)


@pytest.fixture(scope="module")
def models() -> dict[str, torch.nn.Module]:
    return {name: fx.build(name, seed=3) for name in fx.FIXTURE_NAMES}


def hf_text_params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """HF's parameters under canonical names (prefix stripped, vision tower dropped)."""
    out = {}
    for key, t in model.state_dict().items():
        if key.startswith("model.visual."):
            continue
        for prefix in ("model.language_model.", "model."):
            if key.startswith(prefix):
                key = key[len(prefix) :]
                break
        out[key] = t
    return out


def load(path: Path, dtype=torch.float32, **kw) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    cfg = ModelConfig.from_pretrained(path)
    return cfg, load_weights(path, cfg, dtype, "cpu", **kw)


def assert_loaded_equals_hf(cfg, weights, model) -> None:
    specs = param_specs(cfg)
    assert list(weights) == list(specs)  # exactly the canonical names, in order
    for name, spec in specs.items():
        assert tuple(weights[name].shape) == spec.shape, name
        assert weights[name].is_contiguous(), name
    hf = hf_text_params(model)
    converted = 0
    for name, t in weights.items():
        if name in hf:
            torch.testing.assert_close(t, hf[name], rtol=0, atol=0, msg=name)
        else:  # only Qwen3-Next's split projections have no HF counterpart of that name
            assert cfg.family == "qwen3_next" and name.endswith(QWEN3_NEXT_FUSED), name
            converted += 1
    assert converted == (4 * cfg.num_linear_layers if cfg.family == "qwen3_next" else 0)
    if cfg.tie_word_embeddings:
        assert weights["lm_head.weight"] is weights["embed_tokens.weight"]
    else:
        assert weights["lm_head.weight"].data_ptr() != weights["embed_tokens.weight"].data_ptr()


LAYOUTS = [
    ("dense", {}),
    ("dense", {"shard_bytes": 40_000}),
    ("dense_tied", {}),
    ("dense_tied", {"shard_bytes": 40_000}),
    ("dense_layer_types", {"shard_bytes": 100_000}),
    ("moe", {}),
    ("moe", {"per_expert": True}),
    ("moe", {"per_expert": True, "shard_bytes": 30_000}),
    ("next", {"per_expert": True}),  # the released Qwen3-Next layout
    ("next", {"shard_bytes": 50_000}),
    ("vlm", {}),
    ("vlm", {"shard_bytes": 40_000}),
    ("vlm_moe", {"per_expert": True, "shard_bytes": 60_000}),
]


@pytest.mark.parametrize(("name", "layout"), LAYOUTS, ids=lambda x: str(x))
def test_load_matches_hf(models, tmp_path, name, layout):
    fx.save_checkpoint(models[name], tmp_path, **layout)
    if "shard_bytes" in layout:
        assert len(list(tmp_path.glob("model-*.safetensors"))) > 1
    cfg, weights = load(tmp_path)
    assert_loaded_equals_hf(cfg, weights, models[name])


@pytest.mark.parametrize(("name", "layout"), [("moe", {}), ("vlm_moe", {"per_expert": True})])
def test_shared_expert_is_expert_e_without_a_copy(models, tmp_path, name, layout):
    """Loaded (fused or per-expert layout) and dummy weights: the model's [E+1] expert tensors
    are the loaded tensors' own memory, the shared expert in row E; an HF state dict (weights
    not laid out by our loader) gets the same tensors by one copy."""
    fx.save_checkpoint(models[name], tmp_path, **layout)
    cfg, loaded = load(tmp_path)
    assert shares_expert_slot(cfg)
    e, im, layer = cfg.num_experts, cfg.moe_intermediate_size, cfg.mlp_types.index("moe")
    p, s = f"layers.{layer}.mlp.", f"layers.{layer}.mlp.shared_expert."
    hf = hf_text_params(models[name])
    for source in (loaded, dummy_weights(cfg, torch.float32, "cpu"), hf):
        want = {n: t.clone() for n, t in source.items() if n.startswith(p)}
        ptrs = (
            source[p + "experts.gate_up_proj"].data_ptr(),
            source[p + "experts.down_proj"].data_ptr(),
        )
        ffn = Qwen3_5Model(cfg, source).layers[layer].ffn  # consumes `source`
        assert ffn.shared_expert is None
        same = (ffn.experts_gate_up.data_ptr(), ffn.experts_down.data_ptr()) == ptrs
        assert same == (source is not hf)
        assert torch.equal(ffn.experts_gate_up[:e], want[p + "experts.gate_up_proj"])
        assert torch.equal(ffn.experts_gate_up[e, :im], want[s + "gate_proj.weight"])
        assert torch.equal(ffn.experts_gate_up[e, im:], want[s + "up_proj.weight"])
        assert torch.equal(ffn.experts_down[:e], want[p + "experts.down_proj"])
        assert torch.equal(ffn.experts_down[e], want[s + "down_proj.weight"])
        gates = [want[p + "gate.weight"], want[p + "shared_expert_gate.weight"]]
        assert torch.equal(ffn.router, torch.cat(gates))


def test_vlm_checkpoint_has_vision_keys_and_wrapper_prefix(models, tmp_path):
    fx.save_checkpoint(models["vlm"], tmp_path)
    keys = load_file(tmp_path / "model.safetensors").keys()
    assert any(k.startswith("model.visual.") for k in keys)
    assert "model.language_model.embed_tokens.weight" in keys and "lm_head.weight" not in keys


@torch.no_grad()
def test_qwen3_next_split_matches_hf_fix_query_key_value_ordering(models, tmp_path):
    """q,k,v,z,b,a of a random input: HF's grouped projections + reordering vs the flat weights."""
    model = models["next"]
    fx.save_checkpoint(model, tmp_path, per_expert=True)
    cfg, w = load(tmp_path)
    Hk, Hv = cfg.linear_num_key_heads, cfg.linear_num_value_heads
    dk, dv = cfg.linear_key_head_dim, cfg.linear_value_head_dim
    x = torch.randn(1, 7, cfg.hidden_size, generator=torch.Generator().manual_seed(0))
    for i in cfg.linear_layer_ids:
        la = model.model.layers[i].linear_attn
        ref = la.fix_query_key_value_ordering(la.in_proj_qkvz(x), la.in_proj_ba(x))
        p = f"layers.{i}.linear_attn."
        q, k, v = (x @ w[p + "in_proj_qkv.weight"].T).split([Hk * dk, Hk * dk, Hv * dv], dim=-1)
        ours = (
            q.view(1, 7, Hk, dk),
            k.view(1, 7, Hk, dk),
            v.view(1, 7, Hv, dv),
            (x @ w[p + "in_proj_z.weight"].T).view(1, 7, Hv, dv),
            x @ w[p + "in_proj_b.weight"].T,
            x @ w[p + "in_proj_a.weight"].T,
        )
        for label, a, b in zip("qkvzba", ours, ref, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6, msg=f"layer {i} {label}")


def test_bf16_load_keeps_gdn_fp32_params(models, tmp_path):
    model = models["next"]
    fx.save_checkpoint(model, tmp_path, per_expert=True)
    _, w = load(tmp_path, dtype=torch.bfloat16)
    hf = hf_text_params(model)
    for name, t in w.items():
        fp32 = name.endswith(("linear_attn.A_log", "linear_attn.norm.weight"))
        assert t.dtype == (torch.float32 if fp32 else torch.bfloat16), name
        if fp32:
            assert torch.equal(t, hf[name]), name  # not rounded through bf16
        elif name in hf:
            assert torch.equal(t, hf[name].to(torch.bfloat16)), name


def test_bf16_checkpoint_with_fp32_gdn_params(models, tmp_path):
    """The released layout: bf16 tensors except A_log / GDN norm in fp32."""
    model = models["dense"]
    fx.save_checkpoint(model, tmp_path, dtype=torch.bfloat16)
    on_disk = load_file(tmp_path / "model.safetensors")
    assert on_disk["model.layers.0.linear_attn.A_log"].dtype == torch.float32
    assert on_disk["model.layers.0.linear_attn.dt_bias"].dtype == torch.bfloat16
    _, w = load(tmp_path, dtype=torch.float32)
    hf = hf_text_params(model)
    assert torch.equal(w["layers.0.linear_attn.A_log"], hf["layers.0.linear_attn.A_log"])
    assert torch.equal(
        w["layers.0.linear_attn.dt_bias"], hf["layers.0.linear_attn.dt_bias"].bfloat16().float()
    )
    assert all(t.dtype == torch.float32 for t in w.values())


def test_skipped_keys_and_tied_lm_head_in_file(models, tmp_path):
    src = fx.save_checkpoint(models["dense_tied"], tmp_path / "src")
    tensors = load_file(src / "model.safetensors")
    embed = tensors["model.embed_tokens.weight"]
    extra = {
        "mtp.fc.weight": torch.zeros(64, 128),
        "mtp.layers.0.input_layernorm.weight": torch.zeros(64),
        "model.rotary_emb.inv_freq": torch.zeros(8),
        "model.visual.blocks.0.norm1.weight": torch.zeros(4),
        "lm_head.weight": embed.clone(),  # some tied checkpoints store it anyway: ignored
    }
    dst = rewrite(src, tmp_path / "dst", lambda t: t.update(extra))
    cfg, w = load(dst)
    assert_loaded_equals_hf(cfg, w, models["dense_tied"])


def test_progress_bar(models, tmp_path, monkeypatch, capsys):
    import tokenspeed.weights.loader as loader

    fx.save_checkpoint(models["dense"], tmp_path)
    load(tmp_path)
    assert "Loading weights" not in capsys.readouterr().err  # tiny model: no bar
    monkeypatch.setattr(loader, "_PROGRESS_MIN_ELEMENTS", 0)
    load(tmp_path, progress=False)
    assert "Loading weights" not in capsys.readouterr().err
    load(tmp_path)
    assert "Loading weights" in capsys.readouterr().err


# ---- bad checkpoints -------------------------------------------------------------------------
def rewrite(src: Path, dst: Path, edit) -> Path:
    """Copy a single-file checkpoint, applying ``edit(tensors)`` to its tensors."""
    dst.mkdir(parents=True)
    shutil.copy(src / "config.json", dst / "config.json")
    tensors = load_file(src / "model.safetensors")
    edit(tensors)
    save_file(tensors, dst / "model.safetensors")
    return dst


def expect_error(dst: Path, *needles: str) -> str:
    cfg = ModelConfig.from_pretrained(dst)
    with pytest.raises(WeightError) as err:
        load_weights(dst, cfg, torch.float32, "cpu")
    for needle in needles:
        assert needle in str(err.value)
    return str(err.value)


@pytest.fixture(scope="module")
def saved(models, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ckpt")
    return {
        "dense": fx.save_checkpoint(models["dense"], root / "dense"),
        "moe": fx.save_checkpoint(models["moe"], root / "moe", per_expert=True),
        "next": fx.save_checkpoint(models["next"], root / "next", per_expert=True),
        "vlm": fx.save_checkpoint(models["vlm"], root / "vlm"),
    }


def test_missing_tensor(saved, tmp_path):
    key = "model.layers.1.linear_attn.in_proj_z.weight"
    expect_error(
        rewrite(saved["dense"], tmp_path / "x", lambda t: t.pop(key)), f"missing tensor {key}"
    )


def test_missing_tensor_wrapper_prefix(saved, tmp_path):
    key = "model.language_model.layers.3.self_attn.k_norm.weight"
    expect_error(
        rewrite(saved["vlm"], tmp_path / "x", lambda t: t.pop(key)), f"missing tensor {key}"
    )


def test_missing_untied_lm_head(saved, tmp_path):
    dst = rewrite(saved["dense"], tmp_path / "x", lambda t: t.pop("lm_head.weight"))
    expect_error(dst, "missing tensor lm_head.weight", "tie_word_embeddings")


def test_missing_expert(saved, tmp_path):
    key = "model.layers.2.mlp.experts.4.up_proj.weight"
    msg = expect_error(
        rewrite(saved["moe"], tmp_path / "x", lambda t: t.pop(key)), f"missing tensor {key}"
    )
    assert "gate_up_proj" not in msg  # names the slice, not the fused tensor


def test_missing_qwen3_next_fused_projection(saved, tmp_path):
    key = "model.layers.0.linear_attn.in_proj_ba.weight"
    dst = rewrite(saved["next"], tmp_path / "x", lambda t: t.pop(key))
    expect_error(dst, "missing tensor model.layers.0.linear_attn.in_proj_b.weight", "in_proj_a")


def test_wrong_shape(saved, tmp_path):
    key = "model.layers.3.self_attn.q_proj.weight"
    dst = rewrite(saved["dense"], tmp_path / "x", lambda t: t.update({key: t[key][:192]}))
    expect_error(dst, key, "[192, 64]", "expected [384, 64]")


def test_wrong_shape_per_expert(saved, tmp_path):
    key = "model.layers.0.mlp.experts.1.down_proj.weight"
    dst = rewrite(saved["moe"], tmp_path / "x", lambda t: t.update({key: t[key].T.contiguous()}))
    expect_error(dst, key, "expected [64, 32]")


def test_unexpected_keys(saved, tmp_path):
    extra = {
        "model.layers.0.self_attn.q_proj.weight": torch.zeros(4, 4),  # layer 0 is GDN
        "model.layers.0.mlp.experts.0.gate_proj.weight": torch.zeros(4, 4),  # dense layer
        "transformer.wte.weight": torch.zeros(4, 4),
        "model.layers.9.input_layernorm.weight": torch.zeros(64),
    }
    msg = expect_error(rewrite(saved["dense"], tmp_path / "x", lambda t: t.update(extra)), *extra)
    assert msg.count("unexpected tensor") == 4


def test_unexpected_expert_index(saved, tmp_path):
    key = "model.layers.0.mlp.experts.6.gate_proj.weight"  # only 6 experts: 0..5
    dst = rewrite(saved["moe"], tmp_path / "x", lambda t: t.update({key: torch.zeros(32, 64)}))
    expect_error(dst, f"unexpected tensor {key}")


@pytest.mark.parametrize(
    ("dtype", "label"), [(torch.int64, "I64"), (torch.float8_e4m3fn, "F8_E4M3")]
)
def test_non_float_dtype(saved, tmp_path, dtype, label):
    key = "model.layers.0.linear_attn.dt_bias"
    dst = rewrite(saved["dense"], tmp_path / "x", lambda t: t.update({key: t[key].to(dtype)}))
    expect_error(dst, key, label)


def test_duplicate_under_both_prefixes(saved, tmp_path):
    key = "model.norm.weight"
    dst = rewrite(
        saved["dense"],
        tmp_path / "x",
        lambda t: t.update({"model.language_model.norm.weight": t[key].clone()}),
    )
    expect_error(dst, "duplicates")


def test_all_problems_collected(saved, tmp_path):
    keys = [f"model.layers.{i}.input_layernorm.weight" for i in range(4)]
    dst = rewrite(saved["dense"], tmp_path / "x", lambda t: [t.pop(k) for k in keys])
    expect_error(dst, *keys)


def test_unknown_model_type(saved, tmp_path):
    dst = tmp_path / "x"
    shutil.copytree(saved["dense"], dst)
    d = json.loads((dst / "config.json").read_text())
    (dst / "config.json").write_text(json.dumps({**d, "model_type": "qwen3_moe"}))
    with pytest.raises(ConfigError, match=r"model_type.*qwen3_moe"):
        ModelConfig.from_pretrained(dst)


def test_no_safetensors_and_broken_index(saved, tmp_path):
    cfg = ModelConfig.from_pretrained(saved["dense"])
    with pytest.raises(WeightError, match=r"no \*\.safetensors"):
        load_weights(tmp_path, cfg, torch.float32, "cpu")
    index = {"weight_map": {"model.norm.weight": "model-00002-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(WeightError, match="model-00002-of-00002"):
        load_weights(tmp_path, cfg, torch.float32, "cpu")


# ---- dummy weights ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["dense_tied", "next", "vlm_moe"])
def test_dummy_weights_match_specs(saved, models, tmp_path, name):
    fx.save_checkpoint(models[name], tmp_path)
    cfg = ModelConfig.from_pretrained(tmp_path)
    w = dummy_weights(cfg, torch.bfloat16, "cpu", seed=1)
    specs = param_specs(cfg)
    assert list(w) == list(specs)
    for n, spec in specs.items():
        assert tuple(w[n].shape) == spec.shape, n
        assert w[n].dtype == (torch.float32 if spec.keep_fp32 else torch.bfloat16), n
        assert torch.isfinite(w[n].float()).all(), n
    assert (w["lm_head.weight"] is w["embed_tokens.weight"]) == cfg.tie_word_embeddings
    a_log = w[f"layers.{cfg.linear_layer_ids[0]}.linear_attn.A_log"]
    assert ((a_log >= 0) & (a_log <= torch.log(torch.tensor(16.0)))).all()
    again = dummy_weights(cfg, torch.bfloat16, "cpu", seed=1)
    other = dummy_weights(cfg, torch.bfloat16, "cpu", seed=2)
    assert all(torch.equal(w[n], again[n]) for n in w)
    assert not torch.equal(w["norm.weight"], other["norm.weight"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_load_and_dummy_on_cuda(models, tmp_path):
    fx.save_checkpoint(models["next"], tmp_path, per_expert=True)
    cfg = ModelConfig.from_pretrained(tmp_path)
    cpu = load_weights(tmp_path, cfg, torch.bfloat16, "cpu")
    gpu = load_weights(tmp_path, cfg, torch.bfloat16, "cuda")
    for n in cpu:
        assert gpu[n].is_cuda and torch.equal(gpu[n].cpu(), cpu[n]), n
    assert all(t.is_cuda for t in dummy_weights(cfg, torch.bfloat16, "cuda").values())
