"""The MoE decode (GEMV) path's down-projection variants against the reference.

Runs like `test_kernels_triton_moe_rope_cases.py` (whose inputs it shares): on CPU only inside
the ``TRITON_INTERPRET=1`` subprocess of `test_kernels_triton.py`, on a CUDA machine compiled
(where the programmatic-dependent-launch variant runs too). ``down="tiles"`` loads every
slot's weights in two tiles (a power of two of slots, then the rest): 3 slots split 2 + 1,
3 + the shared expert 4 + 0, so both branches run; hidden 40 and Im 24 leave masked rows and
columns.
"""

from __future__ import annotations

import os

import pytest
import torch

CUDA = torch.cuda.is_available()
if not CUDA and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip(
        "CPU run: executed by test_kernels_triton.py in a subprocess", allow_module_level=True
    )

import tokenspeed.kernels.triton as tk  # noqa: E402
from test_kernels_triton_cases import DTYPES, close, dev  # noqa: E402
from test_kernels_triton_moe_rope_cases import moe_inputs, rounded_like_kernels  # noqa: E402
from tokenspeed.kernels import reference as ref  # noqa: E402

PDL = [False, True] if CUDA and torch.cuda.get_device_capability()[0] >= 9 else [False]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens", [1, 5])
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("down_bn", [4, 16])
@pytest.mark.parametrize("pdl", PDL)
def test_moe_decode_down_tiles(
    dtype: torch.dtype, tokens: int, shared: bool, down_bn: int, pdl: bool, monkeypatch
) -> None:
    monkeypatch.setitem(tk.moe.DECODE_CONFIG, "down", "tiles")
    monkeypatch.setitem(tk.moe.DECODE_CONFIG, "pdl", pdl)
    monkeypatch.setitem(tk.moe.DECODE_CONFIG, "down_bn", down_bn)
    monkeypatch.setitem(tk.moe.DECODE_CONFIG, "up_bn", 16)
    monkeypatch.setitem(tk.moe.DECODE_CONFIG, "up_bk", 16)
    inputs = moe_inputs(tokens, dtype, 40 + tokens, shared=shared)
    got, want = tk.moe.moe_experts(*dev(*inputs)).cpu(), ref.moe_experts(*inputs)
    close(got, want if dtype == torch.float32 else rounded_like_kernels(*inputs), dtype)
    assert (got.float() - want.float()).abs().max() <= 0.05 * want.float().abs().max()
    # the same sums as the slot-by-slot kernel (fp32 order aside)
    monkeypatch.setitem(tk.moe.DECODE_CONFIG, "down", "loop")
    close(got, tk.moe.moe_experts(*dev(*inputs)).cpu(), dtype)
