"""GDN sections of benches/kernels.py: ``gdn_decode`` (the recurrent step at batch 1-256, eager
and in a CUDA graph, against the fp32 state bytes moved), ``gdn_chunked`` (the chunked prefill
at 2k/8k/32k against flash-linear-attention's ``chunk_gated_delta_rule``, with a coordinate
descent over its launch settings at 8k) and the opt-in ``profile_gdn`` (per-kernel times of
every variant)."""

# ruff: noqa: B023  (every lambda below is timed immediately, inside its loop iteration)
from __future__ import annotations

import itertools
import json
from collections.abc import Callable

import tokenspeed.kernels.triton as tk
import torch
from kernels_common import (
    BF16,
    CONV_DIM,
    DEV,
    DK,
    DV,
    GRAPH_LAYERS,
    HK,
    HV,
    graph_ms,
    ms,
    profile_rows,
    row,
)
from tokenspeed.kernels import reference as ref


def gdn_inputs(tokens: int) -> tuple:
    packed = torch.randn(tokens, CONV_DIM + 2 * HV, device=DEV, dtype=BF16)
    q, k, v, a, b = packed.split([HK * DK, HK * DK, HV * DV, HV, HV], dim=-1)
    A_log = torch.empty(HV, device=DEV).uniform_(0.5, 16).log()
    dt_bias = torch.randn(HV, device=DEV) * 0.5
    return (
        q.view(tokens, HK, DK),
        k.view(tokens, HK, DK),
        v.view(tokens, HV, DV),
        a,
        b,
        A_log,
        dt_bias,
    )


def bench_gdn_decode() -> None:
    for batch in (1, 8, 32, 64, 128, 256):
        inputs = gdn_inputs(batch)
        state = torch.zeros(batch + 1, HV, DK, DV, device=DEV)
        slots, init = (
            torch.arange(1, batch + 1, device=DEV),
            torch.ones(batch, dtype=torch.bool, device=DEV),
        )
        nbytes = 2 * batch * HV * DK * DV * 4  # fp32 state read + written
        for impl, fn in (
            ("triton", tk.gdn_recurrent.gdn_recurrent),
            ("reference", ref.gdn_recurrent),
        ):
            row(
                "gdn_decode",
                f"B={batch}",
                impl,
                ms(lambda fn=fn: fn(*inputs, state, slots, init)),
                nbytes,
            )
        # As decode runs it: in a CUDA graph, one call per layer, each on its own state (the
        # eager row above is launch-bound below ~64 sequences: ~70 us a call on the host).
        states = [state] + [torch.zeros_like(state) for _ in range(GRAPH_LAYERS - 1)]
        calls = [
            lambda s=s: tk.gdn_recurrent.gdn_recurrent(*inputs, s, slots, init) for s in states
        ]
        row("gdn_decode", f"B={batch}", "triton-graph", graph_ms(calls), nbytes)
        del states, calls


GDN_SWEEP = {  # coordinate descent at 8k tokens over the launch settings of gdn_chunked
    "state_impl": ("tile", "split64"),
    "state_bv": (32, 64),
    "state_warps": (2, 4),
    "state_stages": (2, 3),  # not 1: an illegal memory access there once poisoned a run
    "solve_warps": (2, 4),
    "solve_merge64": (False, True),
    "wu_warps": (4, 8),
    "out_bv": (64, 128),
    "out_warps": (4, 8),
}  # fp32-operand (TF32) dots are timed beside the best


