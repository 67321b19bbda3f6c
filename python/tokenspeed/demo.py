"""The built-in demo model: a tiny Qwen3.5-MoE-architecture model with random weights.

Hybrid layers (Gated DeltaNet linear attention and gated full attention, alternating), a
mixture-of-experts FFN with a shared expert, the real Qwen3.5 vocabulary and chat template.
Its weights come from a fixed seed, so it answers with deterministic noise: it exists to try
the server and the API on any machine, not to chat. It is written once to a cache directory
as an ordinary Hugging Face model directory (``config.json``, ``model.safetensors``,
tokenizer files), which is then loaded like any other model.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from tokenspeed.config import ModelConfig
from tokenspeed.vocab import write_qwen3_5_tokenizer_files

DEMO_NAME = "tokenspeed-demo-qwen3.5-moe"
DEMO_VERSION = 1  # bump when the config or the weight recipe changes
DEMO_SEED = 0
DEMO_BANNER = (
    "*** DEMO MODEL: a tiny Qwen3.5-MoE-architecture model with RANDOM weights (seed "
    f"{DEMO_SEED}). Its answers are noise. Pass --model DIR to serve a real model. ***"
)

# Qwen3.5 special token ids: <|endoftext|> 248044, <|im_end|> 248046.
DEMO_CONFIG: dict[str, Any] = {
    "architectures": ["Qwen3_5MoeForCausalLM"],
    "model_type": "qwen3_5_moe_text",
    "vocab_size": 248320,
    "hidden_size": 64,
    "num_hidden_layers": 4,
    "full_attention_interval": 2,  # linear, full, linear, full
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "linear_num_key_heads": 2,
    "linear_num_value_heads": 4,
    "linear_key_head_dim": 16,
    "linear_value_head_dim": 16,
    "linear_conv_kernel_dim": 4,
    "num_experts": 8,
    "num_experts_per_tok": 2,
    "moe_intermediate_size": 32,
    "shared_expert_intermediate_size": 32,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {
        "rope_type": "default",
        "rope_theta": 10_000_000.0,
        "partial_rotary_factor": 0.25,
    },
    "max_position_embeddings": 8192,
    "tie_word_embeddings": True,
    "eos_token_id": [248046, 248044],
    "torch_dtype": "float32",
}


def demo_dir() -> Path:
    """Where the demo model is kept: ``$TOKENSPEED_CACHE`` or ``~/.cache/tokenspeed``."""
    root = os.environ.get("TOKENSPEED_CACHE") or Path.home() / ".cache" / "tokenspeed"
    return Path(root) / "models" / f"{DEMO_NAME}-v{DEMO_VERSION}"


def ensure_demo_model(path: Path | None = None) -> Path:
    """The demo model directory, written on first use (atomically: a half-written directory
    is never picked up)."""
    target = path or demo_dir()
    if (target / "model.safetensors").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".demo-", dir=target.parent))
    staging.chmod(0o755)
    write_demo_model(staging)
    try:
        staging.rename(target)
    except OSError:  # another process won the race: keep its copy
        if not (target / "model.safetensors").exists():
            raise
    return target


def write_demo_model(directory: Path) -> None:
    """Writes config, random weights (fixed seed) and the Qwen3.5 tokenizer files."""
    from tokenspeed.weights import dummy_weights

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(DEMO_CONFIG, indent=2) + "\n")
    cfg = ModelConfig.from_pretrained(directory)
    weights = dummy_weights(cfg, torch.float32, "cpu", seed=DEMO_SEED)
    # Checkpoint names are the canonical ones under the ForCausalLM prefix; the tied lm_head
    # is the embedding and is not stored twice.
    tensors = {
        f"model.{name}": t.contiguous()
        for name, t in weights.items()
        if not (name == "lm_head.weight" and cfg.tie_word_embeddings)
    }
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    write_qwen3_5_tokenizer_files(directory)
