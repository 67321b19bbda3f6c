"""What every section of benches/kernels.py shares: the model shapes, the timers and the rows
(with the bounds they are measured against, filled in by ``kernels.main`` first)."""

from __future__ import annotations

import json
from collections.abc import Callable

import torch
from triton.testing import do_bench

DEV, BF16 = "cuda", torch.bfloat16
H, HK, HV, DK, DV, NH, NKV, HD = 2048, 16, 32, 128, 128, 16, 2, 256
CONV_DIM = 2 * HK * DK + HV * DV
PAGE = 64
ROWS: list[dict] = []
GRAPH_LAYERS = 8  # calls per graph in graph-timed rows, each on its own buffers (no L2 reuse)
BOUNDS: dict = {}  # hbm_GBps, bf16_TFLOPs: measured at the start of the run


def ms(fn: Callable[[], object]) -> float:
    return do_bench(fn, warmup=25, rep=200)


def row(kernel: str, shape: str, impl: str, t_ms: float, bytes_moved: float = 0.0, **extra) -> None:
    r = {"kernel": kernel, "shape": shape, "impl": impl, "ms": round(t_ms, 4)}
    if bytes_moved:
        r["GB/s"] = round(bytes_moved / t_ms / 1e6, 1)
        r["%HBM"] = round(100 * r["GB/s"] / BOUNDS["hbm_GBps"], 1)
    r.update(extra)
    ROWS.append(r)
    print(json.dumps(r), flush=True)


def graph_ms(calls: list[Callable[[], object]]) -> float:
    """Time per call with ``calls`` captured back to back in one CUDA graph (how decode runs
    them): no host launch overhead, only the GPU's own time between and inside kernels."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for call in calls:  # compile and warm up outside the capture
            call()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for call in calls:
            call()
    return do_bench(graph.replay, warmup=10, rep=200) / len(calls)


def profile_rows(kernel: str, shape: str, impl: str, fn: Callable[[], object]) -> None:
    """GPU time per kernel launched by ``fn`` (torch.profiler, mean of 5 calls)."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            fn()
        torch.cuda.synchronize()
    times = {}
    for ev in prof.key_averages():
        if ev.device_type.name == "CUDA" and ev.self_device_time_total > 0:
            times[ev.key[:60]] = round(ev.self_device_time_total / 5 / 1000, 4)
    total = round(sum(times.values()), 4)
    row(kernel, shape, f"{impl}-profile", total, per_kernel_ms=times)