def bench_gdn_chunked() -> None:
    """Triton (default config, the swept best, TF32 dots), the reference
    and fla's ``chunk_gated_delta_rule``; max |diff| of outputs and final states against the
    fp32 reference at 2k/8k. Bytes = q, k, v, a, b read + o written (the unavoidable traffic)."""
    try:
        from fla.ops.gated_delta_rule import chunk_gated_delta_rule
    except Exception as e:
        print(f"fla unavailable: {e!r}")
        chunk_gated_delta_rule = None
    cfg = tk.gdn_chunked.CONFIG
    default = dict(cfg)

    def run_mine(inputs: tuple, tokens: int) -> tuple:
        state = torch.zeros(2, HV, DK, DV, device=DEV)
        cu = torch.tensor([0, tokens], dtype=torch.int32, device=DEV)
        one, init = torch.tensor([1], device=DEV), torch.tensor([False], device=DEV)
        return (lambda: tk.gdn_chunked.gdn_chunked(*inputs, state, cu, one, init)), state

    def timed(inputs: tuple, tokens: int) -> float:
        fn, _ = run_mine(inputs, tokens)
        try:
            fn()
            return ms(fn)
        except Exception as e:
            print(f"gdn config {dict(cfg)} failed: {e!r}"[:400])
            return float("inf")

    inputs = gdn_inputs(8192)
    best = timed(inputs, 8192)
    row("gdn_chunked", "T=8192", "triton-sweep", best, config=dict(cfg))
    for knob, values in GDN_SWEEP.items():
        keep = cfg[knob]
        for value in values:
            if value == keep:
                continue
            cfg[knob] = value
            t = timed(inputs, 8192)
            row("gdn_chunked", "T=8192", "triton-sweep", t, config=dict(cfg))
            if t < best:
                best, keep = t, value
        cfg[knob] = keep
    swept = dict(cfg)
    print(json.dumps({"gdn_chunked_best_config": swept}), flush=True)
    for tokens in (2048, 8192, 32768):
        inputs = gdn_inputs(tokens)
        nbytes = tokens * (CONV_DIM + 2 * HV) * 2 + tokens * HV * DV * 2
        results = {}
        for name, conf in (("triton", default), ("triton-swept", swept),
                           ("triton-tf32", {**swept, "bf16_dots": False})):  # fmt: skip
            cfg.update(conf)
            results[name] = timed(inputs, tokens)
            row("gdn_chunked", f"T={tokens}", name, results[name], nbytes, config=conf)
        cfg.update(default)
        want = None
        if tokens <= 8192:
            state_ref = torch.zeros(2, HV, DK, DV, device=DEV)
            cu = torch.tensor([0, tokens], dtype=torch.int32, device=DEV)
            one, init = torch.tensor([1], device=DEV), torch.tensor([False], device=DEV)
            row(
                "gdn_chunked",
                f"T={tokens}",
                "reference",
                ms(lambda: ref.gdn_chunked(*inputs, state_ref, cu, one, init)),
                nbytes,
            )
            want = ref.gdn_chunked(*inputs, state_ref, cu, one, init).float()
            for name, conf in (("triton", default), ("triton-swept", swept),
                               ("triton-tf32", {**swept, "bf16_dots": False})):  # fmt: skip
                cfg.update(conf)
                fn, st = run_mine(inputs, tokens)
                o = fn().float()
                row("gdn_chunked", f"T={tokens}", f"{name}-accuracy", 0.0,
                    max_abs_diff_out_vs_reference=(o - want).abs().max().item(),
                    max_abs_diff_state_vs_reference=(st[1] - state_ref[1]).abs().max().item())  # fmt: skip
            cfg.update(default)
        if chunk_gated_delta_rule is not None:
            q, k, v, a, b, A_log, dt_bias = inputs
            g, beta = ref.gdn_gates(a, b, A_log, dt_bias)
            r = HV // HK
            qf = q.repeat_interleave(r, dim=1)[None].contiguous()
            kf = k.repeat_interleave(r, dim=1)[None].contiguous()
            vf, gf, bf = (
                v[None].contiguous(),
                g[None].contiguous(),
                beta.to(BF16)[None].contiguous(),
            )
            cu_l = torch.tensor([0, tokens], dtype=torch.long, device=DEV)

            def fla():
                return chunk_gated_delta_rule(qf, kf, vf, gf, bf, scale=DK**-0.5, output_final_state=True,
                                              cu_seqlens=cu_l, use_qk_l2norm_in_kernel=True)  # fmt: skip

            for _ in range(3):  # autotuning outside the timing
                fla()
            t_fla = ms(fla)
            o_fla, s_fla = fla()
            extra = {"ratio_triton_over_fla": round(results["triton"] / t_fla, 3),
                     "ratio_swept_over_fla": round(results["triton-swept"] / t_fla, 3)}  # fmt: skip
            if want is not None:
                extra["max_abs_diff_out_vs_reference"] = (
                    (o_fla[0].float() - want).abs().max().item()
                )
                extra["max_abs_diff_state_vs_reference"] = (
                    (s_fla[0].float() - state_ref[1]).abs().max().item()
                )
            row("gdn_chunked", f"T={tokens}", "fla", t_fla, nbytes, **extra)


