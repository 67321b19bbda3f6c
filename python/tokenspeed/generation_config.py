"""Default sampling from a model's ``generation_config.json`` (vLLM's ``--generation-config``).

With ``auto`` (the default, as in vLLM) a request's omitted sampling fields take the values the
model's authors recommend there, e.g. Qwen3.5's temperature 0.6 / top-p 0.95 / top-k 20, instead
of the plain defaults (temperature 1, no truncation). ``vllm`` ignores the file; any other value
is a directory holding one. Only the fields below are read (as vLLM does, ``do_sample`` is not).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tokenspeed.sampling_params import SamplingParams

FIELDS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty")


def default_sampling(model_dir: str | Path | None, setting: str = "auto") -> dict[str, float | int]:
    """The sampling defaults ``setting`` selects for ``model_dir`` (``{}``: none).

    Raises ValueError for an unreadable file or values SamplingParams would refuse."""
    if setting == "vllm" or (setting == "auto" and model_dir is None):
        return {}
    path = Path(model_dir if setting == "auto" else setting) / "generation_config.json"
    if not path.is_file():
        if setting != "auto":
            raise ValueError(f"--generation-config {setting}: no generation_config.json there")
        return {}
    try:
        config: Any = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(config, dict):
        raise ValueError(f"{path} must hold a JSON object")
    found: dict[str, float | int] = {}
    for name in FIELDS:
        value = config.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        found[name] = int(value) if name == "top_k" else float(value)
    try:
        SamplingParams(**found)  # type: ignore[arg-type]
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e
    return found
