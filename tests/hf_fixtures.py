"""Tiny Hugging Face reference models with every parameter randomised, and checkpoint writers.

Shared by the config/weights tests and the model tests. Every fixture is fp32, uses
``attn_implementation="eager"`` and, for MoE, ``experts_implementation="eager"`` (HF's own
per-expert loop with ``index_add_``; chosen explicitly because the default ``grouped_mm`` sums
the top-k outputs differently, spec §2.6 — in fp32 both agree to ~1e-7, in bf16 they do not).

Sizes are tiny (hidden 64, vocab 320, 4-6 layers) so a 200-token forward takes a fraction of a
second on CPU, but every shape that can be confused is distinct: nh=6 / nkv=2 and Hv=6 / Hk=2
(head ratio 3, not a power of two), dk=16 != dv=32, head_dim 32 with partial_rotary_factor 0.5
(rotary dim 16), attention layouts from ``full_attention_interval`` 2, 3 and 4 and an explicit
``layer_types`` list starting with full attention.

HF initialises RMSNorm weights to 0 (zero-centred), gated-norm weights to 1 and dt_bias to 1,
which would hide bugs in those paths, so ``randomize_`` redraws everything from a seeded
generator with scales that keep activations and logits O(1) and GDN decays spread over
(0.2, 0.998) so the recurrent state matters over a 200-token sequence.

Fixtures (``build(name)``):
  dense             Qwen3_5ForCausalLM, 4 layers (interval 4 -> lin,lin,lin,full), untied
  dense_tied        Qwen3_5ForCausalLM, 6 layers, full_attention_interval=3, tied embeddings
  dense_layer_types Qwen3_5ForCausalLM, 5 layers, explicit layer_types [full,lin,lin,full,lin]
  moe               Qwen3_5MoeForCausalLM, 4 layers, interval 2, top-2 of 6 experts, shared
                    expert as wide as a routed one (like the releases: it runs as expert E)
  next              Qwen3NextForCausalLM, 6 layers, interval 3, decoder_sparse_step=2,
                    mlp_only_layers=[3] -> MoE at layers 1 and 5, dense elsewhere; shared
                    expert wider (48) than a routed one (32): the separate shared-MLP path
  vlm               Qwen3_5ForConditionalGeneration (tiny vision tower), tied at both levels
  vlm_moe           Qwen3_5MoeForConditionalGeneration (tiny vision tower), untied
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import (
    Qwen3_5Config,
    Qwen3_5ForCausalLM,
    Qwen3_5ForConditionalGeneration,
    Qwen3_5MoeConfig,
    Qwen3_5MoeForCausalLM,
    Qwen3_5MoeForConditionalGeneration,
    Qwen3_5MoeTextConfig,
    Qwen3_5TextConfig,
    Qwen3NextConfig,
    Qwen3NextForCausalLM,
)

LIN, FULL = "linear_attention", "full_attention"
EAGER = {"attn_implementation": "eager", "experts_implementation": "eager"}
FIXTURE_NAMES = ("dense", "dense_tied", "dense_layer_types", "moe", "next", "vlm", "vlm_moe")

_ROPE = {
    "rope_type": "default",
    "rope_theta": 1_000_000.0,
    "partial_rotary_factor": 0.5,
    "mrope_section": [3, 3, 2],  # sums to rotary_dim / 2 = 32 * 0.5 / 2
    "mrope_interleaved": True,
}
_MOE = {
    "num_experts": 6,
    "num_experts_per_tok": 2,
    "moe_intermediate_size": 32,
    "shared_expert_intermediate_size": 32,
}
_VISION = {
    "depth": 1,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_heads": 2,
    "out_hidden_size": 64,
    "patch_size": 4,
    "temporal_patch_size": 2,
    "spatial_merge_size": 2,
    "num_position_embeddings": 16,
}


def text_kwargs(**overrides) -> dict:
    """Config kwargs shared by every fixture's text model."""
    kwargs = {
        "vocab_size": 320,
        "hidden_size": 64,
        "intermediate_size": 96,
        "num_hidden_layers": 4,
        "num_attention_heads": 6,
        "num_key_value_heads": 2,
        "head_dim": 32,
        "linear_num_key_heads": 2,
        "linear_num_value_heads": 6,
        "linear_key_head_dim": 16,
        "linear_value_head_dim": 32,
        "linear_conv_kernel_dim": 4,
        "rope_parameters": dict(_ROPE),
        "tie_word_embeddings": False,
        "eos_token_id": 319,
    }
    kwargs.update(overrides)
    return kwargs


