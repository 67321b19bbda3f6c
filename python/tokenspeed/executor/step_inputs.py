"""Decoding the engine's plan (a dict of native-endian ``bytes`` arrays, see
``crates/py/src/executor.rs``) into host arrays and the model's ``ForwardBatch``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from tokenspeed.kernels.host import set_host_list
from tokenspeed.models.batch import ForwardBatch

PREV_STEP_TOKEN = 0xFFFFFFFF  # placeholder for a token sampled by the previous step

_DTYPES: dict[str, type] = {
    "request_ids": np.uint64, "num_cached": np.uint32, "working_slots": np.uint32,
    "cow_src_slots": np.int32, "checkpoint_slots": np.int32, "checkpoint_offsets": np.int32,
    "input_ids": np.uint32, "positions": np.uint32, "cu_seqlens": np.uint32,
    "page_table": np.uint32, "cu_pages": np.uint32, "prev_token_dst": np.uint32,
    "prev_token_src": np.uint32, "copy_src": np.uint32, "copy_dst": np.uint32,
    "zero_slots": np.uint32, "logits_indices": np.uint32, "sample_seqs": np.uint32,
    "temperature": np.float32, "top_p": np.float32, "top_k": np.uint32, "min_p": np.float32,
    "presence_penalty": np.float32, "frequency_penalty": np.float32,
    "repetition_penalty": np.float32, "seed": np.int64, "num_logprobs": np.int32,
    "released": np.uint64,
}  # fmt: skip


def decode_plan(plan: dict) -> dict[str, np.ndarray]:
    """Every array of the plan as a read-only numpy view (no per-element work)."""
    return {key: np.frombuffer(plan[key], dtype=dtype) for key, dtype in _DTYPES.items()}


@dataclass
class StepInputs:
    """A decoded plan on the device, ready for the caches and the model."""

    batch: ForwardBatch
    copy_src: Tensor
    copy_dst: Tensor


def to_device(values: np.ndarray, dtype: torch.dtype, device: torch.device) -> Tensor:
    host = torch.from_numpy(values.astype(_NUMPY[dtype]))
    if device.type == "cuda":
        return host.pin_memory().to(device, non_blocking=True)
    return host


_NUMPY = {
    torch.int64: np.int64,
    torch.int32: np.int32,
    torch.float32: np.float32,
    torch.bool: np.bool_,
}


def build_step_inputs(
    a: dict[str, np.ndarray], prev_tokens: Tensor | None, device: torch.device
) -> StepInputs:
    """The ``ForwardBatch`` of a decoded plan. Decode inputs sampled by the previous step
    (``PREV_STEP_TOKEN``) are gathered on the device from ``prev_tokens``."""
    input_ids = to_device(a["input_ids"], torch.int64, device)
    if len(a["prev_token_dst"]):
        if prev_tokens is None:
            raise ValueError("the plan reads the previous step's samples but there is none")
        dst = to_device(a["prev_token_dst"], torch.int64, device)
        src = to_device(a["prev_token_src"], torch.int64, device)
        input_ids[dst] = prev_tokens[src]
    num_cached = a["num_cached"].astype(np.int64)
    lens = np.diff(a["cu_seqlens"].astype(np.int64))
    ckpt_slots = a["checkpoint_slots"].astype(np.int64)
    has_ckpt = bool((ckpt_slots >= 0).any())
    ckpt_offsets = np.where(ckpt_slots >= 0, a["checkpoint_offsets"] - num_cached, -1)
    # Working slots of sequences without a cached prefix start from zeros: the kernels ignore
    # their content (has_initial_state False), so the plan's zero_slots need no memset.
    has_initial = ~np.isin(a["working_slots"], a["zero_slots"])
    batch = ForwardBatch(
        input_ids=input_ids,
        positions=to_device(a["positions"], torch.int64, device),
        cu_seqlens=to_device(a["cu_seqlens"], torch.int32, device),
        prefix_lens=to_device(num_cached, torch.int32, device),
        page_table=to_device(page_table_rows(a["page_table"], a["cu_pages"]), torch.int32, device),
        slot_ids=to_device(a["working_slots"], torch.int64, device),
        has_initial_state=to_device(has_initial, torch.bool, device),
        logits_indices=to_device(a["logits_indices"], torch.int64, device),
        max_seqlen=int(lens.max()),
        checkpoint_slots=to_device(ckpt_slots, torch.int64, device) if has_ckpt else None,
        checkpoint_offsets=to_device(ckpt_offsets, torch.int64, device) if has_ckpt else None,
    )
    # The kernels plan prefill launches from these on the host: hand them the plan's values so
    # no layer waits for the GPU to read them back.
    set_host_list(batch.cu_seqlens, a["cu_seqlens"].tolist())
    if batch.checkpoint_slots is not None and batch.checkpoint_offsets is not None:
        set_host_list(batch.checkpoint_slots, ckpt_slots.tolist())
        set_host_list(batch.checkpoint_offsets, ckpt_offsets.astype(np.int64).tolist())
    return StepInputs(
        batch=batch,
        copy_src=to_device(a["copy_src"], torch.int64, device),
        copy_dst=to_device(a["copy_dst"], torch.int64, device),
    )


def page_table_rows(flat: np.ndarray, cu_pages: np.ndarray) -> np.ndarray:
    """Ragged rows ``flat[cu[i]:cu[i+1]]`` as a 0-padded ``[B, max_pages]`` table."""
    starts = cu_pages[:-1].astype(np.int64)
    counts = np.diff(cu_pages.astype(np.int64))
    width = max(int(counts.max()), 1)
    cols = np.arange(width)
    index = np.minimum(starts[:, None] + cols, max(len(flat) - 1, 0))
    values = flat[index] if len(flat) else np.zeros_like(index)
    return np.where(cols < counts[:, None], values, 0)
