"""Decode benchmark: tokens/s of a preset model (dummy weights) at a given context, against the
HBM bandwidth measured in the same run.

Three figures per batch size B:
* engine: the whole engine (Rust loop + executor + sampling) through ``LLM.generate``; the
  time per decode step is the device-timeline span of the N steady decode steps over N (CUDA
  events around each launch, see ``LaunchTimeline``), gaps between steps included.
* forward (eager): ``model.forward`` alone on a decode batch at the same context (CUDA events).
* forward (CUDA graph): the same forward captured once and replayed (batch 1 only, GPU only).
* optionally the Hugging Face transformers peer at batch 1 (same preset, random init on the GPU).
Bytes per token at batch 1 = active weights (routed experts counted as top-k of E; the
embedding row is negligible) + KV read + GDN state read (+ written, reported apart).

  PYTHONPATH=python python benches/decode.py --model qwen3.5-35b-a3b --hf-peer
  (CPU smoke: --model qwen3.5-0.8b --num-layers 2 --runs '64:1,2' --steps 4)
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from collections.abc import Callable

import torch
from report import environment, header, write
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
class LaunchTimeline:
    """CUDA events around every ``Executor.launch`` (the engine thread looks the method up on
    each step), tagged decode or not: the steady decode step time is the device-timeline span
    from the first decode launch to the last over their count, gaps included (the wall time of
    decode, free of the prefill); the launches' own spans summed over that window is the busy
    time (an upper bound: it includes the device waiting on the host inside a launch). On CPU,
    wall-clock stamps."""

    def __init__(self, llm: LLM) -> None:
        self.ex, self.cuda = llm.core.executor, llm.core.model.device.type == "cuda"
        self.marks: list[tuple[object, object, bool]] = []
        self.original = self.ex.launch

    def _stamp(self):
        if not self.cuda:
            return time.perf_counter()
        e = torch.cuda.Event(enable_timing=True)
        e.record()
        return e

    def _launch(self, plan) -> None:
        start = self._stamp()
        self.original(plan)
        decode = len(plan["input_ids"]) == len(plan["working_slots"])  # one token per sequence
        self.marks.append((start, self._stamp(), decode))

    def __enter__(self) -> LaunchTimeline:
        self.ex.launch = self._launch
        return self

    def __exit__(self, *exc) -> None:
        del self.ex.launch  # the class's method again (later patches of it take effect)
        if self.cuda:
            torch.cuda.synchronize()

    def _seconds(self, a, b) -> float:
        return a.elapsed_time(b) / 1e3 if self.cuda else b - a

    def decode(self, skip: int = 2) -> tuple[float, float, int]:
        """(seconds per decode step, busy fraction, steps) over the decode launches after the
        first ``skip`` (the first ones may still share the GPU with a prefill's tail)."""
        steps = [(s, e) for s, e, d in self.marks if d][skip:]
        if len(steps) < 2:
            raise RuntimeError(f"only {len(steps)} decode steps were timed")
        window = self._seconds(steps[0][0], steps[-1][1])
        busy = sum(self._seconds(s, e) for s, e in steps)
        return window / len(steps), busy / window, len(steps)


def engine_step_seconds(llm: LLM, batch: int, context: int, steps: int, seed: int) -> float:
    """Seconds per steady decode step of the whole engine at ``batch`` sequences."""
    g = torch.Generator().manual_seed(seed)
    vocab = llm.core.cfg.vocab_size
    prompts = [torch.randint(0, vocab, (context,), generator=g).tolist() for _ in range(batch)]
    warm = SamplingParams(max_tokens=4, ignore_eos=True, temperature=0.0)
    llm.generate(prompt_token_ids=prompts, sampling_params=warm)  # compiles these shapes
    p = SamplingParams(max_tokens=steps + 4, ignore_eos=True, temperature=0.0)
    with LaunchTimeline(llm) as timeline:
        out = llm.generate(prompt_token_ids=prompts, sampling_params=p)
    assert all(len(o.outputs[0].token_ids) == steps + 4 for o in out)
    return timeline.decode()[0]


def sync(llm: LLM) -> None:
    if llm.core.model.device.type == "cuda":
        torch.cuda.synchronize()


def decode_forward(llm: LLM, batch: int, context: int) -> Callable[[], object]:
    """One decode ``model.forward`` of ``batch`` sequences at ``context`` (caches hold whatever
    earlier runs left: the cost does not depend on the values)."""
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
    return lambda: model.forward(fb, ex.kv_cache, ex.state_cache)


def capture(step: Callable[[], object]) -> torch.cuda.CUDAGraph:
    """``step`` as a CUDA graph, warmed up (compiled) on a side stream first."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):
            step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    graph.step = step  # keeps the tensors the graph reads (the step's batch) alive
    return graph


def forward_step_seconds(llm: LLM, batch: int, context: int, graph: bool) -> float:
    """Seconds per decode ``model.forward`` of ``batch`` sequences at ``context``."""
    step = decode_forward(llm, batch, context)
    device = llm.core.model.device
    if not graph:
        return _best_seconds(step, device, repeats=20)
    return _best_seconds(capture(step).replay, device, repeats=20)


# ---- the Hugging Face peer ----------------------------------------------------------------
def hf_peer(model: str, num_layers: int | None, context: int, steps: int) -> dict:
    """Batch-1 decode tokens/s of the same preset run by Hugging Face transformers: built from
    the preset config on the GPU with its own random init (no checkpoint), bf16."""
    import transformers
    from tokenspeed.presets import preset_dict

    text = preset_dict(model).get("text_config") or preset_dict(model)
    if num_layers is not None:
        text["num_hidden_layers"] = num_layers
        text.pop("layer_types", None)
    moe = text["model_type"].startswith("qwen3_5_moe")
    config_cls = transformers.Qwen3_5MoeTextConfig if moe else transformers.Qwen3_5TextConfig
    model_cls = transformers.Qwen3_5MoeForCausalLM if moe else transformers.Qwen3_5ForCausalLM
    cfg = config_cls(**{k: v for k, v in text.items() if k != "model_type"})
    try:
        import fla

        fla_version = getattr(fla, "__version__", "installed")
    except ImportError:
        fla_version = None
    with torch.device("cuda"):
        hf = model_cls._from_config(cfg, torch_dtype=torch.bfloat16).eval()
    ids = torch.randint(0, cfg.vocab_size, (1, context), device="cuda")

    def run(tokens: int) -> float:
        torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.inference_mode():
            out = hf.generate(
                ids, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                eos_token_id=None, pad_token_id=0,
            )  # fmt: skip
        torch.cuda.synchronize()
        assert out.shape[1] == context + tokens
        return time.perf_counter() - t

    run(2)
    step = (run(1 + steps) - run(1)) / steps
    return {
        "hf_tok_s": 1 / step, "hf_ms_per_step": step * 1e3, "context": context,
        "transformers": transformers.__version__, "fla": fla_version,
    }  # fmt: skip


# ---- driver --------------------------------------------------------------------------------
def parse_runs(text: str) -> list[tuple[int, list[int]]]:
    """``"1024:1,8,32;32768:1"`` -> [(1024, [1, 8, 32]), (32768, [1])]."""
    runs = []
    for part in text.split(";"):
        ctx, batches = part.split(":")
        runs.append((int(ctx), [int(b) for b in batches.split(",")]))
    return runs


def fits(cfg: ModelConfig, dtype_bytes: int, slots: int, pages: int) -> bool:
    """Whether weights + state slots + KV pages leave 6 GiB of the GPU for the rest."""
    from tokenspeed.models.cache import PagedKVCache, StateCache

    dtype = torch.bfloat16 if dtype_bytes == 2 else torch.float32
    weights = sum(_numel(s.shape) * (4 if s.keep_fp32 else dtype_bytes)
                  for s in param_specs(cfg).values())  # fmt: skip
    need = (weights + slots * StateCache.bytes_per_slot(cfg, dtype)
            + pages * PagedKVCache.bytes_per_page(cfg, PAGE, dtype))  # fmt: skip
    return need + (6 << 30) <= torch.cuda.get_device_properties(0).total_memory


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="qwen3.5-35b-a3b")
    ap.add_argument("--num-layers", type=int, default=None)
    ap.add_argument("--runs", default="1024:1,8,32,128;32768:1", help="context:batches;...")
    ap.add_argument("--steps", type=int, default=64, help="decode steps timed per batch size")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--bandwidth-gib", type=float, default=4.0)
    ap.add_argument("--out", default="benches/results")
    ap.add_argument("--enforce-eager", action="store_true", help="no decode CUDA graphs")
    ap.add_argument("--hf-peer", action="store_true", help="also time HF transformers (GPU)")
    ap.add_argument("--hf-steps", type=int, default=16)
    args = ap.parse_args()
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    runs = parse_runs(args.runs)
    cfg = preset_config(args.model, args.num_layers)
    dtype_bytes = 2 if device.type == "cuda" else 4
    bw = hbm_bandwidth(device, int(args.bandwidth_gib * (1 << 30)))
    print(f"bandwidth: {bw}", flush=True)
    max_ctx = max(c for c, _ in runs)
    max_len = max_ctx + args.steps + 8
    pages = max(b * -(-(c + args.steps + 8) // PAGE) for c, bs in runs for b in bs) + 4
    if device.type == "cuda":  # drop batch sizes whose state slots do not fit beside the model
        runs = [(c, [b for b in bs if fits(cfg, 2, 2 * b + 2, pages)]) for c, bs in runs]
    max_batch = max(b for _, bs in runs for b in bs)
    pages = max(b * -(-(c + args.steps + 8) // PAGE) for c, bs in runs for b in bs) + 4
    llm = LLM(
        model=args.model, load_format="dummy", num_layers=args.num_layers, device=str(device),
        enable_prefix_caching=False, max_num_seqs=max_batch, max_model_len=max_len,
        kv_cache_pages=pages, state_slots=2 * max_batch + 2, page_size=PAGE,
        enforce_eager=args.enforce_eager,
    )  # fmt: skip
    graphs = llm.core.executor.graphs is not None
    print(f"loaded {args.model} ({cfg.num_hidden_layers} layers) on {device}, graphs {graphs}")
    hbm = max(bw.values())
    rows = []
    for context, batches in runs:
        per_token = bytes_per_token(cfg, context, dtype_bytes)
        read = per_token["weights"] + per_token["kv_read"] + per_token["gdn_state_read"]
        for b in batches:
            row: dict[str, float | int | str] = {"context": context, "batch": b}
            row["bytes_read_per_token_batch1"] = read
            step = engine_step_seconds(llm, b, context, args.steps, seed=b)
            row["engine_tok_s"] = b / step
            row["engine_ms_per_step"] = step * 1e3
            row["forward_eager_ms"] = forward_step_seconds(llm, b, context, graph=False) * 1e3
            if device.type == "cuda" and b == 1:
                row["forward_graph_ms"] = forward_step_seconds(llm, b, context, True) * 1e3
            if b == 1:
                for key in ("engine_ms_per_step", "forward_eager_ms", "forward_graph_ms"):
                    if key in row:
                        name = key.replace("_ms", "").replace("_per_step", "") + "_hbm_fraction"
                        row[name] = read / (float(row[key]) / 1e3) / 1e9 / hbm
                        row[name.replace("fraction", "gbps")] = read / (float(row[key]) / 1e3) / 1e9
            print(json.dumps(row), flush=True)
            rows.append(row)
    graph_steps = llm.core.executor.graphs.steps_run if graphs else 0
    llm.shutdown()
    del llm
    peer = None
    if args.hf_peer and device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
        try:
            peer = hf_peer(args.model, args.num_layers, runs[0][0], args.hf_steps)
            gc.collect()
            torch.cuda.empty_cache()
        except Exception as e:  # report, never hide
            peer = {"error": f"{type(e).__name__}: {e}"[:400]}
        print(f"hf peer: {peer}", flush=True)
    report(args, device, bw, rows, graphs, graph_steps, peer)


def report(args, device, bw, rows, graphs, graph_steps, peer) -> None:
    env = environment(device)
    mode = "eager" if args.enforce_eager else "graphs"
    result = {
        "bench": "decode", "model": args.model, "num_layers": args.num_layers,
        "runs": args.runs, "steps": args.steps, **env, "cuda_graphs_in_engine": graphs,
        "decode_steps_replayed_from_graphs": graph_steps, "hbm_bandwidth_gbps": bw,
        "rows": rows, "hf_peer": peer,
    }  # fmt: skip
    stem = f"decode-{args.model}{f'-{args.num_layers}l' if args.num_layers else ''}-{device.type}-{mode}"
    lines = [
        f"# decode: {args.model} (layers {args.num_layers or 'all'}), dummy weights",
        "",
        f"{header(env)}; CUDA graphs in the engine: {'yes' if graphs else 'no'} "
        f"({graph_steps} decode steps replayed). `python benches/decode.py --runs '{args.runs}'"
        f"{' --hf-peer' if args.hf_peer else ''}`",
        f"HBM: copy {bw['copy_gbps']:.0f} GB/s, read-only reduction "
        f"{bw['read_reduce_gbps']:.0f} GB/s (the larger is the roofline).",
        "",
        "| context | batch | engine tok/s | engine ms/step | forward eager ms | forward graph ms "
        "| GB read/token (B=1) | HBM fraction (engine / eager / graph) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        frac = " / ".join(
            f"{r[k]:.1%}" if k in r else "-"
            for k in ("engine_hbm_fraction", "forward_eager_hbm_fraction",
                      "forward_graph_hbm_fraction")
        )  # fmt: skip
        graph = f"{r['forward_graph_ms']:.2f}" if "forward_graph_ms" in r else "-"
        lines.append(
            f"| {r['context']} | {r['batch']} | {r['engine_tok_s']:.1f} | "
            f"{r['engine_ms_per_step']:.2f} | {r['forward_eager_ms']:.2f} | {graph} | "
            f"{r['bytes_read_per_token_batch1'] / 1e9:.3f} | {frac} |"
        )
    if peer is not None:
        lines += ["", f"Hugging Face transformers peer (batch 1): {json.dumps(peer)}"]

    def plot(fig) -> None:
        ax = fig.add_subplot(1, 1, 1)
        for ctx in sorted({r["context"] for r in rows}):
            rs = [r for r in rows if r["context"] == ctx]
            ax.plot([r["batch"] for r in rs], [r["engine_tok_s"] for r in rs], "o-",
                    label=f"TokenSpeed, context {ctx}")  # fmt: skip
        if peer and "hf_tok_s" in peer:
            ax.plot(
                [1], [peer["hf_tok_s"]], "s", label=f"HF transformers, context {peer['context']}"
            )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel("decode tokens/s")
        ax.set_title(f"decode {args.model}, {env['device']}")
        ax.legend()

    write(args.out, stem, result, lines, plot)


if __name__ == "__main__":
    main()