# ---- builders --------------------------------------------------------------------------------
def tiny_dense(*, tie: bool = False, seed: int = 0, **overrides) -> Qwen3_5ForCausalLM:
    cfg = Qwen3_5TextConfig(**text_kwargs(tie_word_embeddings=tie, **overrides), **EAGER)
    return randomize_(Qwen3_5ForCausalLM(cfg), seed)


def tiny_moe(*, tie: bool = False, seed: int = 0, **overrides) -> Qwen3_5MoeForCausalLM:
    kwargs = text_kwargs(tie_word_embeddings=tie, full_attention_interval=2, **_MOE)
    kwargs.pop("intermediate_size")
    kwargs.update(overrides)
    cfg = Qwen3_5MoeTextConfig(**kwargs, **EAGER)
    return randomize_(Qwen3_5MoeForCausalLM(cfg), seed)


def tiny_next(*, norm_topk_prob: bool = True, seed: int = 0, **overrides) -> Qwen3NextForCausalLM:
    kwargs = text_kwargs(
        num_hidden_layers=6,
        full_attention_interval=3,
        decoder_sparse_step=2,
        mlp_only_layers=[3],
        norm_topk_prob=norm_topk_prob,
        **{**_MOE, "shared_expert_intermediate_size": 48},
    )
    kwargs["rope_parameters"] = {"rope_type": "default", "rope_theta": 500_000.0}
    kwargs["partial_rotary_factor"] = 0.5  # legacy top-level field, as Qwen3-Next configs have
    kwargs.update(overrides)
    cfg = Qwen3NextConfig(**kwargs, **EAGER)
    return randomize_(Qwen3NextForCausalLM(cfg), seed)


def tiny_vlm(*, moe: bool = False, tie: bool | None = None, seed: int = 0):
    """The ForConditionalGeneration layout: ``model.language_model.*`` + ``model.visual.*``."""
    tie = (not moe) if tie is None else tie
    if moe:
        text = text_kwargs(tie_word_embeddings=tie, **_MOE)
        text.pop("intermediate_size")
        cfg = Qwen3_5MoeConfig(
            text_config=text, vision_config=_VISION, tie_word_embeddings=tie, **EAGER
        )
        return randomize_(Qwen3_5MoeForConditionalGeneration(cfg), seed)
    text = text_kwargs(tie_word_embeddings=tie)
    cfg = Qwen3_5Config(text_config=text, vision_config=_VISION, tie_word_embeddings=tie, **EAGER)
    return randomize_(Qwen3_5ForConditionalGeneration(cfg), seed)


def build(name: str, seed: int = 0) -> torch.nn.Module:
    """One of ``FIXTURE_NAMES``, randomised with ``seed``, in eval mode."""
    builders = {
        "dense": lambda: tiny_dense(seed=seed),
        "dense_tied": lambda: tiny_dense(
            tie=True, num_hidden_layers=6, full_attention_interval=3, seed=seed
        ),
        "dense_layer_types": lambda: tiny_dense(
            num_hidden_layers=5, layer_types=[FULL, LIN, LIN, FULL, LIN], seed=seed
        ),
        "moe": lambda: tiny_moe(seed=seed),
        "next": lambda: tiny_next(seed=seed),
        "vlm": lambda: tiny_vlm(seed=seed),
        "vlm_moe": lambda: tiny_vlm(moe=True, seed=seed),
    }
    if name not in builders:
        raise KeyError(f"unknown fixture {name!r}; choose from {FIXTURE_NAMES}")
    return builders[name]()


