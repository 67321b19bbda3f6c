"""The Qwen3.5 family model, its batch description and its caches."""

from tokenspeed.models.batch import ForwardBatch, SequenceChunk, build_batch
from tokenspeed.models.cache import PagedKVCache, StateCache
from tokenspeed.models.load import load_model
from tokenspeed.models.qwen3_5 import Qwen3_5Model

__all__ = [
    "ForwardBatch",
    "PagedKVCache",
    "Qwen3_5Model",
    "SequenceChunk",
    "StateCache",
    "build_batch",
    "load_model",
]
