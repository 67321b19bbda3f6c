"""Prefill throughput: prompt tokens/s of the whole engine (batch 1, prefix caching off, one
sampled token) at 2k / 8k / 32k tokens, and MFU against the bf16 matmul peak measured in the
same run (an 8192^3 GEMM).

FLOPs per prompt token: 2 x the active matmul weights (routed experts counted as top-k of E;
no embedding, no LM head: only the last token's logits are computed) + causal attention,
4 x heads x head_dim x (average context = L/2) per full-attention layer. The GDN recurrence is
left out (a few % at these sizes), so MFU is slightly understated.

  PYTHONPATH=python:benches python benches/prefill.py --model qwen3.5-35b-a3b
  (CPU smoke: --model qwen3.5-0.8b --num-layers 2 --lengths 64,128)
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from decode import PAGE
from report import environment, header, timed_cuda, write
from tokenspeed import LLM, SamplingParams
from tokenspeed.config import ModelConfig
from tokenspeed.presets import preset_config
from tokenspeed.weights.specs import param_specs


def matmul_peak_flops(device: torch.device) -> float:
    n = 8192 if device.type == "cuda" else 1024
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    return 2 * n**3 / timed_cuda(lambda: a @ b, device, repeats=20)


def flops_per_token(cfg: ModelConfig, length: int) -> float:
    weights = 0
    for name, spec in param_specs(cfg).items():
        if name in ("embed_tokens.weight", "lm_head.weight") or len(spec.shape) < 2:
            continue
        n = 1
        for d in spec.shape:
            n *= d
        if ".mlp.experts." in name:
            n = n * cfg.num_experts_per_tok // cfg.num_experts
        weights += n
    attention = 4 * cfg.num_attention_heads * cfg.head_dim * (length / 2)
    return 2 * weights + cfg.num_attention_layers * attention


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="qwen3.5-35b-a3b")
    ap.add_argument("--num-layers", type=int, default=None)
    ap.add_argument("--lengths", default="2048,8192,32768")
    ap.add_argument("--chunk", type=int, default=8192, help="chunked prefill size")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="benches/results")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    lengths = [int(n) for n in args.lengths.split(",")]
    cfg = preset_config(args.model, args.num_layers)
    peak = matmul_peak_flops(device)
    print(f"matmul peak {peak / 1e12:.1f} TFLOP/s", flush=True)
    max_len = max(lengths) + 8
    llm = LLM(
        model=args.model, load_format="dummy", num_layers=args.num_layers,
        enable_prefix_caching=False, max_num_seqs=1, max_model_len=max_len,
        kv_cache_pages=-(-max_len // PAGE) + 2, state_slots=4, page_size=PAGE,
        chunked_prefill_size=args.chunk,
    )  # fmt: skip
    g = torch.Generator().manual_seed(0)
    one = SamplingParams(max_tokens=1, ignore_eos=True, temperature=0.0)
    rows = []
    for n in lengths:
        prompt = torch.randint(0, cfg.vocab_size, (n,), generator=g).tolist()
        llm.generate(prompt_token_ids=[prompt], sampling_params=one)  # warm-up at this shape
        times = []
        for _ in range(args.repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            llm.generate(prompt_token_ids=[prompt], sampling_params=one)
            times.append(time.perf_counter() - t)
        sec = sorted(times)[len(times) // 2]
        flops = flops_per_token(cfg, n) * n
        rows.append({"length": n, "seconds": sec, "tok_s": n / sec,
                     "tflops": flops / sec / 1e12, "mfu": flops / sec / peak})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    llm.shutdown()
    env = environment(device)
    result = {"bench": "prefill", "model": args.model, "num_layers": args.num_layers, **env,
              "chunk": args.chunk, "matmul_peak_tflops": peak / 1e12, "rows": rows}  # fmt: skip
    lines = [
        f"# prefill: {args.model} (layers {args.num_layers or 'all'}), batch 1",
        "",
        f"{header(env)}. `python benches/prefill.py --lengths {args.lengths} --chunk "
        f"{args.chunk}`; matmul peak measured in this run: {peak / 1e12:.0f} TFLOP/s.",
        "",
        "| prompt tokens | seconds | tokens/s | TFLOP/s | MFU |",
        "|---|---|---|---|---|",
    ] + [
        f"| {r['length']} | {r['seconds']:.3f} | {r['tok_s']:.0f} | {r['tflops']:.1f} | "
        f"{r['mfu']:.1%} |"
        for r in rows
    ]

    def plot(fig) -> None:
        ax = fig.add_subplot(1, 2, 1)
        ax.plot([r["length"] for r in rows], [r["tok_s"] for r in rows], "o-")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("prompt tokens")
        ax.set_ylabel("prefill tokens/s")
        ax2 = fig.add_subplot(1, 2, 2)
        ax2.plot([r["length"] for r in rows], [100 * r["mfu"] for r in rows], "o-")
        ax2.set_xscale("log", base=2)
        ax2.set_xlabel("prompt tokens")
        ax2.set_ylabel("MFU % (vs measured matmul peak)")
        fig.suptitle(f"prefill {args.model}, {env['device']}")

    suffix = f"-{args.num_layers}l" if args.num_layers else ""
    write(args.out, f"prefill-{args.model}{suffix}-{device.type}", result, lines, plot)


if __name__ == "__main__":
    main()