# ---- randomisation ---------------------------------------------------------------------------
@torch.no_grad()
def randomize_(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Redraw every parameter from a seeded generator (see module docstring); returns eval model."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        p.copy_(_draw(name, tuple(p.shape), gen))
    return model.eval()


def _draw(name: str, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    def normal(mean: float, std: float) -> torch.Tensor:
        return torch.randn(shape, generator=gen) * std + mean

    if ".visual." in f".{name}":
        return normal(0.0, 0.02)
    if name.endswith("A_log"):  # A in (0.02, 1): decays exp(-A*softplus(.)) in ~(0.2, 0.998)
        return torch.empty(shape).uniform_(0.02, 1.0, generator=gen).log()
    if name.endswith("dt_bias"):
        return normal(-1.0, 0.5)
    if name.endswith("linear_attn.norm.weight"):
        return normal(1.0, 0.1)  # gated RMSNorm: plain scale
    if len(shape) == 1:
        return normal(0.0, 0.1)  # zero-centred RMSNorms (layer, final, q/k): scale 1 + w
    if name.endswith("conv1d.weight"):
        return normal(0.0, 1.0 / math.sqrt(shape[-1]))
    if name.endswith("embed_tokens.weight"):  # also the tied lm_head: logits std ~2.4
        return normal(0.0, 0.3)
    if name.endswith("mlp.gate.weight"):  # router: decisive top-k, no near-ties
        return normal(0.0, 2.0 / math.sqrt(shape[-1]))
    return normal(0.0, 1.0 / math.sqrt(shape[-1]))  # linear / expert weights: fan-in scaling


# ---- checkpoints -----------------------------------------------------------------------------
def save_checkpoint(
    model: torch.nn.Module,
    directory: str | Path,
    *,
    shard_bytes: int | None = None,
    per_expert: bool = False,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write ``config.json`` + safetensors the way released checkpoints look.

    Keys are HF's in-memory names (which match the released files); the tied ``lm_head`` is
    omitted; ``shard_bytes`` splits the tensors into shards with a ``model.safetensors.index.json``;
    ``per_expert`` writes ``experts.{e}.{gate,up,down}_proj.weight`` instead of the fused
    ``experts.gate_up_proj`` / ``experts.down_proj``; ``dtype`` casts everything except ``A_log``
    and ``linear_attn.norm.weight`` (kept fp32 like the bf16 releases). Qwen3-Next configs are
    written with the legacy top-level ``rope_theta`` / ``partial_rotary_factor`` fields.
    (``save_pretrained`` is not used for weights: it rewrites fused experts to per-expert keys.)
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = _checkpoint_tensors(model, per_expert, dtype)
    _write_safetensors(tensors, directory, shard_bytes)
    _write_config(model, directory, dtype)
    return directory


def _checkpoint_tensors(model, per_expert: bool, dtype: torch.dtype | None) -> dict:
    out: dict[str, torch.Tensor] = {}
    for key, t in model.state_dict().items():
        if key == "lm_head.weight" and model.config.tie_word_embeddings:
            continue
        if per_expert and key.endswith("experts.gate_up_proj"):
            base, im = key.removesuffix("gate_up_proj"), t.shape[1] // 2
            for e in range(t.shape[0]):
                out[f"{base}{e}.gate_proj.weight"] = t[e, :im]
                out[f"{base}{e}.up_proj.weight"] = t[e, im:]
            continue
        if per_expert and key.endswith("experts.down_proj"):
            base = key.removesuffix("down_proj")
            for e in range(t.shape[0]):
                out[f"{base}{e}.down_proj.weight"] = t[e]
            continue
        out[key] = t
    keep_fp32 = ("linear_attn.A_log", "linear_attn.norm.weight")
    return {
        k: (t if dtype is None or k.endswith(keep_fp32) else t.to(dtype)).contiguous().clone()
        for k, t in out.items()
    }


def _write_safetensors(tensors: dict, directory: Path, shard_bytes: int | None) -> None:
    meta = {"format": "pt"}
    if shard_bytes is None:
        save_file(tensors, directory / "model.safetensors", metadata=meta)
        return
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key in sorted(tensors):
        nbytes = tensors[key].numel() * tensors[key].element_size()
        if shards[-1] and size + nbytes > shard_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = tensors[key]
        size += nbytes
    weight_map = {}
    for i, shard in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, directory / name, metadata=meta)
        weight_map.update(dict.fromkeys(shard, name))
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def _write_config(model, directory: Path, dtype: torch.dtype | None) -> None:
    d = model.config.to_dict()
    d["dtype"] = str(dtype or torch.float32).removeprefix("torch.")
    if d["model_type"] == "qwen3_next":  # legacy rope fields, as in the released config.json
        rope = d.pop("rope_parameters")
        d["rope_theta"] = rope["rope_theta"]
        d["partial_rotary_factor"] = rope.get("partial_rotary_factor", 0.25)
        d["rope_scaling"] = None
    (directory / "config.json").write_text(json.dumps(d, indent=2, sort_keys=True))


# ---- inputs and reference outputs ------------------------------------------------------------
def random_tokens(n: int, vocab: int, seed: int = 0) -> torch.Tensor:
    """``n`` token ids in ``[0, vocab)`` (int64), deterministic for ``seed``."""
    return torch.randint(0, vocab, (n,), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def hf_logits(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """HF's logits ``[T, V]`` for one whole sequence (no cache)."""
    return model(input_ids=tokens[None], use_cache=False).logits[0]
