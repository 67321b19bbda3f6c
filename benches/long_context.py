"""Long-context decode: batch-1 tokens/s of the whole engine at 8k, 32k and 128k tokens of
context (dummy weights, prefix caching off), and the ratio to the shortest context. Target on
an H100 with Qwen3.5-35B-A3B: 128k >= 80% of 8k (the GDN layers' cost does not grow with
context; only the 1-in-4 attention layers read more KV).

  PYTHONPATH=python:benches python benches/long_context.py --model qwen3.5-35b-a3b
  (CPU smoke: --model qwen3.5-0.8b --num-layers 2 --contexts 64,256 --steps 4)
"""

from __future__ import annotations

import argparse
import json

import torch
from decode import PAGE, bytes_per_token, engine_step_seconds
from report import environment, header, write
from tokenspeed import LLM
from tokenspeed.presets import preset_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="qwen3.5-35b-a3b")
    ap.add_argument("--num-layers", type=int, default=None)
    ap.add_argument("--contexts", default="8192,32768,131072")
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--out", default="benches/results")
    ap.add_argument("--enforce-eager", action="store_true")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    contexts = [int(c) for c in args.contexts.split(",")]
    cfg = preset_config(args.model, args.num_layers)
    max_len = max(contexts) + args.steps + 8
    llm = LLM(
        model=args.model, load_format="dummy", num_layers=args.num_layers,
        enable_prefix_caching=False, max_num_seqs=1, max_model_len=max_len,
        kv_cache_pages=-(-max_len // PAGE) + 2, state_slots=4, page_size=PAGE,
        enforce_eager=args.enforce_eager,
    )  # fmt: skip
    rows = []
    for ctx in contexts:
        step = engine_step_seconds(llm, 1, ctx, args.steps, seed=ctx)
        kv = bytes_per_token(cfg, ctx, 2 if device.type == "cuda" else 4)["kv_read"]
        rows.append({"context": ctx, "tok_s": 1 / step, "ms_per_step": step * 1e3,
                     "kv_bytes_read_per_token": kv})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    graphs = llm.core.executor.graphs is not None
    llm.shutdown()
    for r in rows:
        r["fraction_of_shortest"] = r["tok_s"] / rows[0]["tok_s"]
    env = environment(device)
    result = {"bench": "long_context", "model": args.model, "num_layers": args.num_layers,
              **env, "cuda_graphs": graphs, "steps": args.steps, "rows": rows}  # fmt: skip
    lines = [
        f"# long-context decode: {args.model} (layers {args.num_layers or 'all'}), batch 1",
        "",
        f"{header(env)}; CUDA graphs {'on' if graphs else 'off'}. "
        f"`python benches/long_context.py --contexts {args.contexts}`",
        "",
        "| context | tok/s | ms/step | KV GB read/token | vs shortest |",
        "|---|---|---|---|---|",
    ] + [
        f"| {r['context']} | {r['tok_s']:.1f} | {r['ms_per_step']:.2f} | "
        f"{r['kv_bytes_read_per_token'] / 1e9:.3f} | {r['fraction_of_shortest']:.1%} |"
        for r in rows
    ]

    def plot(fig) -> None:
        ax = fig.add_subplot(1, 1, 1)
        ax.plot([r["context"] for r in rows], [r["tok_s"] for r in rows], "o-")
        ax.axhline(0.8 * rows[0]["tok_s"], ls="--", c="gray", label="80% of shortest")
        ax.set_xscale("log", base=2)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("context tokens")
        ax.set_ylabel("decode tokens/s (batch 1)")
        ax.set_title(f"long-context decode {args.model}, {env['device']}")
        ax.legend()

    suffix = f"-{args.num_layers}l" if args.num_layers else ""
    write(args.out, f"long-context-{args.model}{suffix}-{device.type}", result, lines, plot)


if __name__ == "__main__":
    main()
