"""Map checkpoint tensor names onto canonical parameters (prefixes, skipped keys, layouts)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tokenspeed.config import ModelConfig
from tokenspeed.weights.specs import ParamSpec

# Text-model prefixes: VLM wrappers use the first, ForCausalLM checkpoints the second.
_PREFIXES = ("model.language_model.", "model.")
# Not part of the text model (vision tower, MTP head kept for later) or recomputed (inv_freq).
_SKIP_PREFIXES = ("model.visual.", "visual.", "mtp.", "model.mtp.")
_SKIP_SUFFIXES = ("rotary_emb.inv_freq",)

_PER_EXPERT = re.compile(r"^layers\.(\d+)\.mlp\.experts\.(\d+)\.(gate|up|down)_proj\.weight$")
_QKVZ = re.compile(r"^layers\.(\d+)\.linear_attn\.in_proj_qkvz\.weight$")
_BA = re.compile(r"^layers\.(\d+)\.linear_attn\.in_proj_ba\.weight$")


@dataclass(frozen=True)
class Route:
    """Where one checkpoint tensor goes.

    kind: "param" (copied to ``targets[0]``), "expert" (one slice of a fused expert tensor),
    "qkvz" / "ba" (Qwen3-Next grouped tensors split into ``targets``), "ignored" (lm_head of a
    tied model: HF ties it to the embedding whatever the file holds).
    """

    kind: str
    targets: tuple[str, ...]
    shape: tuple[int, ...]  # expected shape of the checkpoint tensor
    expert: int = -1
    part: str = ""  # "gate" | "up" | "down" for experts


def is_skipped(key: str) -> bool:
    return key.startswith(_SKIP_PREFIXES) or key.endswith(_SKIP_SUFFIXES)


def strip_prefix(key: str) -> str | None:
    if key == "lm_head.weight":
        return key
    for prefix in _PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix) :]
    return None


def route(key: str, cfg: ModelConfig, specs: dict[str, ParamSpec]) -> Route | None:
    """The route of checkpoint tensor ``key`` (not skipped), or None if it is unexpected."""
    name = strip_prefix(key)
    if name is None:
        return None
    if name == "lm_head.weight" and cfg.tie_word_embeddings:
        return Route("ignored", (), specs[name].shape)
    if name in specs:
        return Route("param", (name,), specs[name].shape)
    if m := _PER_EXPERT.match(name):
        layer, expert, part = int(m[1]), int(m[2]), m[3]
        fused = f"layers.{layer}.mlp.experts." + ("down_proj" if part == "down" else "gate_up_proj")
        if fused not in specs or expert >= cfg.num_experts:
            return None
        H, Im = cfg.hidden_size, cfg.moe_intermediate_size
        return Route("expert", (fused,), (H, Im) if part == "down" else (Im, H), expert, part)
    if m := _QKVZ.match(name):
        p = f"layers.{m[1]}.linear_attn."
        if p + "in_proj_qkv.weight" not in specs:
            return None
        rows = 2 * cfg.key_dim + 2 * cfg.value_dim
        targets = (p + "in_proj_qkv.weight", p + "in_proj_z.weight")
        return Route("qkvz", targets, (rows, cfg.hidden_size))
    if m := _BA.match(name):
        p = f"layers.{m[1]}.linear_attn."
        if p + "in_proj_b.weight" not in specs:
            return None
        targets = (p + "in_proj_b.weight", p + "in_proj_a.weight")
        return Route("ba", targets, (2 * cfg.linear_num_value_heads, cfg.hidden_size))
    return None


def per_expert_key(prefix: str, fused: str, expert: int, part: str) -> str:
    """Checkpoint name of one expert slice, for error messages."""
    layer_prefix = fused.rsplit("experts.", 1)[0]
    return f"{prefix}{layer_prefix}experts.{expert}.{part}_proj.weight"
