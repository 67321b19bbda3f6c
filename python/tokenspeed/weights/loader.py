"""``load_weights``: validate a safetensors checkpoint against the config, then stream it.

Two passes: the headers are checked first (missing, unexpected, mis-shaped and non-float
tensors are all collected and reported together) so a bad checkpoint fails in seconds,
before any data is read; then tensors are read memory-mapped one by one, moved to the
device, cast, converted to the canonical layout and stored.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import torch
from safetensors import safe_open
from tqdm.auto import tqdm

from tokenspeed.config import ModelConfig
from tokenspeed.weights.checkpoint import FLOAT_DTYPES, TensorInfo, checkpoint_files, read_headers
from tokenspeed.weights.convert import put_expert_slice, split_qwen3_next_ba, split_qwen3_next_qkvz
from tokenspeed.weights.fused_experts import fused_expert_views
from tokenspeed.weights.names import Route, is_skipped, per_expert_key, route
from tokenspeed.weights.specs import ParamSpec, WeightError, param_specs

_MAX_REPORTED = 8
_PROGRESS_MIN_ELEMENTS = 200_000_000  # no progress bar for small (test) models


def load_weights(
    path: str | Path,
    cfg: ModelConfig,
    dtype: torch.dtype,
    device: str | torch.device,
    progress: bool = True,
) -> dict[str, torch.Tensor]:
    """Load the checkpoint at ``path`` as canonical parameters (see ``param_specs``)."""
    specs = param_specs(cfg)
    plan = _plan(read_headers(checkpoint_files(path)), cfg, specs)
    device = torch.device(device)
    # Experts (and shared experts as wide) land in views of preallocated [E+1] tensors.
    out: dict[str, torch.Tensor] = fused_expert_views(cfg, dtype, device)

    by_file: dict[Path, list[tuple[TensorInfo, Route]]] = defaultdict(list)
    for info, r in plan:
        by_file[info.file].append((info, r))
    total = sum(info.numel for info, _ in plan)
    bar = tqdm(
        total=total,
        unit=" params",
        unit_scale=True,
        desc="Loading weights",
        disable=not progress or total < _PROGRESS_MIN_ELEMENTS,
    )
    with bar:
        for file, items in by_file.items():
            with safe_open(file, framework="pt", device="cpu") as f:
                for info, r in items:
                    # Move first, then cast: the cast runs on the target device.
                    w = f.get_tensor(info.key).to(device)
                    _store(w, r, out, specs, cfg, dtype)
                    bar.update(info.numel)

    if cfg.tie_word_embeddings:
        out["lm_head.weight"] = out["embed_tokens.weight"]
    return {name: out[name] for name in specs}


def _store(
    w: torch.Tensor,
    r: Route,
    out: dict[str, torch.Tensor],
    specs: dict[str, ParamSpec],
    cfg: ModelConfig,
    dtype: torch.dtype,
) -> None:
    def cast(name: str, t: torch.Tensor) -> torch.Tensor:
        return t.to(torch.float32 if specs[name].keep_fp32 else dtype).contiguous()

    if r.kind == "param":
        name = r.targets[0]
        if name in out:  # a view of a fused experts tensor: fill it (copy_ casts)
            out[name].copy_(w)
        else:
            out[name] = cast(name, w)
    elif r.kind == "expert":
        name = r.targets[0]
        if name not in out:  # fused buffer filled slice by slice: no stacking copy
            out[name] = torch.empty(specs[name].shape, dtype=dtype, device=w.device)
        put_expert_slice(out[name], w, r.expert, r.part)
    elif r.kind in ("qkvz", "ba"):
        split = split_qwen3_next_qkvz if r.kind == "qkvz" else split_qwen3_next_ba
        for name, part in zip(r.targets, split(w, cfg), strict=True):
            out[name] = cast(name, part)


def _plan(
    infos: list[TensorInfo], cfg: ModelConfig, specs: dict[str, ParamSpec]
) -> list[tuple[TensorInfo, Route]]:
    """Route every tensor; raise one WeightError listing every problem found."""
    problems: list[str] = []
    plan: list[tuple[TensorInfo, Route]] = []
    produced: dict[str, str] = {}  # canonical name / expert slice -> checkpoint key
    for info in infos:
        if is_skipped(info.key):
            continue
        r = route(info.key, cfg, specs)
        if r is None:
            problems.append(f"unexpected tensor {info.key} {list(info.shape)}")
            continue
        if info.dtype not in FLOAT_DTYPES:
            kind = (
                "quantized (unsupported)" if info.dtype.startswith("F8") else "not floating point"
            )
            problems.append(f"{info.key}: dtype {info.dtype} is {kind}")
            continue
        if info.shape != r.shape:
            problems.append(f"{info.key}: shape {list(info.shape)}, expected {list(r.shape)}")
            continue
        if r.kind == "ignored":
            continue
        slots = [f"{r.targets[0]}[{r.expert}].{r.part}"] if r.kind == "expert" else r.targets
        for slot in slots:
            if slot in produced:
                problems.append(f"{info.key}: duplicates {produced[slot]}")
            produced[slot] = info.key
        plan.append((info, r))
    for name in produced:
        if name.endswith(("experts.gate_up_proj", "experts.down_proj")) and any(
            slot.startswith(name + "[") for slot in produced
        ):
            problems.append(f"{produced[name]}: experts given both fused and per expert")

    for name in specs:
        if name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        if name in produced:
            continue
        if name.endswith(("experts.gate_up_proj", "experts.down_proj")):
            parts = ("down",) if name.endswith("down_proj") else ("gate", "up")
            slices = [(e, p) for e in range(cfg.num_experts) for p in parts]
            absent = [(e, p) for e, p in slices if f"{name}[{e}].{p}" not in produced]
            if len(absent) < len(slices):  # per-expert layout, some experts missing
                problems += [
                    f"missing tensor {per_expert_key(cfg.checkpoint_prefix, name, e, p)}"
                    for e, p in absent
                ]
                continue
        prefix = "" if name == "lm_head.weight" else cfg.checkpoint_prefix
        hint = " (tie_word_embeddings is false)" if name == "lm_head.weight" else ""
        problems.append(f"missing tensor {prefix}{name}{hint}")

    if problems:
        shown = "\n  ".join(problems[:_MAX_REPORTED])
        more = (
            f"\n  ... and {len(problems) - _MAX_REPORTED} more"
            if len(problems) > _MAX_REPORTED
            else ""
        )
        raise WeightError(f"checkpoint does not match the config:\n  {shown}{more}")
    return plan
