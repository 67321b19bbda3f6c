"""GPU busy fraction during steady decode, with and without overlap scheduling.

The engine generates ``--tokens`` tokens for ``--batch`` sequences; two measurements:
* profiler: the union of the device's kernel and copy intervals (torch.profiler / CUPTI, which
  sees the kernels inside CUDA graphs) over the steady window (the middle of the decode: the
  first and last ``--trim`` of the span are left out, which holds the prefill);
* events: CUDA events around every ``Executor.launch`` (``decode.LaunchTimeline``): busy = the
  sum of the decode launches' device spans over the window they cover (an upper bound: a
  launch's span includes the device waiting for the host inside that launch).
Target (H100, overlap on): busy >= 95% of the wall time.

  PYTHONPATH=python:benches python benches/overlap.py --model qwen3.5-35b-a3b
  (CPU smoke: --model qwen3.5-0.8b --num-layers 2 --tokens 8; CPU has no device timeline)
"""

from __future__ import annotations

import argparse
import gc
import json
import time

import torch
from decode import PAGE, LaunchTimeline
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


def measure(llm: LLM, batch: int, prompt_len: int, tokens: int, trim: float) -> dict:
    g = torch.Generator().manual_seed(batch)
    vocab = llm.core.cfg.vocab_size
    prompts = [torch.randint(0, vocab, (prompt_len,), generator=g).tolist() for _ in range(batch)]
    params = SamplingParams(max_tokens=tokens, ignore_eos=True, temperature=0.0)
    llm.generate(prompt_token_ids=prompts, sampling_params=SamplingParams(max_tokens=4))  # warm
    with (
        LaunchTimeline(llm) as timeline,
        torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof,
    ):
        t = time.perf_counter()
        llm.generate(prompt_token_ids=prompts, sampling_params=params)
        wall = time.perf_counter() - t
    step, busy_events, steps = timeline.decode(skip=int(tokens * trim))
    return {
        "batch": batch, "tokens": tokens, "steps": steps,
        "busy_profiler": busy_from_profile(prof, trim), "busy_events": busy_events,
        "ms_per_step_window": step * 1e3, "tok_s": batch * tokens / wall,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="qwen3.5-35b-a3b")
    ap.add_argument("--num-layers", type=int, default=None)
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--prompt-len", type=int, default=256)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--trim", type=float, default=0.15)
    ap.add_argument("--out", default="benches/results")
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
            row = {"overlap": overlap, **measure(llm, b, args.prompt_len, args.tokens, args.trim)}
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
    lines = [
        f"# GPU busy during steady decode: {args.model} (layers {args.num_layers or 'all'})",
        "",
        f"{header(env)}. `python benches/overlap.py --batches {args.batches} "
        f"--tokens {args.tokens}`; CUDA graphs on; busy = device activity / wall time.",
        "",
        "| overlap | batch | busy (profiler) | busy (events, upper bound) | ms/step | tok/s |",
        "|---|---|---|---|---|---|",
    ] + [
        f"| {'on' if r['overlap'] else 'off'} | {r['batch']} | "
        f"{r['busy_profiler']:.1%} | {r['busy_events']:.1%} | {r['ms_per_step_window']:.2f} | "
        f"{r['tok_s']:.1f} |"
        if r["busy_profiler"] is not None
        else f"| {'on' if r['overlap'] else 'off'} | {r['batch']} | - | {r['busy_events']:.1%} "
        f"| {r['ms_per_step_window']:.2f} | {r['tok_s']:.1f} |"
        for r in rows
    ]

    def plot(fig) -> None:
        ax = fig.add_subplot(1, 1, 1)
        for overlap in (True, False):
            rs = [r for r in rows if r["overlap"] == overlap]
            ax.plot([str(r["batch"]) for r in rs],
                    [100 * (r["busy_profiler"] or r["busy_events"]) for r in rs], "o-",
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
