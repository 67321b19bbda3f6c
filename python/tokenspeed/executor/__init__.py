"""The Python executor the Rust engine drives: caches, step inputs, forward, sampling."""

from tokenspeed.executor.executor import Executor
from tokenspeed.executor.memory import PoolSizes, size_pools
from tokenspeed.executor.requests import RequestMeta

__all__ = ["Executor", "PoolSizes", "RequestMeta", "size_pools"]
