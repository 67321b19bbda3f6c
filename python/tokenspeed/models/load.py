"""``load_model``: config.json + safetensors directory -> ready ``Qwen3_5Model``."""

from __future__ import annotations

from pathlib import Path

import torch

from tokenspeed.config import ModelConfig
from tokenspeed.models.qwen3_5 import Qwen3_5Model
from tokenspeed.weights import load_weights


def load_model(
    path: str | Path,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> Qwen3_5Model:
    cfg = ModelConfig.from_pretrained(path)
    weights = load_weights(path, cfg, dtype, device, progress=progress)
    return Qwen3_5Model(cfg, weights)
