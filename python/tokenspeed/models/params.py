"""Taking canonical weights out of the dict the loader returns (names: notes/py_contract.md)."""

from __future__ import annotations

import torch
from torch import Tensor

from tokenspeed.config import ModelConfig
from tokenspeed.weights import WeightError, param_specs, with_shared_expert


class Params:
    """The canonical weights, checked once against ``param_specs`` and handed out by name.

    Blocks ``take`` what they use; ``finish`` fails if anything was left over, so a weight the
    model silently ignores is impossible. The dict is consumed (entries are popped) so that an
    original is freed as soon as its fused copy exists: peak memory stays near one model.
    """

    def __init__(self, cfg: ModelConfig, weights: dict[str, Tensor]) -> None:
        specs = param_specs(cfg)
        problems = [f"missing tensor {n}" for n in specs if n not in weights]
        problems += [f"unexpected tensor {n}" for n in weights if n not in specs]
        problems += [
            f"{n}: shape {list(weights[n].shape)}, expected {list(s.shape)}"
            for n, s in specs.items()
            if n in weights and tuple(weights[n].shape) != s.shape
        ]
        if problems:
            raise WeightError("weights do not fit the config: " + "; ".join(problems))
        self._weights = weights
        self.dtype: torch.dtype = weights["embed_tokens.weight"].dtype
        self.device: torch.device = weights["embed_tokens.weight"].device

    def take(self, name: str) -> Tensor:
        return self._weights.pop(name)

    def take_cat(self, *names: str) -> Tensor:
        """Several projections fused along the output dim (one GEMM instead of several)."""
        return torch.cat([self._weights.pop(n) for n in names], dim=0)

    def take_with_shared(self, experts: str, *shared: str) -> Tensor:
        """Routed experts ``[E, R, C]`` plus the shared expert's projections (rows ``[R, C]``
        together) as ``[E+1, R, C]``; no copy for loader-built weights (`with_shared_expert`)."""
        return with_shared_expert(
            self._weights.pop(experts), [self._weights.pop(n) for n in shared]
        )

    def finish(self) -> None:
        if self._weights:
            raise WeightError(f"weights not used by the model: {sorted(self._weights)}")
