"""Typed model configuration parsed from a Hugging Face ``config.json``.

Supports Qwen3.5 dense (``qwen3_5`` VLM wrapper / ``qwen3_5_text``), Qwen3.5-MoE (``qwen3_5_moe`` /
``qwen3_5_moe_text``) and Qwen3-Next (``qwen3_next``). Absent optional fields take the defaults of
transformers 5.23 (``configuration_qwen3_5.py``, ``configuration_qwen3_5_moe.py``,
``configuration_qwen3_next.py``); absent size fields that differ between released models are errors,
as is anything the engine would silently get wrong (see ``_validate``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

LINEAR = "linear_attention"
FULL = "full_attention"

# top-level model_type -> (family, is VLM wrapper, expected text_config model_type)
_MODEL_TYPES: dict[str, tuple[str, bool, str | None]] = {
    "qwen3_5": ("qwen3_5", True, "qwen3_5_text"),
    "qwen3_5_text": ("qwen3_5", False, None),
    "qwen3_5_moe": ("qwen3_5_moe", True, "qwen3_5_moe_text"),
    "qwen3_5_moe_text": ("qwen3_5_moe", False, None),
    "qwen3_next": ("qwen3_next", False, None),
}

# HF defaults shared by the three text configs (transformers 5.23).
_DEFAULTS: dict[str, Any] = {
    "head_dim": 256,
    "linear_num_key_heads": 16,
    "linear_key_head_dim": 128,
    "linear_value_head_dim": 128,
    "linear_conv_kernel_dim": 4,
    "rms_norm_eps": 1e-6,
    "max_position_embeddings": 32768,
    "full_attention_interval": 4,
    "rope_theta": 10_000.0,  # RotaryEmbeddingConfigMixin.default_theta
    "partial_rotary_factor": 0.25,  # set in every __post_init__ "for BC"
    "decoder_sparse_step": 1,  # Qwen3-Next
    "norm_topk_prob": True,  # Qwen3-Next
    "qwen3_next_intermediate_size": 5632,
}

# Fields that vary between released models: never guessed.
_REQUIRED_COMMON = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "linear_num_value_heads",
)
_REQUIRED_MOE = ("num_experts", "num_experts_per_tok", "moe_intermediate_size")


class ConfigError(ValueError):
    """A config.json that TokenSpeed cannot run; the message names the offending field."""


@dataclass(frozen=True)
class ModelConfig:
    """Text-model configuration of a Qwen3.5 / Qwen3.5-MoE / Qwen3-Next checkpoint."""

    model_type: str
    family: str
    checkpoint_prefix: str
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    layer_types: tuple[str, ...]
    mlp_types: tuple[str, ...]
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    linear_num_key_heads: int
    linear_num_value_heads: int
    linear_key_head_dim: int
    linear_value_head_dim: int
    linear_conv_kernel_dim: int
    intermediate_size: int
    num_experts: int
    num_experts_per_tok: int
    moe_intermediate_size: int
    shared_expert_intermediate_size: int
    norm_topk_prob: bool
    rms_norm_eps: float
    rope_theta: float
    partial_rotary_factor: float
    max_position_embeddings: int
    tie_word_embeddings: bool
    torch_dtype: str | None
    eos_token_ids: tuple[int, ...]

    # ---- derived sizes -------------------------------------------------------------------
    @property
    def rotary_dim(self) -> int:
        return int(self.head_dim * self.partial_rotary_factor)

    @property
    def key_dim(self) -> int:
        return self.linear_num_key_heads * self.linear_key_head_dim

    @property
    def value_dim(self) -> int:
        return self.linear_num_value_heads * self.linear_value_head_dim

    @property
    def conv_dim(self) -> int:
        return 2 * self.key_dim + self.value_dim

    @property
    def linear_layer_ids(self) -> tuple[int, ...]:
        return tuple(i for i, t in enumerate(self.layer_types) if t == LINEAR)

    @property
    def attention_layer_ids(self) -> tuple[int, ...]:
        return tuple(i for i, t in enumerate(self.layer_types) if t == FULL)

    @property
    def num_linear_layers(self) -> int:
        return len(self.linear_layer_ids)

    @property
    def num_attention_layers(self) -> int:
        return len(self.attention_layer_ids)

    # ---- constructors --------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | Path) -> ModelConfig:
        """Parse ``path/config.json``; EOS ids of ``generation_config.json`` are appended."""
        path = Path(path)
        config_file = path / "config.json" if path.is_dir() else path
        try:
            d = json.loads(config_file.read_text())
        except FileNotFoundError as e:
            raise ConfigError(f"config.json not found at {config_file}") from e
        except json.JSONDecodeError as e:
            raise ConfigError(f"{config_file} is not valid JSON: {e}") from e
        cfg = cls.from_hf_dict(d)
        # HF generate() stops on generation_config's eos ids (chat models add <|im_end|> there).
        gen_file = config_file.parent / "generation_config.json"
        if gen_file.is_file():
            gen = json.loads(gen_file.read_text())
            extra = _eos_ids(gen.get("eos_token_id"), "generation_config.json eos_token_id")
            merged = tuple(dict.fromkeys(cfg.eos_token_ids + extra))
            cfg = replace(cfg, eos_token_ids=merged)
        return cfg

    @classmethod
    def from_hf_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Parse the dict of a HF ``config.json`` (wrapper or text-only form)."""
        if not isinstance(d, dict):
            raise ConfigError("config must be a JSON object")
        model_type = d.get("model_type")
        if model_type not in _MODEL_TYPES:
            raise ConfigError(
                f"model_type: unsupported architecture {model_type!r} "
                f"(supported: {', '.join(_MODEL_TYPES)})"
            )
        family, is_wrapper, text_type = _MODEL_TYPES[model_type]
        if is_wrapper:
            text = d.get("text_config")
            if not isinstance(text, dict):
                raise ConfigError(f"text_config: missing or not an object in a {model_type} config")
            if text.get("model_type", text_type) != text_type:
                raise ConfigError(
                    f"text_config.model_type: expected {text_type!r} inside {model_type!r}, "
                    f"got {text.get('model_type')!r}"
                )
        else:
            text = d
        return _parse_text(model_type, family, is_wrapper, text, d)


