"""Where a decode step's time goes: a per-kernel table of the captured decode forward.

Captures ``model.forward`` of ``--batch`` sequences at ``--context`` as one CUDA graph (as the
engine replays it), times the replay with CUDA events, then profiles ``--replays`` replays with
torch.profiler (CUPTI sees the kernels inside the graph) and groups the kernels by name:
launches per step, GPU time per step, the share of the step, and the gap the kernels leave
(replay time minus the sum of kernel times: launch latency between graph nodes).

  PYTHONPATH=python:benches python benches/profile_decode.py --model qwen3.5-35b-a3b
"""

from __future__ import annotations

import argparse
import collections

import torch
from decode import PAGE, _best_seconds, capture, decode_forward
from report import environment, header, write
from tokenspeed import LLM


def kernel_table(graph: torch.cuda.CUDAGraph, replays: int) -> list[dict]:
    from torch.profiler import ProfilerActivity, profile

    graph.replay()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(replays):
            graph.replay()
        torch.cuda.synchronize()
    by_name: dict[str, list[float]] = collections.defaultdict(list)
    for ev in prof.events():
        if ev.device_type == torch.autograd.DeviceType.CUDA and ev.device_time > 0:
            by_name[ev.name[:90]].append(ev.device_time)  # microseconds
    rows = [
        {"kernel": name, "launches_per_step": len(t) / replays, "us_per_step": sum(t) / replays,
         "us_per_launch": sum(t) / len(t)}
        for name, t in by_name.items()
    ]  # fmt: skip
    return sorted(rows, key=lambda r: -r["us_per_step"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="qwen3.5-35b-a3b")
    ap.add_argument("--num-layers", type=int, default=None)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--context", type=int, default=1024)
    ap.add_argument("--replays", type=int, default=10)
    ap.add_argument("--out", default="benches/results")
    args = ap.parse_args()
    device = torch.device("cuda")
    pages = args.batch * (-(-(args.context + 8) // PAGE)) + 4
    llm = LLM(
        model=args.model, load_format="dummy", num_layers=args.num_layers,
        enable_prefix_caching=False, max_num_seqs=args.batch, max_model_len=args.context + 8,
        kv_cache_pages=pages, state_slots=2 * args.batch + 2, page_size=PAGE,
    )  # fmt: skip
    graph = capture(decode_forward(llm, args.batch, args.context))
    step_ms = _best_seconds(graph.replay, device, repeats=30) * 1e3
    rows = kernel_table(graph, args.replays)
    kernels_ms = sum(r["us_per_step"] for r in rows) / 1e3
    launches = sum(r["launches_per_step"] for r in rows)
    llm.shutdown()
    env = environment(device)
    summary = {"step_ms": step_ms, "kernel_ms": kernels_ms, "launches_per_step": launches,
               "gap_ms": step_ms - kernels_ms}  # fmt: skip
    print(summary, flush=True)
    result = {"bench": "profile_decode", "model": args.model, "num_layers": args.num_layers,
              "batch": args.batch, "context": args.context, **env, **summary, "rows": rows}  # fmt: skip
    lines = [
        f"# decode step kernels: {args.model} (layers {args.num_layers or 'all'}), "
        f"batch {args.batch}, context {args.context}",
        "",
        f"{header(env)}. Graph replay {step_ms:.3f} ms (CUDA events), kernels {kernels_ms:.3f} "
        f"ms in {launches:.0f} launches, gaps {step_ms - kernels_ms:.3f} ms.",
        "",
        "| kernel | launches/step | µs/step | µs/launch | share |",
        "|---|---|---|---|---|",
    ] + [
        f"| {r['kernel']} | {r['launches_per_step']:.0f} | {r['us_per_step']:.1f} | "
        f"{r['us_per_launch']:.2f} | {r['us_per_step'] / 1e3 / step_ms:.1%} |"
        for r in rows
    ]
    print("\n".join(lines), flush=True)
    stem = f"profile-decode-{args.model}-b{args.batch}-ctx{args.context}"
    write(args.out, stem, result, lines)


if __name__ == "__main__":
    main()
