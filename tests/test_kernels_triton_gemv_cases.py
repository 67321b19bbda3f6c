"""The few-token GEMV ops (`tokenspeed.kernels.triton.gemv`) against their references (the
unfused norm op followed by ``F.linear``), at K/N that are not multiples of the blocks.

Runs like `test_kernels_triton_cases.py`: interpreted on CPU in the subprocess started by
``test_kernels_triton.py``, compiled on a GPU. bf16 tolerances: the normed input and the new
residual within one bf16 ulp, one more per later cast (interpreter casts truncate; the sum of
squares is accumulated in another order), projections within a few ulps.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

CUDA = torch.cuda.is_available()
if not CUDA and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip(
        "CPU run: executed by test_kernels_triton.py in a subprocess", allow_module_level=True
    )

import tokenspeed.kernels.triton as tk  # noqa: E402
from tokenspeed.kernels import reference as ref  # noqa: E402
from tokenspeed.kernels.triton import gemv  # noqa: E402

DEVICE = "cuda" if CUDA else "cpu"
K, N, EPS = 200, 77, 1e-6
DTYPES = [torch.float32, torch.bfloat16]
CONFIGS = [None, (16, 64, 4)]  # the default pick, and one where K and N leave partial blocks


def rand(g: torch.Generator, *shape: int, dtype: torch.dtype, scale: float = 1.0) -> torch.Tensor:
    return (torch.randn(*shape, generator=g) * scale).to(dtype).to(DEVICE)


def close(got: torch.Tensor, want: torch.Tensor, rtol: float) -> None:
    torch.testing.assert_close(got.float().cpu(), want.float().cpu(), atol=rtol, rtol=rtol)


def tol(dtype: torch.dtype, ulps: float) -> float:
    """``ulps`` bf16 ulps (at most 2^-7 relative each); fp32: summation order only."""
    return ulps * 2**-7 if dtype == torch.bfloat16 else 2e-5


@pytest.fixture(autouse=True)
def fused(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts kernel launches, so a test can prove the fused path ran."""
    calls: list[int] = []
    real = gemv.gemv

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(gemv, "gemv", counted)
    monkeypatch.setattr(gemv, "FUSE_MAX_TOKENS", gemv.MAX_M)  # the ops at every kernel size
    return calls


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [1, 3, 16])
@pytest.mark.parametrize("add", [True, False])
@pytest.mark.parametrize("config", CONFIGS)
def test_norm_linear(fused, dtype, m: int, add: bool, config) -> None:
    g = torch.Generator().manual_seed(m)
    x, res = rand(g, m, K, dtype=dtype), rand(g, m, K, dtype=dtype, scale=4.0)
    nw, w = rand(g, K, dtype=dtype, scale=0.2), rand(g, N, K, dtype=dtype, scale=0.1)
    res_before = res.clone()
    residual = res if add else None
    gemv.CONFIGS["t"] = config if config else gemv.pick_config(m, N, K)
    try:
        out, new_res, h = tk.gemv.norm_linear(x, residual, nw, EPS, w, True, "t")
    finally:
        del gemv.CONFIGS["t"]
    want, want_res, want_h = ref.norm_linear(x, residual, nw, EPS, w, True)
    assert fused and h is not None and want_h is not None
    assert torch.equal(res, res_before)  # never in place: other programs read it
    close(new_res, want_res, tol(dtype, 1))
    close(h, want_h, tol(dtype, 2))  # a residual 1 ulp off, then h's own cast
    close(out, want, tol(dtype, 4))
    assert out.shape == (m, N) and out.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [1, 3, 16])
@pytest.mark.parametrize("bk", [32, 64])
def test_gated_norm_linear_on_column_slices(fused, dtype, m: int, bk: int) -> None:
    heads, dv, n = 3, 32, 45  # two heads per K block when bk = 64; a partial last block
    g = torch.Generator().manual_seed(10 + m)
    proj = rand(g, m, 5 * heads * dv, dtype=dtype)  # z is a column slice, as in GDN's in_proj
    z = proj[:, 2 * heads * dv : 3 * heads * dv].view(m, heads, dv)
    o = rand(g, m, heads, dv, dtype=dtype)
    nw, w = rand(g, dv, dtype=dtype), rand(g, n, heads * dv, dtype=dtype, scale=0.1)
    gemv.CONFIGS["t"] = (16, bk, 4)
    try:
        got = tk.gemv.gated_norm_linear(o, z, nw, EPS, w, "t")
    finally:
        del gemv.CONFIGS["t"]
    assert fused
    close(got, ref.gated_norm_linear(o, z, nw, EPS, w), tol(dtype, 4))
    # The prologue alone (identity weight): three casts (norm, weight product, gate product).
    eye = torch.eye(heads * dv, dtype=dtype, device=DEVICE)
    got_h = gemv.gemv(o.reshape(m, -1), eye, norm_weight=nw, gate=z.reshape(m, -1), eps=EPS,
                      head_dim=dv, config=(16, bk, 4))[0]  # fmt: skip
    close(got_h, ref.gated_rms_norm(o, z, nw, EPS).reshape(m, -1), tol(dtype, 3))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [1, 3, 16])
def test_linear_small_on_strided_rows(fused, dtype, m: int) -> None:
    g = torch.Generator().manual_seed(20 + m)
    x = rand(g, m, K + 56, dtype=dtype)[:, 8 : 8 + K]
    w = rand(g, N, K, dtype=dtype, scale=0.1)
    close(tk.gemv.linear_small(x, w, "t"), F.linear(x, w), tol(dtype, 4))
    assert fused


@pytest.mark.parametrize("switch", ["all", "site", "tokens"])
def test_unfused_fallback(fused, monkeypatch: pytest.MonkeyPatch, switch: str) -> None:
    """Switched off, or above MAX_M tokens, the ops run the norm kernel then F.linear."""
    m = gemv.MAX_M + 1 if switch == "tokens" else 2
    if switch == "all":
        monkeypatch.setattr(gemv, "FUSE_DECODE", False)
    if switch == "site":
        monkeypatch.setitem(gemv.FUSE, "router", False)
    g = torch.Generator().manual_seed(30)
    x, res = rand(g, m, K, dtype=torch.float32), rand(g, m, K, dtype=torch.float32)
    nw, w = rand(g, K, dtype=torch.float32), rand(g, N, K, dtype=torch.float32)
    out, new_res, h = tk.gemv.norm_linear(x, res, nw, EPS, w, False, "router")
    want, want_res, _ = ref.norm_linear(x, res, nw, EPS, w, False)
    assert not fused and h is None
    close(out, want, 2e-5)
    assert torch.equal(new_res, want_res)
    close(tk.gemv.linear_small(x, w, "router"), F.linear(x, w), 2e-5)
    assert not fused
