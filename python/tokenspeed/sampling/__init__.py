"""Sampling on the device: penalties, temperature, min-p, top-k / top-p, seeded draws,
logprobs."""

from tokenspeed.sampling.penalties import apply_penalties
from tokenspeed.sampling.sampler import (
    SampleBatch,
    SampleOutput,
    fill_exponential_noise,
    greedy_or_temperature,
    sample,
)

__all__ = [
    "SampleBatch",
    "SampleOutput",
    "apply_penalties",
    "fill_exponential_noise",
    "greedy_or_temperature",
    "sample",
]