def fla_chunked_call(inputs: tuple, tokens: int) -> Callable[[], object]:
    """fla's ``chunk_gated_delta_rule`` on the same inputs (k/q heads repeated to Hv)."""
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule

    q, k, v, a, b, A_log, dt_bias = inputs
    g, beta = ref.gdn_gates(a, b, A_log, dt_bias)
    r = HV // HK
    qf = q.repeat_interleave(r, dim=1)[None].contiguous()
    kf = k.repeat_interleave(r, dim=1)[None].contiguous()
    vf, gf, bf = v[None].contiguous(), g[None].contiguous(), beta.to(BF16)[None].contiguous()
    cu_l = torch.tensor([0, tokens], dtype=torch.long, device=DEV)
    return lambda: chunk_gated_delta_rule(qf, kf, vf, gf, bf, scale=DK**-0.5,
                                          output_final_state=True, cu_seqlens=cu_l,
                                          use_qk_l2norm_in_kernel=True)  # fmt: skip


def profile_gdn() -> None:
    """Per-kernel GPU time of GDN chunked prefill, ours and fla's, at 8k and 32k tokens."""
    for tokens in (8192, 32768):
        inputs = gdn_inputs(tokens)
        state = torch.zeros(2, HV, DK, DV, device=DEV)
        cu = torch.tensor([0, tokens], dtype=torch.int32, device=DEV)
        one, init = torch.tensor([1], device=DEV), torch.tensor([False], device=DEV)
        mine = lambda: tk.gdn_chunked.gdn_chunked(*inputs, state, cu, one, init)  # noqa: E731
        profile_rows("gdn_chunked", f"T={tokens}", "triton", mine)
        row("gdn_chunked", f"T={tokens}", "triton", ms(mine), config=dict(tk.gdn_chunked.CONFIG))
        want = None
        try:
            fla = fla_chunked_call(inputs, tokens)
            for _ in range(3):
                fla()
            profile_rows("gdn_chunked", f"T={tokens}", "fla", fla)
            row("gdn_chunked", f"T={tokens}", "fla", ms(fla))
            want = fla()[0][0].float()
        except Exception as e:
            print(f"fla unavailable: {e!r}")
        sweep_gdn(tokens, mine, want)


def gdn_variants() -> list[dict]:
    """CONFIG variants, one kernel's settings at a time (the others at their defaults), so a
    row's change in total time is that kernel's. 30 rows; split64 state first, the tile state
    last. No num_stages=1: an earlier sweep hit an illegal memory access there, which poisons
    the CUDA context for every later row."""
    st = ("state_bv", "state_warps", "state_stages")
    out: list[dict] = [
        {"state_impl": "split64", **dict(zip(st, g, strict=True))}
        for g in itertools.product((32, 64), (2, 4), (2, 3))
    ]
    out += [{"solve_warps": w, "solve_merge64": m} for m in (False, True) for w in (2, 4, 8)]
    out += [{"wu_warps": w, "wu_bc": bc} for w in (4, 8) for bc in (64, 128)]
    out += [{"out_bv": bv, "out_warps": w} for bv in (64, 128) for w in (4, 8)]
    out += [
        {"state_kt": kt, **dict(zip(st, (bv, w, 2), strict=True))}
        for kt, bv, w in itertools.product((False, True), (32, 64), (2, 4))
    ]
    return out


def sweep_gdn(tokens: int, mine: Callable[[], torch.Tensor], want: torch.Tensor | None) -> None:
    """One row per CONFIG variant: total ms and (with fla) the max error relative to fla's."""
    cfg, default = tk.gdn_chunked.CONFIG, dict(tk.gdn_chunked.CONFIG)
    for variant in gdn_variants():
        cfg.update(default)
        cfg.update(variant)
        try:
            extra = {}
            if want is not None:
                err = (mine().float() - want).abs().max() / want.abs().max()
                extra["rel_err_vs_fla"] = round(err.item(), 5)
            row("gdn_chunked", f"T={tokens}", "triton-sweep", ms(mine), config=variant, **extra)
        except Exception as e:
            print(f"gdn config {variant} failed: {e!r}"[:300])
    cfg.update(default)
