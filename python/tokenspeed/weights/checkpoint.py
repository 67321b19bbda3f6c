"""Find the safetensors files of a checkpoint and read their headers (no tensor data)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from safetensors import safe_open

from tokenspeed.weights.specs import WeightError

INDEX_FILE = "model.safetensors.index.json"
FLOAT_DTYPES = {"F16", "BF16", "F32", "F64"}


@dataclass(frozen=True)
class TensorInfo:
    key: str
    file: Path
    shape: tuple[int, ...]
    dtype: str  # safetensors dtype string: "BF16", "F32", "I64", "F8_E4M3", ...
    numel: int  # element count, weights the progress bar


def checkpoint_files(path: str | Path) -> list[Path]:
    """The shards named by ``model.safetensors.index.json``, else every ``*.safetensors``."""
    path = Path(path)
    if path.is_file() and path.suffix == ".safetensors":
        return [path]
    if not path.is_dir():
        raise WeightError(f"checkpoint directory {path} does not exist")
    index = path / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise WeightError(f"{index}: not a valid safetensors index ({e})") from e
        files = [path / name for name in sorted(set(weight_map.values()))]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise WeightError(f"{INDEX_FILE} names shard(s) that do not exist: {missing[:5]}")
        return files
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise WeightError(f"no *.safetensors files in {path}")
    return files


def read_headers(files: list[Path]) -> list[TensorInfo]:
    """Every tensor's name, shape and dtype, from the headers only (memory-mapped, cheap)."""
    infos = []
    for file in files:
        with safe_open(file, framework="pt", device="cpu") as f:
            for key in f.keys():
                sl = f.get_slice(key)
                shape = tuple(sl.get_shape())
                infos.append(TensorInfo(key, file, shape, sl.get_dtype(), math.prod(shape)))
    return infos
