"""Sampling on the device: penalties, temperature, min-p, top-k / top-p, seeded draws,
logprobs."""

from tokenspeed.sampling.penalties import apply_penalties
from tokenspeed.sampling.sampler import SampleBatch, SampleOutput, sample

__all__ = ["SampleBatch", "SampleOutput", "apply_penalties", "sample"]
