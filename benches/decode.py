"""Decode benchmark: tokens/s of a preset model (dummy weights) at a given context, against the
HBM bandwidth measured in the same run.

Three figures per batch size B:
* engine: the whole engine (Rust loop + executor + sampling) through ``LLM.generate``; the
  time per decode step is ``(t(1 + N tokens) - t(1 token)) / N`` with prefix caching off, so
  the identical prefill cancels out.
* forward (eager): ``model.forward`` alone on a decode batch at the same context (CUDA events).
* forward (CUDA graph): the same forward captured once and replayed (batch 1 only, GPU only).
Bytes per token at batch 1 = active weights (routed experts counted as top-k of E; the
embedding row is negligible) + KV read + GDN state read (+ written, reported apart).

  PYTHONPATH=python python benches/decode.py --model qwen3.5-35b-a3b --context 1024
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import torch
from tokenspeed import LLM, SamplingParams
from tokenspeed.config import ModelConfig
from tokenspeed.models import SequenceChunk, build_batch
from tokenspeed.presets import preset_config
from tokenspeed.weights.specs import param_specs

PAGE = 64


# ---- the roofline --------------------------------------------------------------------------
def bytes_per_token(cfg: ModelConfig, context: int, dtype_bytes: int) -> dict[str, int]:
    """Bytes one batch-1 decode step must move (spec §1.3 shapes)."""
    weights = 0
    for name, spec in param_specs(cfg).items():
        n = 1
        for d in spec.shape:
            n *= d
        size = n * (4 if spec.keep_fp32 else dtype_bytes)
        if name == "embed_tokens.weight":
            continue  # one row is gathered
        if ".mlp.experts." in name:
            size = size * cfg.num_experts_per_tok // cfg.num_experts
        weights += size
    kv = cfg.num_attention_layers * 2 * cfg.num_key_value_heads * cfg.head_dim * context
    state = cfg.num_linear_layers * cfg.linear_num_value_heads * cfg.linear_key_head_dim
    conv = cfg.num_linear_layers * cfg.conv_dim * (cfg.linear_conv_kernel_dim - 1)
    return {
        "weights": weights,
        "kv_read": kv * dtype_bytes,
        "gdn_state_read": state * cfg.linear_value_head_dim * 4 + conv * dtype_bytes,
        "gdn_state_written": state * cfg.linear_value_head_dim * 4 + conv * dtype_bytes,
    }


def hbm_bandwidth(device: torch.device, nbytes: int) -> dict[str, float]:
    """GB/s of a device-to-device copy (read + write counted) and of a read-only reduction."""
    x = torch.empty(nbytes // 2, dtype=torch.bfloat16, device=device).normal_()
    y = torch.empty_like(x)
    copy = _best_seconds(lambda: y.copy_(x), device)
    reduce = _best_seconds(lambda: x.sum(dtype=torch.float32), device)
    x.set_()  # free both buffers (the lambdas above keep the names alive)
    y.set_()
    if device.type == "cuda":
        torch.cuda.empty_cache()  # hand the buffers back before the model loads
    return {"copy_gbps": 2 * nbytes / copy / 1e9, "read_reduce_gbps": nbytes / reduce / 1e9}


def _best_seconds(fn, device: torch.device, repeats: int = 10) -> float:
    """Median seconds of ``fn`` (CUDA events on GPU)."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


# ---- the measurements ----------------------------------------------------------------------
def engine_step_seconds(llm: LLM, batch: int, context: int, steps: int, seed: int) -> float:
    """Seconds per decode step of the whole engine at ``batch`` sequences."""
    g = torch.Generator().manual_seed(seed)
    vocab = llm.core.cfg.vocab_size
    prompts = [torch.randint(0, vocab, (context,), generator=g).tolist() for _ in range(batch)]

    def run(tokens: int) -> float:
        p = SamplingParams(max_tokens=tokens, ignore_eos=True, temperature=0.0)
        sync(llm)
        t = time.perf_counter()
        out = llm.generate(prompt_token_ids=prompts, sampling_params=p)
        assert all(len(o.outputs[0].token_ids) == tokens for o in out)
        return time.perf_counter() - t

    run(4)  # warm-up: compiles the kernels at these shapes
    return (run(1 + steps) - run(1)) / steps


def sync(llm: LLM) -> None:
    if llm.core.model.device.type == "cuda":
        torch.cuda.synchronize()


def forward_step_seconds(llm: LLM, batch: int, context: int, graph: bool) -> float:
    """Seconds per decode ``model.forward`` of ``batch`` sequences at ``context`` (caches hold
    whatever earlier runs left: the cost does not depend on the values)."""
    ex, model = llm.core.executor, llm.core.model
    pages_per_seq = -(-(context + 1) // PAGE)
    chunks = [
        SequenceChunk(
            tokens=[7 + b], prefix_len=context, slot=1 + b, has_initial_state=True,
            pages=list(range(1 + b * pages_per_seq, 1 + (b + 1) * pages_per_seq)),
        )
        for b in range(batch)
    ]  # fmt: skip
    fb = build_batch(chunks, PAGE, model.device)

    def step() -> None:
        model.forward(fb, ex.kv_cache, ex.state_cache)

    if not graph:
        return _best_seconds(step, model.device, repeats=20)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):
            step()
    torch.cuda.current_stream().wait_stream(stream)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        step()
    return _best_seconds(g.replay, model.device, repeats=20)


