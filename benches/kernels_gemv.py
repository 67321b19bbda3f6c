"""``gemv`` section of benches/kernels.py: the decode GEMV (`kernels/triton/gemv.py`) against
F.linear (cuBLAS) at the four decode projections, M = 1 and 8, in CUDA graphs.

Rows per (projection, M): ``F.linear``; ``norm+F.linear`` (the unfused path: the Triton norm
kernel then cuBLAS); ``triton`` (no prologue; out_proj's shape is also attention's o_proj);
``triton+prologue`` (the fused op the model runs); then ``sweep`` rows: the prologue GEMV at
each (BN, BK, num_warps), to fill ``gemv.CONFIGS``. %HBM counts the weight bytes only.
Every call in a graph reads another copy of the weight, so L2 (50 MB) holds none of them.
"""

# ruff: noqa: B023  (every closure below is timed immediately, inside its loop iteration)
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from tokenspeed.kernels.triton import gemv, norm

DEV, BF16 = "cuda", torch.bfloat16
EPS = 1e-6
SHAPES = {"in_proj": (12352, 2048), "qkv_proj": (9216, 2048), "out_proj": (2048, 4096),
          "router": (257, 2048)}  # fmt: skip
HV, DV = 32, 128  # out_proj's gated norm: 32 value heads of 128
SWEEP = {
    1: [(4, 512, 4), (4, 1024, 4), (8, 256, 4), (8, 512, 4), (8, 512, 8), (16, 128, 4),
        (16, 256, 4), (16, 256, 8), (32, 128, 4), (32, 128, 8), (32, 256, 8)],
    8: [(16, 64, 4), (16, 128, 4), (16, 256, 4), (16, 256, 8), (32, 64, 4), (32, 128, 4),
        (32, 128, 8), (64, 64, 4), (64, 128, 8)],
}  # fmt: skip

Row = Callable[..., None]
GraphMs = Callable[[list[Callable[[], object]]], float]


def _copies(nbytes: int) -> int:
    return max(4, min(64, -(-3 * 50 * 2**20 // nbytes)))


def bench_gemv(row: Row, graph_ms: GraphMs) -> None:
    for m in (1, 8):
        for site, (n, k) in SHAPES.items():
            ws = [
                torch.randn(n, k, device=DEV, dtype=BF16) * 0.02 for _ in range(_copies(2 * n * k))
            ]
            nbytes = 2 * n * k
            shape = f"{site} {k}->{n} M={m}"
            x, res = (
                torch.randn(m, k, device=DEV, dtype=BF16),
                torch.randn(m, k, device=DEV, dtype=BF16),
            )
            if site == "out_proj":
                nw = torch.rand(DV, device=DEV, dtype=BF16)
                zsrc = torch.randn(m, 3 * k, device=DEV, dtype=BF16)
                z = zsrc[:, k : 2 * k]  # a column slice of in_proj's output, as in GDN
                o3, z3 = x.view(m, HV, DV), z.view(m, HV, DV)

                def unfused(w: torch.Tensor) -> object:
                    return F.linear(norm.gated_rms_norm(o3, z3, nw, EPS).reshape(m, k), w)

                def fused(w: torch.Tensor, cfg: tuple[int, int, int] | None = None) -> object:
                    return gemv.gemv(x, w, norm_weight=nw, gate=z, eps=EPS, head_dim=DV, config=cfg)
            else:
                nw = torch.randn(k, device=DEV, dtype=BF16) * 0.1
                want_h = site == "router"

                def unfused(w: torch.Tensor) -> object:
                    return F.linear(norm.add_rms_norm(x, res, nw, EPS)[0], w)

                def fused(w: torch.Tensor, cfg: tuple[int, int, int] | None = None) -> object:
                    return gemv.gemv(
                        x, w, residual=res, norm_weight=nw, eps=EPS, write_h=want_h, config=cfg
                    )

            timed: list[tuple[str, Callable[[torch.Tensor], object], dict]] = [
                ("F.linear", lambda w: F.linear(x, w), {}),
                ("norm+F.linear", unfused, {}),
                ("triton", lambda w: gemv.gemv(x, w), {"config": gemv.pick_config(m, n, k)}),
                ("triton+prologue", fused, {"config": gemv.pick_config(m, n, k)}),
            ]
            for cfg in SWEEP[m]:
                timed.append(("sweep", lambda w, c=cfg: fused(w, c), {"config": cfg}))
            for impl, fn, extra in timed:
                try:
                    t = graph_ms([lambda w=w, fn=fn: fn(w) for w in ws])
                except Exception as e:  # a config the compiler rejects: report, go on
                    print(f"gemv {shape} {impl} {extra}: {e!r}"[:300], flush=True)
                    continue
                row("gemv", shape, impl, t, nbytes, **extra)
            del ws
            torch.cuda.empty_cache()
