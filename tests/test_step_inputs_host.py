"""The executor hands the kernels the host copies of a step's offsets and checkpoint tables
(`tokenspeed.kernels.host`), so no layer reads them back from the device; they must equal the
device tensors' contents."""

from __future__ import annotations

import numpy as np
import torch
from tokenspeed.executor.step_inputs import _DTYPES, build_step_inputs, decode_plan
from tokenspeed.kernels.host import host_list


def _plan(prefixes: list[int], news: list[int], ckpt: list[int], page: int = 64) -> dict:
    def arr(values, key: str) -> bytes:
        return np.asarray(list(values), dtype=_DTYPES[key]).tobytes()

    totals = [p + n for p, n in zip(prefixes, news, strict=True)]
    pages = [-(-t // page) for t in totals]
    plan = {key: b"" for key in _DTYPES}
    plan.update(
        request_ids=arr(range(len(news)), "request_ids"),
        num_cached=arr(prefixes, "num_cached"),
        working_slots=arr(range(1, len(news) + 1), "working_slots"),
        checkpoint_slots=arr(ckpt, "checkpoint_slots"),
        checkpoint_offsets=arr(
            [t // page * page if c >= 0 else -1 for t, c in zip(totals, ckpt, strict=True)],
            "checkpoint_offsets",
        ),
        input_ids=arr(range(sum(news)), "input_ids"),
        positions=arr(
            [q for p, n in zip(prefixes, news, strict=True) for q in range(p, p + n)], "positions"
        ),
        cu_seqlens=arr(np.cumsum([0, *news]), "cu_seqlens"),
        page_table=arr(range(1, sum(pages) + 1), "page_table"),
        cu_pages=arr(np.cumsum([0, *pages]), "cu_pages"),
    )
    return plan


def test_host_lists_equal_the_device_tensors() -> None:
    plan = _plan([44_000, 0, 130], [1100, 70, 3], [5, -1, 6])
    batch = build_step_inputs(decode_plan(plan), None, torch.device("cpu")).batch
    assert batch.checkpoint_slots is not None and batch.checkpoint_offsets is not None
    for t in (batch.cu_seqlens, batch.checkpoint_slots, batch.checkpoint_offsets):
        assert getattr(t, "_tokenspeed_host", None) is not None, "not primed by the executor"
        assert host_list(t) == t.tolist()
    assert host_list(batch.checkpoint_offsets) == [45_056 - 44_000, -1, 128 - 130]
    assert batch.has_initial_state.dtype == torch.bool


def test_host_list_of_an_unprimed_tensor_reads_it_once() -> None:
    t = torch.tensor([0, 5, 9], dtype=torch.int32)
    assert host_list(t) == [0, 5, 9]
    assert host_list(t) is host_list(t)
