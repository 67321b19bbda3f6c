"""What every layer needs to know about the current step, computed once per forward."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from tokenspeed.models.batch import ForwardBatch
from tokenspeed.models.cache import PagedKVCache, StateCache


@dataclass
class StepContext:
    batch: ForwardBatch
    kv_cache: PagedKVCache
    state_cache: StateCache
    kv_indices: Tensor  # [T] flat KV-cache row of each new token
    inv_freq: Tensor  # [rotary_dim / 2] fp32 RoPE frequencies
