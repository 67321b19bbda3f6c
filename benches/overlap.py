"""GPU busy fraction during steady decode, with and without overlap scheduling.

The engine generates ``--tokens`` tokens for ``--batch`` sequences; the steady window is the
middle of the decode (the first and last ``--trim`` of the decode launches are left out). Three
measurements, none of which perturbs the engine unless asked:
* replay: the device time of one decode step run back to back (the engine's own captured graph
  for that batch size, replayed 30 times, CUDA events) over the engine's wall time per step in
  the window: the share of the step the GPU has work, gaps between graph nodes included;
* events: CUDA events around every ``Executor.launch`` (``decode.LaunchTimeline``): the sum of
  the decode launches' device spans over the window they cover (an upper bound: a launch's span
  includes the device waiting for the host inside that launch);
* profiler (``--profiler``): the union of the kernels' intervals (CUPTI). It counts the ~0.3 us
  between graph nodes as idle and slows the host, so it is a diagnostic, not the figure.
Target (overlap on): busy >= 95% of the wall time.

  PYTHONPATH=python:benches python benches/overlap.py --model qwen3.5-35b-a3b
  (CPU smoke: --model qwen3.5-0.8b --num-layers 2 --tokens 8; CPU has no device timeline)
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import time

import torch
from decode import PAGE, LaunchTimeline, _best_seconds
from report import environment, header, write
from tokenspeed import LLM, SamplingParams


def busy_from_profile(prof, trim: float) -> float | None:
    spans = sorted(
        (e.time_range.start, e.time_range.end)
        for e in prof.events()
        if e.device_type == torch.autograd.DeviceType.CUDA and e.time_range.end > e.time_range.start
    )
    if not spans:
        return None
    first, last = spans[0][0], max(end for _, end in spans)
    lo, hi = first + trim * (last - first), last - trim * (last - first)
    busy, cursor = 0.0, lo
    for start, end in spans:
        start, end = max(start, cursor), min(end, hi)
        if end > start:
            busy += end - start
            cursor = end
    return busy / (hi - lo)


def measure(llm: LLM, batch: int, prompt_len: int, tokens: int, trim: float,
            profiler: bool) -> dict:  # fmt: skip
    g = torch.Generator().manual_seed(batch)
    vocab = llm.core.cfg.vocab_size
    prompts = [torch.randint(0, vocab, (prompt_len,), generator=g).tolist() for _ in range(batch)]
    params = SamplingParams(max_tokens=tokens, ignore_eos=True, temperature=0.0)
    llm.generate(prompt_token_ids=prompts, sampling_params=SamplingParams(max_tokens=4))  # warm
    prof = None
    graphs = llm.core.executor.graphs
    replayed_before = graphs.steps_run if graphs is not None else 0
    with contextlib.ExitStack() as stack:
        timeline = stack.enter_context(LaunchTimeline(llm))
        if profiler:
            activities = [torch.profiler.ProfilerActivity.CUDA]
            prof = stack.enter_context(torch.profiler.profile(activities=activities))
        t = time.perf_counter()
        llm.generate(prompt_token_ids=prompts, sampling_params=params)
        wall = time.perf_counter() - t
    step, busy_events, steps = timeline.decode(skip=int(tokens * trim))
    replayed = (graphs.steps_run if graphs is not None else 0) - replayed_before
    launches = len(timeline.marks)  # every launch of the measured generate
    replay = replay_seconds(llm, graphs, batch)
    return {
        "batch": batch, "tokens": tokens, "steps": steps,
        "busy_replay": None if replay is None else min(replay / step, 1.0),
        "replay_ms": None if replay is None else replay * 1e3,
        "busy_profiler": busy_from_profile(prof, trim) if prof is not None else None,
        "busy_events": busy_events, "ms_per_step_window": step * 1e3, "tok_s": batch * tokens / wall,
        "launches": launches, "graph_steps": replayed,
    }  # fmt: skip


def replay_seconds(llm: LLM, graphs, batch: int) -> float | None:
    """Device seconds of one greedy decode step of ``batch`` sequences: the engine's captured
    graph for that size replayed back to back (its inputs are the last step's: the values do
    not change the work)."""
    if graphs is None:
        return None
    size = next(s for s in graphs.sizes if s >= batch)
    graph = graphs.graphs.get((size, False, False))
    if graph is None:
        return None
    return _best_seconds(graph.replay, llm.core.model.device, repeats=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="qwen3.5-35b-a3b")
    ap.add_argument("--num-layers", type=int, default=None)
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--prompt-len", type=int, default=256)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--trim", type=float, default=0.15)
    ap.add_argument("--out", default="benches/results")
    ap.add_argument("--profiler", action="store_true", help="also the CUPTI kernel union")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    batches = [int(b) for b in args.batches.split(",")]
    rows = []
    for overlap in (True, False):
        llm = LLM(
            model=args.model, load_format="dummy", num_layers=args.num_layers, overlap=overlap,
            enable_prefix_caching=False, max_num_seqs=max(batches),
            max_model_len=args.prompt_len + args.tokens + 8, state_slots=2 * max(batches) + 2,
            kv_cache_pages=max(batches) * -(-(args.prompt_len + args.tokens + 8) // PAGE) + 2,
        )  # fmt: skip
        for b in batches:
            if device.type != "cuda":  # no device timeline: only check the driver runs
                llm.generate(prompt_token_ids=[[1, 2, 3]] * b,
                             sampling_params=SamplingParams(max_tokens=args.tokens))  # fmt: skip
                continue
            row = {
                "overlap": overlap,
                **measure(llm, b, args.prompt_len, args.tokens, args.trim, args.profiler),
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
        llm.shutdown()
        del llm
        gc.collect()  # the engine's cycles hold the model: free it before the next one loads
        if device.type == "cuda":
            torch.cuda.empty_cache()
    env = environment(device)
    result = {"bench": "overlap", "model": args.model, "num_layers": args.num_layers, **env,
              "prompt_len": args.prompt_len, "rows": rows}  # fmt: skip

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    lines = [
        f"# GPU busy during steady decode: {args.model} (layers {args.num_layers or 'all'})",
        "",
        f"{header(env)}. `python benches/overlap.py --batches {args.batches} "
        f"--tokens {args.tokens}{' --profiler' if args.profiler else ''}`; CUDA graphs on. "
        "busy (replay) = device time of the step's graph replayed back to back / engine wall "
        "time per step; events = launch spans / window (upper bound); profiler = kernel union "
        "under CUPTI (perturbs the host).",
        "",
        "| overlap | batch | busy (replay) | busy (events, upper bound) | busy (profiler) "
        "| graph replay ms | engine ms/step | tok/s |",
        "|---|---|---|---|---|---|---|---|",
    ] + [
        f"| {'on' if r['overlap'] else 'off'} | {r['batch']} | {pct(r['busy_replay'])} | "
        f"{pct(r['busy_events'])} | {pct(r['busy_profiler'])} | "
        f"{'-' if r['replay_ms'] is None else format(r['replay_ms'], '.3f')} | "
        f"{r['ms_per_step_window']:.3f} | {r['tok_s']:.1f} |"
        for r in rows
    ]

    def plot(fig) -> None:
        ax = fig.add_subplot(1, 1, 1)
        for overlap in (True, False):
            rs = [r for r in rows if r["overlap"] == overlap]
            ax.plot([str(r["batch"]) for r in rs],
                    [100 * (r["busy_replay"] or r["busy_events"]) for r in rs], "o-",
                    label=f"overlap {'on' if overlap else 'off'}")  # fmt: skip
        ax.axhline(95, ls="--", c="gray", label="target 95%")
        ax.set_ylim(0, 100)
        ax.set_xlabel("batch size")
        ax.set_ylabel("GPU busy % of steady decode")
        ax.set_title(f"overlap {args.model}, {env['device']}")
        ax.legend()

    suffix = f"-{args.num_layers}l" if args.num_layers else ""
    write(args.out, f"overlap-{args.model}{suffix}-{device.type}", result, lines,
          plot if rows else None)  # fmt: skip


if __name__ == "__main__":
    main()