# ---- driver --------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="qwen3.5-35b-a3b")
    ap.add_argument("--num-layers", type=int, default=None)
    ap.add_argument("--context", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=64, help="decode steps timed per batch size")
    ap.add_argument("--batch-sizes", default="1,8,32")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--bandwidth-gib", type=float, default=4.0)
    ap.add_argument("--out", default="benches/results")
    ap.add_argument("--enforce-eager", action="store_true", help="no decode CUDA graphs")
    args = ap.parse_args()
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    batches = [int(b) for b in args.batch_sizes.split(",")]
    cfg = preset_config(args.model, args.num_layers)
    dtype_bytes = 2 if device.type == "cuda" else 4
    bw = hbm_bandwidth(device, int(args.bandwidth_gib * (1 << 30)))
    print(f"bandwidth: {bw}", flush=True)

    max_batch = max(batches)
    max_len = args.context + args.steps + 8
    llm = LLM(
        model=args.model, load_format="dummy", num_layers=args.num_layers, device=str(device),
        enable_prefix_caching=False, max_num_seqs=max_batch, max_model_len=max_len,
        kv_cache_pages=max_batch * -(-max_len // PAGE) + 4, state_slots=2 * max_batch + 2,
        page_size=PAGE, enforce_eager=args.enforce_eager,
    )  # fmt: skip
    print(f"loaded {args.model} ({cfg.num_hidden_layers} layers) on {device}", flush=True)
    per_token = bytes_per_token(cfg, args.context, dtype_bytes)
    read = per_token["weights"] + per_token["kv_read"] + per_token["gdn_state_read"]
    hbm = max(bw.values())
    rows = []
    for b in batches:
        row: dict[str, float | int | str] = {"batch": b}
        step = engine_step_seconds(llm, b, args.context, args.steps, seed=b)
        row["engine_tok_s"] = b / step
        row["engine_ms_per_step"] = step * 1e3
        fwd = forward_step_seconds(llm, b, args.context, graph=False)
        row["forward_eager_ms"] = fwd * 1e3
        if device.type == "cuda" and b == 1:
            try:
                row["forward_graph_ms"] = forward_step_seconds(llm, b, args.context, True) * 1e3
            except Exception as e:  # report, never hide: the graph path is not built yet
                row["forward_graph_error"] = f"{type(e).__name__}: {e}"[:300]
        if b == 1:
            for key in ("engine_ms_per_step", "forward_eager_ms", "forward_graph_ms"):
                if key in row:
                    row[key.replace("_ms", "").replace("_per_step", "") + "_hbm_fraction"] = (
                        read / (float(row[key]) / 1e3) / 1e9 / hbm
                    )
        print(json.dumps(row), flush=True)
        rows.append(row)
    llm.shutdown()
    report(args, device, bw, per_token, read, rows)


def report(args, device, bw, per_token, read, rows) -> None:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    result = {
        "bench": "decode", "model": args.model, "num_layers": args.num_layers,
        "context": args.context, "steps": args.steps, "device": name or "cpu",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": os.environ.get("TS_COMMIT") or _git_commit(), "torch": torch.__version__,
        "cuda_graphs_in_engine": False, "hbm_bandwidth_gbps": bw,
        "bytes_per_token_batch1": per_token, "bytes_read_per_token_batch1": read,
        "rows": rows,
    }  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    mode = "eager" if args.enforce_eager else "graphs"
    stem = f"decode-{args.model}-ctx{args.context}-{device.type}-{mode}"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# decode: {args.model} (layers {args.num_layers or 'all'}), context {args.context}",
        "",
        f"device {result['device']}, {result['date']}, commit {result['commit']}, "
        f"torch {torch.__version__}; no CUDA graphs in the engine.",
        f"HBM: copy {bw['copy_gbps']:.0f} GB/s, read-only reduction "
        f"{bw['read_reduce_gbps']:.0f} GB/s. Bytes read per token at batch 1: "
        f"{read / 1e9:.3f} GB (weights {per_token['weights'] / 1e9:.3f}).",
        "",
        "| batch | engine tok/s | engine ms/step | forward eager ms | forward graph ms | "
        "HBM fraction (engine / eager / graph) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        frac = " / ".join(
            f"{r[k]:.1%}" if k in r else "-"
            for k in ("engine_hbm_fraction", "forward_eager_hbm_fraction",
                      "forward_graph_hbm_fraction")
        )  # fmt: skip
        graph = f"{r['forward_graph_ms']:.2f}" if "forward_graph_ms" in r else "-"
        lines.append(
            f"| {r['batch']} | {r['engine_tok_s']:.1f} | {r['engine_ms_per_step']:.2f} | "
            f"{r['forward_eager_ms']:.2f} | {graph} | {frac} |"
        )
        if "forward_graph_error" in r:
            lines.append(f"\ngraph capture failed: `{r['forward_graph_error']}`\n")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


if __name__ == "__main__":
    main()
