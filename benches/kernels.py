"""Kernel benchmarks: each Triton kernel against the PyTorch reference, flash-linear-attention
(if ``fla`` is importable) and the physical bounds measured in the same run.

    PYTHONPATH=python python benches/kernels.py --out benches/results

Shapes are Qwen3.5-35B-A3B's (bf16 activations, fp32 GDN state). HBM bandwidth is a large
device-to-device copy (bytes read + written / time); matmul peak is an 8192³ bf16 GEMM.
Writes ``kernels-<date>.json`` and ``kernels-<date>.md`` (device, date, commit) to ``--out``.
The GDN sections live in ``kernels_gdn.py``, the decode GEMV one in ``kernels_gemv.py``, what
they share (shapes, timers, rows) in ``kernels_common.py``.
"""

# ruff: noqa: B023  (every lambda below is timed immediately, inside its loop iteration)
from __future__ import annotations

import argparse
import itertools
import json
import os
import traceback
from pathlib import Path

import kernels_gemv  # benches/: the decode GEMV section
import tokenspeed.kernels.triton as tk
import torch
from kernels_common import (
    BF16,
    BOUNDS,
    CONV_DIM,
    DEV,
    DV,
    HD,
    HV,
    NH,
    NKV,
    PAGE,
    ROWS,
    H,
    graph_ms,
    ms,
    profile_rows,
    row,
)
from kernels_gdn import bench_gdn_chunked, bench_gdn_decode, profile_gdn
from report import environment
from tokenspeed.kernels import reference as ref


def measure_bounds() -> dict:
    src = torch.empty(2**30, dtype=torch.uint8, device=DEV)
    dst = torch.empty_like(src)
    t = ms(lambda: dst.copy_(src))
    a, b = (
        torch.randn(8192, 8192, device=DEV, dtype=BF16),
        torch.randn(8192, 8192, device=DEV, dtype=BF16),
    )
    tm = ms(lambda: a @ b)
    return {
        "hbm_GBps": round(2 * 2**30 / t / 1e6, 1),
        "bf16_TFLOPs": round(2 * 8192**3 / tm / 1e9, 1),
    }


def bench_norms() -> None:
    for tokens in (1, 8192):
        x, res, w = (torch.randn(tokens, H, device=DEV, dtype=BF16) for _ in range(3))
        nbytes = 3 * x.numel() * 2
        for impl, fn in (("triton", tk.norm.add_rms_norm), ("reference", ref.add_rms_norm)):
            row(
                "add_rms_norm",
                f"{tokens}x{H}",
                impl,
                ms(lambda fn=fn: fn(x, res, w, 1e-6)),
                nbytes + x.numel() * 2,
            )
        o = torch.randn(tokens, HV, DV, device=DEV, dtype=BF16)
        z = torch.randn(tokens, HV, DV, device=DEV, dtype=BF16)
        wn = torch.ones(DV, device=DEV)
        for impl, fn in (("triton", tk.norm.gated_rms_norm), ("reference", ref.gated_rms_norm)):
            row(
                "gated_rms_norm",
                f"{tokens}x{HV}x{DV}",
                impl,
                ms(lambda fn=fn: fn(o, z, wn, 1e-6)),
                3 * o.numel() * 2,
            )


def bench_conv() -> None:
    tokens = 8192
    x = torch.randn(tokens, CONV_DIM, device=DEV, dtype=BF16)
    w = torch.randn(CONV_DIM, 4, device=DEV, dtype=BF16)
    state = torch.zeros(4, CONV_DIM, 3, device=DEV, dtype=BF16)
    cu = torch.tensor([0, tokens], dtype=torch.int32, device=DEV)
    one, init = torch.tensor([1], device=DEV), torch.tensor([True], device=DEV)
    for impl, fn in (("triton", tk.conv.conv1d_varlen), ("reference", ref.conv1d_varlen)):
        row(
            "conv1d_varlen",
            f"{tokens}x{CONV_DIM}",
            impl,
            ms(lambda fn=fn: fn(x, w, state, cu, one, init)),
            2 * x.numel() * 2,
        )
    for batch in (1, 64, 256):
        xd = torch.randn(batch, CONV_DIM, device=DEV, dtype=BF16)
        st = torch.zeros(batch + 1, CONV_DIM, 3, device=DEV, dtype=BF16)
        slots, ini = (
            torch.arange(1, batch + 1, device=DEV),
            torch.ones(batch, dtype=torch.bool, device=DEV),
        )
        nbytes = batch * CONV_DIM * 2 * (2 + 2 * 3)
        for impl, fn in (("triton", tk.conv.conv1d_decode), ("reference", ref.conv1d_decode)):
            row(
                "conv1d_decode",
                f"B={batch}",
                impl,
                ms(lambda fn=fn: fn(xd, w, st, slots, ini)),
                nbytes,
            )


