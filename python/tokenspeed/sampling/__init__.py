"""Sampling on the device: penalties, temperature, min-p, top-k / top-p, seeded draws,
logprobs."""

from tokenspeed.sampling.penalties import apply_penalties
from tokenspeed.sampling.sampler import (
    TOP_K_CAP,
    SampleBatch,
    SampleOutput,
    fill_exponential_noise,
    greedy_or_temperature,
    sample,
)

__all__ = [
    "TOP_K_CAP",
    "SampleBatch",
    "SampleOutput",
    "apply_penalties",
    "fill_exponential_noise",
    "greedy_or_temperature",
    "sample",
]