# ---- field readers -------------------------------------------------------------------------
def _int(t: dict[str, Any], key: str, default: int | None = None, *, min_value: int = 1) -> int:
    value = t.get(key, default)
    if value is None:
        raise ConfigError(f"{key}: required field is missing")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if value < min_value:
        raise ConfigError(f"{key}: must be >= {min_value}, got {value}")
    return value


def _float(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    return float(value)


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    return value


def _eos_ids(value: Any, key: str) -> tuple[int, ...]:
    if value is None:
        return ()
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise ConfigError(f"{key}: expected a token id or a list of token ids, got {value!r}")
    return tuple(values)


# ---- parsing -------------------------------------------------------------------------------
def _parse_text(
    model_type: str, family: str, is_wrapper: bool, t: dict[str, Any], top: dict[str, Any]
) -> ModelConfig:
    for key in _REQUIRED_COMMON:
        _int(t, key)
    n_layers = _int(t, "num_hidden_layers")
    layer_types = _layer_types(t, n_layers)
    moe_sizes = _moe_sizes(family, t)
    mlp_types = _mlp_types(family, t, n_layers, moe_sizes[0])

    if "dense" in mlp_types:
        default_i = _DEFAULTS["qwen3_next_intermediate_size"] if family == "qwen3_next" else None
        intermediate_size = _int(t, "intermediate_size", default_i)
    else:
        intermediate_size = 0

    rope_theta, partial_rotary_factor = _rope(t)
    dtypes = (t.get("torch_dtype"), t.get("dtype"), top.get("torch_dtype"), top.get("dtype"))
    dtype = next((x for x in dtypes if x is not None), None)
    eos = _eos_ids(t.get("eos_token_id"), "eos_token_id")
    if is_wrapper:
        eos = tuple(dict.fromkeys(eos + _eos_ids(top.get("eos_token_id"), "eos_token_id")))

    cfg = ModelConfig(
        model_type=model_type,
        family=family,
        checkpoint_prefix="model.language_model." if is_wrapper else "model.",
        vocab_size=_int(t, "vocab_size"),
        hidden_size=_int(t, "hidden_size"),
        num_hidden_layers=n_layers,
        layer_types=layer_types,
        mlp_types=mlp_types,
        num_attention_heads=_int(t, "num_attention_heads"),
        num_key_value_heads=_int(t, "num_key_value_heads"),
        head_dim=_int(t, "head_dim", _DEFAULTS["head_dim"]),
        linear_num_key_heads=_int(t, "linear_num_key_heads", _DEFAULTS["linear_num_key_heads"]),
        linear_num_value_heads=_int(t, "linear_num_value_heads"),
        linear_key_head_dim=_int(t, "linear_key_head_dim", _DEFAULTS["linear_key_head_dim"]),
        linear_value_head_dim=_int(t, "linear_value_head_dim", _DEFAULTS["linear_value_head_dim"]),
        linear_conv_kernel_dim=_int(
            t, "linear_conv_kernel_dim", _DEFAULTS["linear_conv_kernel_dim"]
        ),
        intermediate_size=intermediate_size,
        num_experts=moe_sizes[0],
        num_experts_per_tok=moe_sizes[1],
        moe_intermediate_size=moe_sizes[2],
        shared_expert_intermediate_size=moe_sizes[3],
        # Qwen3.5-MoE's router always renormalises (HF has no switch); Qwen3-Next honours the flag.
        norm_topk_prob=(
            _bool(t.get("norm_topk_prob", True), "norm_topk_prob")
            if family == "qwen3_next"
            else True
        ),
        rms_norm_eps=_float(t.get("rms_norm_eps", _DEFAULTS["rms_norm_eps"]), "rms_norm_eps"),
        rope_theta=rope_theta,
        partial_rotary_factor=partial_rotary_factor,
        max_position_embeddings=_int(
            t, "max_position_embeddings", _DEFAULTS["max_position_embeddings"]
        ),
        tie_word_embeddings=_tie(t, top, is_wrapper),
        torch_dtype=dtype if isinstance(dtype, str) else None,
        eos_token_ids=eos,
    )
    _validate(cfg)
    return cfg


def _layer_types(t: dict[str, Any], n_layers: int) -> tuple[str, ...]:
    explicit = t.get("layer_types")
    if explicit is None:
        # HF __post_init__: layer i is full attention iff (i + 1) % interval == 0.
        interval = _int(t, "full_attention_interval", _DEFAULTS["full_attention_interval"])
        return tuple(FULL if (i + 1) % interval == 0 else LINEAR for i in range(n_layers))
    if not isinstance(explicit, list):
        raise ConfigError(f"layer_types: expected a list, got {explicit!r}")
    if len(explicit) != n_layers:
        raise ConfigError(
            f"layer_types: has {len(explicit)} entries but num_hidden_layers is {n_layers}"
        )
    for i, kind in enumerate(explicit):
        if kind not in (LINEAR, FULL):
            raise ConfigError(
                f"layer_types[{i}]: unknown layer type {kind!r} (expected {LINEAR!r} or {FULL!r})"
            )
    return tuple(explicit)


def _moe_sizes(family: str, t: dict[str, Any]) -> tuple[int, int, int, int]:
    """(num_experts, top-k, expert width, shared-expert width); zeros for dense models."""
    if family == "qwen3_5":
        return (0, 0, 0, 0)
    if family == "qwen3_next" and t.get("num_experts") == 0:
        return (0, 0, 0, 0)  # HF builds no MoE block when num_experts == 0
    num_experts, top_k, width = (_int(t, key) for key in _REQUIRED_MOE)
    shared = _int(t, "shared_expert_intermediate_size")
    return (num_experts, top_k, width, shared)


def _mlp_types(family: str, t: dict[str, Any], n_layers: int, num_experts: int) -> tuple[str, ...]:
    if family == "qwen3_5":
        return ("dense",) * n_layers
    if family == "qwen3_5_moe":
        return ("moe",) * n_layers
    # Qwen3-Next: MoE iff not in mlp_only_layers and num_experts > 0 and (i+1) % step == 0.
    step = _int(t, "decoder_sparse_step", _DEFAULTS["decoder_sparse_step"])
    mlp_only = t.get("mlp_only_layers") or []
    if not isinstance(mlp_only, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n_layers for i in mlp_only
    ):
        raise ConfigError(
            f"mlp_only_layers: expected a list of layer indices in [0, {n_layers}), got {mlp_only!r}"
        )
    return tuple(
        "moe" if i not in mlp_only and num_experts > 0 and (i + 1) % step == 0 else "dense"
        for i in range(n_layers)
    )


def _rope(t: dict[str, Any]) -> tuple[float, float]:
    """(theta, partial_rotary_factor) with HF's priority: rope_parameters > legacy fields > default."""
    params = t.get("rope_parameters")
    if params is None:
        params = t.get("rope_scaling")  # legacy name (HF: rope_scaling replaces rope_parameters)
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ConfigError(f"rope_parameters: expected an object, got {params!r}")
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type != "default":
        raise ConfigError(f"rope_parameters.rope_type: unsupported RoPE type {rope_type!r}")
    theta = params.get("rope_theta", t.get("rope_theta", _DEFAULTS["rope_theta"]))
    factor = params.get(
        "partial_rotary_factor", t.get("partial_rotary_factor", _DEFAULTS["partial_rotary_factor"])
    )
    theta = _float(theta, "rope_theta")
    factor = _float(factor, "partial_rotary_factor")
    if theta <= 0:
        raise ConfigError(f"rope_theta: must be positive, got {theta}")
    if not 0 < factor <= 1:
        raise ConfigError(f"partial_rotary_factor: must be in (0, 1], got {factor}")
    return theta, factor


def _tie(t: dict[str, Any], top: dict[str, Any], is_wrapper: bool) -> bool:
    """HF ties from the wrapper's flag (ForConditionalGeneration) or the text config's
    (ForCausalLM); a checkpoint whose two flags disagree has no single right answer."""
    inner = t.get("tie_word_embeddings")
    outer = top.get("tie_word_embeddings") if is_wrapper else None
    if inner is not None:
        _bool(inner, "text_config.tie_word_embeddings" if is_wrapper else "tie_word_embeddings")
    if outer is not None:
        _bool(outer, "tie_word_embeddings")
    if inner is not None and outer is not None and inner != outer:
        raise ConfigError(
            f"tie_word_embeddings: top level says {outer} but text_config says {inner}"
        )
    value = inner if inner is not None else outer
    return bool(value) if value is not None else False


def _validate(cfg: ModelConfig) -> None:
    if cfg.num_attention_heads % cfg.num_key_value_heads:
        raise ConfigError(
            f"num_attention_heads: {cfg.num_attention_heads} is not a multiple of "
            f"num_key_value_heads {cfg.num_key_value_heads}"
        )
    if cfg.linear_num_value_heads % cfg.linear_num_key_heads:
        raise ConfigError(
            f"linear_num_value_heads: {cfg.linear_num_value_heads} is not a multiple of "
            f"linear_num_key_heads {cfg.linear_num_key_heads}"
        )
    if cfg.rotary_dim < 2 or cfg.rotary_dim % 2:
        raise ConfigError(
            f"partial_rotary_factor: head_dim {cfg.head_dim} * {cfg.partial_rotary_factor} "
            f"gives rotary dim {cfg.rotary_dim}, which must be even and >= 2"
        )
    if "moe" in cfg.mlp_types and cfg.num_experts_per_tok > cfg.num_experts:
        raise ConfigError(
            f"num_experts_per_tok: top-{cfg.num_experts_per_tok} of only "
            f"{cfg.num_experts} experts (num_experts)"
        )