def paged_setup(batch: int, context: int, new: int) -> tuple:
    pages = -(-(context + new) // PAGE)
    k_cache = torch.randn(batch * pages + 1, PAGE, NKV, HD, device=DEV, dtype=BF16)
    v_cache = torch.randn_like(k_cache)
    table = (torch.randperm(batch * pages, device=DEV) + 1).view(batch, pages).to(torch.int32)
    cu = torch.arange(batch + 1, device=DEV, dtype=torch.int32) * new
    prefix = torch.full((batch,), context, dtype=torch.int32, device=DEV)
    return (
        torch.randn(batch * new, NH, HD, device=DEV, dtype=BF16),
        k_cache,
        v_cache,
        table,
        cu,
        prefix,
    )


def bench_attention() -> None:
    for batch in (1, 8, 32, 64):
        args = paged_setup(batch, 32768 - 1, 1)
        nbytes = 2 * batch * 32768 * NKV * HD * 2  # K and V read
        row(
            "paged_decode",
            f"B={batch},ctx=32k",
            "triton",
            ms(lambda: tk.attention.paged_attention(*args, HD**-0.5)),
            nbytes,
        )
        if batch <= 8:
            row(
                "paged_decode",
                f"B={batch},ctx=32k",
                "reference",
                ms(lambda: ref.paged_attention(*args, HD**-0.5)),
                nbytes,
            )
    tokens = 8192
    args = paged_setup(1, 0, tokens)
    default = dict(tk.attention.PREFILL_CONFIG)
    configs = ((64, 32, 8, 2), (128, 32, 8, 2), (128, 64, 8, 2), (64, 64, 4, 2), (128, 64, 8, 3))
    for bm, bn, warps, stages in configs:
        tk.attention.PREFILL_CONFIG.update(
            block_m=bm, block_n=bn, num_warps=warps, num_stages=stages
        )
        try:
            t = ms(lambda: tk.attention.paged_attention(*args, HD**-0.5))
            row("paged_prefill", f"T={tokens}", "triton", t, config=[bm, bn, warps, stages])
        except Exception as e:
            print(f"prefill config {bm, bn, warps, stages} failed: {e!r}"[:300])
    tk.attention.PREFILL_CONFIG.update(default)
    q = torch.randn(1, NH, tokens, HD, device=DEV, dtype=BF16)
    k = torch.randn(1, NKV, tokens, HD, device=DEV, dtype=BF16)
    v = torch.randn_like(k)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    ke, ve = k.repeat_interleave(NH // NKV, 1), v.repeat_interleave(NH // NKV, 1)
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        f = torch.nn.functional.scaled_dot_product_attention
        row("paged_prefill", f"T={tokens}", "sdpa_flash", ms(lambda: f(q, ke, ve, is_causal=True)))


# 35B-A3B experts + the shared one as expert E, every token's extra slot (`moe_route_shared`)
E, TOP_K, IM = 256, 8, 512
SLOTS = TOP_K + 1
GRAPH_CALLS = 32  # calls per CUDA graph, each on other experts (L2 holds none of them)

# Decode launch shapes tried per kernel (coordinate descent: up first, then down).
MOE_DECODE_SWEEP = {
    "up": [(bn, bk, w) for bn in (2, 4, 8, 16) for bk in (512, 1024) for w in (4, 8)],
    "down": [(bn, bk, w) for bn in (4, 8, 16) for bk in (256, 512) for w in (4, 8)],
}
# Prefill: (tail_m,) of the experts' tail blocks (0: none), then
# (block_m, up_bn, up_bk, up_warps, up_stages), then (down_bn, down_bk, warps, stages); the env
# variable MOE_SWEEP_PARTS (default "tail,up,down") picks the parts.
MOE_PREFILL_SWEEP = {
    "tail": [(64,), (0,)],
    "up": [(128, 128, 64, 8, 3), (128, 128, 64, 8, 4), (128, 64, 64, 4, 4), (128, 64, 64, 4, 3),
           (128, 128, 64, 4, 3), (64, 128, 64, 4, 4), (64, 64, 64, 4, 4), (128, 64, 128, 8, 3),
           (64, 128, 64, 8, 3)],
    "down": [(128, 64, 8, 3), (256, 64, 8, 3), (128, 64, 4, 4), (128, 128, 8, 3),
             (256, 64, 8, 4), (64, 64, 4, 4), (128, 32, 4, 5), (256, 32, 8, 4)],
}  # fmt: skip


def expert_weights() -> tuple[torch.Tensor, torch.Tensor]:
    """[gate|up] and down weights of E + 1 experts (the last one is the shared expert)."""
    gate_up = torch.randn(E + 1, 2 * IM, H, device=DEV, dtype=BF16) * 0.02
    return gate_up, torch.randn(E + 1, H, IM, device=DEV, dtype=BF16) * 0.02


def moe_decode_calls(
    tokens: int, w_gate_up: torch.Tensor, w_down: torch.Tensor
) -> tuple[list, float]:
    """GRAPH_CALLS calls, each on other experts (batch 1: disjoint sets of SLOTS experts, any
    one standing for the shared one); mean distinct-expert bytes per call."""
    calls, nbytes = [], 0
    for i in range(GRAPH_CALLS):
        x = torch.randn(tokens, H, device=DEV, dtype=BF16)
        if tokens == 1:
            ids = torch.arange(i * SLOTS, (i + 1) * SLOTS, device=DEV)[None] % (E + 1)
            weights = torch.softmax(torch.randn(1, SLOTS, device=DEV), -1).to(BF16)
        else:
            logits = torch.randn(tokens, E + 1, device=DEV, dtype=BF16)
            weights, ids = ref.moe_route_shared(logits, TOP_K, True)
        nbytes += ids.unique().numel() * 3 * IM * H * 2
        calls.append(lambda x=x, w=weights, i=ids: tk.moe.moe_experts(x, w_gate_up, w_down, w, i))
    return calls, nbytes / GRAPH_CALLS


def bench_moe() -> None:
    """Experts only (routing given): decode reads only the chosen experts; prefill is compute."""
    w_gate_up, w_down = expert_weights()
    dec = tk.moe.DECODE_CONFIG
    for tokens in (1, 8, 32):
        shape = f"B={tokens},E={E}+1,k={TOP_K}+1"
        calls, nbytes = moe_decode_calls(tokens, w_gate_up, w_down)
        row("moe_decode", shape, "triton-gemv-graph", graph_ms(calls), nbytes, config=dict(dec))
        row("moe_decode", shape, "triton-gemv-eager", ms(calls[0]), nbytes, config=dict(dec))
        if tokens == 1:
            profile_rows("moe_decode", shape, "triton-gemv", calls[0])
            x = torch.randn(tokens, H, device=DEV, dtype=BF16)
            logits = torch.randn(1, E + 1, device=DEV, dtype=BF16)
            weights, ids = ref.moe_route_shared(logits, TOP_K, True)
            t = ms(lambda: ref.moe_experts(x, w_gate_up, w_down, weights, ids))
            row("moe_decode", shape, "reference", t, nbytes)


def sweep_moe_decode() -> None:
    """Coordinate descent over the decode launch shapes at batch 1, then batch 8 and 32 with
    the best; CUDA-graph timing as in `bench_moe`."""
    w_gate_up, w_down = expert_weights()
    dec = tk.moe.DECODE_CONFIG
    calls, nbytes = moe_decode_calls(1, w_gate_up, w_down)
    for part in ("up", "down"):
        best, best_t = None, float("inf")
        for bn, bk, warps in MOE_DECODE_SWEEP[part]:
            dec.update({f"{part}_bn": bn, f"{part}_bk": bk, f"{part}_warps": warps})
            try:
                t = graph_ms(calls)
            except Exception as e:
                print(f"decode {part} {bn, bk, warps} failed: {e!r}"[:300])
                continue
            row("moe_decode_sweep", "B=1", part, t, nbytes, config=[bn, bk, warps])
            if t < best_t:
                best, best_t = (bn, bk, warps), t
        dec.update(dict(zip((f"{part}_bn", f"{part}_bk", f"{part}_warps"), best, strict=True)))
    best_t = graph_ms(calls)
    best = {k: dec[k] for k in ("down", "pdl", "down_bn", "down_warps")}
    for bn, warps, pdl in itertools.product((2, 4, 8), (4, 8), (False, True)):
        dec.update(down="tiles", pdl=pdl, down_bn=bn, down_warps=warps)
        try:
            t = graph_ms(calls)
        except Exception as e:
            print(f"decode tiles {bn, warps, pdl} failed: {e!r}"[:300])
            continue
        row("moe_decode_sweep", "B=1", "down-tiles", t, nbytes, config=[bn, warps, pdl])
        if t < best_t:
            best, best_t = {"down": "tiles", "pdl": pdl, "down_bn": bn, "down_warps": warps}, t
    dec.update(best)
    print(json.dumps({"moe_decode_best": dec}), flush=True)
    for tokens in (8, 32):
        calls8, nbytes8 = moe_decode_calls(tokens, w_gate_up, w_down)
        row("moe_decode_sweep", f"B={tokens}", "best", graph_ms(calls8), nbytes8, config=dict(dec))


def sweep_moe_prefill() -> None:
    """Prefill at 8k tokens: profile of the default, then coordinate descent over the tiles."""
    w_gate_up, w_down = expert_weights()
    tokens = 8192
    x = torch.randn(tokens, H, device=DEV, dtype=BF16)
    logits = torch.randn(tokens, E + 1, device=DEV, dtype=BF16)
    weights, ids = ref.moe_route_shared(logits, TOP_K, True)
    flops = 2 * tokens * SLOTS * 3 * IM * H
    shape = f"T={tokens},E={E}+1,k={TOP_K}+1"
    fn = lambda: tk.moe.moe_experts(x, w_gate_up, w_down, weights, ids)  # noqa: E731
    profile_rows("moe_prefill", shape, "triton", fn)
    pre = tk.moe.PREFILL_CONFIG
    keys = {"tail": ("tail_m",),
            "up": ("block_m", "up_bn", "up_bk", "up_warps", "up_stages"),
            "down": ("down_bn", "down_bk", "down_warps", "down_stages")}  # fmt: skip
    for part in os.environ.get("MOE_SWEEP_PARTS", "tail,up,down").split(","):
        best, best_t = None, float("inf")
        for conf in MOE_PREFILL_SWEEP[part]:
            pre.update(dict(zip(keys[part], conf, strict=True)))
            try:
                t = ms(fn)
            except Exception as e:
                print(f"prefill {part} {conf} failed: {e!r}"[:300])
                continue
            tflops = flops / t / 1e9
            row("moe_prefill_sweep", shape, part, t, config=list(conf), TFLOPs=round(tflops, 1),
                pct_gemm_peak=round(100 * tflops / BOUNDS["bf16_TFLOPs"], 1))  # fmt: skip
            if t < best_t:
                best, best_t = conf, t
        pre.update(dict(zip(keys[part], best, strict=True)))
    print(json.dumps({"moe_prefill_best": pre}), flush=True)
    profile_rows("moe_prefill", shape, "triton-best", fn)


def bench_moe_prefill() -> None:
    w_gate_up, w_down = expert_weights()
    tokens = 8192
    x = torch.randn(tokens, H, device=DEV, dtype=BF16)
    logits = torch.randn(tokens, E + 1, device=DEV, dtype=BF16)
    weights, ids = ref.moe_route_shared(logits, TOP_K, True)
    flops = 2 * tokens * SLOTS * 3 * IM * H
    shape = f"T={tokens},E={E}+1,k={TOP_K}+1"
    t = ms(lambda: tk.moe.moe_experts(x, w_gate_up, w_down, weights, ids))
    tflops = flops / t / 1e9
    row("moe_prefill", shape, "triton", t, config=dict(tk.moe.PREFILL_CONFIG),
        TFLOPs=round(tflops, 1), pct_gemm_peak=round(100 * tflops / BOUNDS["bf16_TFLOPs"], 1))  # fmt: skip
    t = ms(lambda: tk.moe.moe_route_shared(logits, TOP_K, True))
    row("moe_route_shared", shape, "triton", t, logits.numel() * 2)
    t = ms(lambda: ref.moe_route_shared(logits, TOP_K, True))
    row("moe_route_shared", shape, "reference", t, logits.numel() * 2)


def bench_attention_input() -> None:
    """Fused q/k norm + RoPE + gate split + KV write, and silu_and_mul (memory-bound)."""
    inv_freq = ref.rope_inv_freq(HD // 4, 1e7, DEV)
    for tokens in (1, 8192):
        qkv = torch.randn(tokens, 2 * NH * HD + 2 * NKV * HD, device=DEV, dtype=BF16)
        w = torch.zeros(HD, device=DEV, dtype=BF16)
        pos = torch.arange(tokens, device=DEV)
        kc = torch.zeros(tokens // PAGE + 2, PAGE, NKV, HD, device=DEV, dtype=BF16)
        vc = torch.zeros_like(kc)
        rows = torch.arange(tokens, device=DEV) + PAGE
        nbytes = qkv.numel() * 2 + (NH + 2 * NKV) * HD * tokens * 2
        for impl, fn in (("triton", tk.rope.qk_norm_rope_kv_write),
                         ("reference", ref.qk_norm_rope_kv_write)):  # fmt: skip
            t = ms(lambda: fn(qkv, w, w, 1e-6, pos, inv_freq, NH, NKV, HD, kc, vc, rows))
            row("qk_norm_rope_kv_write", f"T={tokens}", impl, t, nbytes)
    x = torch.randn(8192, 2 * 4096, device=DEV, dtype=BF16)
    for impl, fn in (("triton", tk.activation.silu_and_mul), ("reference", ref.silu_and_mul)):
        row("silu_and_mul", "8192x2x4096", impl, ms(lambda: fn(x)), x.numel() * 2 * 1.5)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("benches/results"))
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args()
    BOUNDS.update(measure_bounds())
    print(json.dumps(BOUNDS), flush=True)
    sections = {"norms": bench_norms, "conv": bench_conv, "gdn_decode": bench_gdn_decode,
                "gdn_chunked": bench_gdn_chunked, "attention": bench_attention, "moe": bench_moe,
                "moe_prefill": bench_moe_prefill, "attention_input": bench_attention_input,
                "sweep_moe_decode": sweep_moe_decode, "sweep_moe_prefill": sweep_moe_prefill,
                "profile_gdn": profile_gdn,
                "gemv": lambda: kernels_gemv.bench_gemv(row, graph_ms)}  # fmt: skip
    for name, fn in sections.items():
        if (args.only and name not in args.only) or (not args.only and name in OPT_IN):
            continue
        try:
            fn()
        except Exception:
            traceback.print_exc()
            ROWS.append({"kernel": name, "error": traceback.format_exc(limit=2)})
    meta = {**environment(torch.device("cuda")), **BOUNDS}  # TS_COMMIT names the tree
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = meta["date"][:10] + (f"-{'-'.join(args.only)}" if args.only else "")
    (args.out / f"kernels-{stamp}.json").write_text(
        json.dumps({"meta": meta, "rows": ROWS}, indent=1)
    )
    lines = [f"# Kernel benchmarks — {meta['device']}, {meta['date']}, commit {meta['commit']}", "",
             f"Measured in this run: HBM copy {BOUNDS['hbm_GBps']} GB/s, bf16 GEMM {BOUNDS['bf16_TFLOPs']} TFLOP/s.", "",
             "| kernel | shape | impl | ms | GB/s | %HBM | notes |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in ROWS:
        notes = {
            k: v for k, v in r.items() if k not in ("kernel", "shape", "impl", "ms", "GB/s", "%HBM")
        }
        lines.append(f"| {r['kernel']} | {r.get('shape', '')} | {r.get('impl', '')} | {r.get('ms', '')} | "
                     f"{r.get('GB/s', '')} | {r.get('%HBM', '')} | {json.dumps(notes) if notes else ''} |")  # fmt: skip
    (args.out / f"kernels-{stamp}.md").write_text("\n".join(lines) + "\n")


# Only when named in --only:
OPT_IN = ("sweep_moe_decode", "sweep_moe_prefill", "profile_gdn", "gemv")

if __name__ == "__main__":
    main()
