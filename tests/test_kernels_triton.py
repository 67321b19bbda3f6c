"""Runs the Triton kernel cases (`test_kernels_triton_cases.py`,
`test_kernels_triton_moe_rope_cases.py`) under Triton's interpreter.

``TRITON_INTERPRET=1`` has to be set before triton is first imported, and other test modules
of this pytest process may already have imported it (transformers does), so without CUDA the
cases run in a fresh interpreter process with the variable set; nothing leaks into this one.
On a CUDA machine the cases module runs the compiled kernels itself and this test skips.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

CASES = [
    Path(__file__).with_name(name)
    for name in ("test_kernels_triton_cases.py", "test_kernels_triton_moe_rope_cases.py")
]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the cases run compiled on the GPU")
def test_triton_kernels_under_the_interpreter() -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *map(str, CASES), "-q", "-p", "no:cacheprovider"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-4000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-2000:]


@pytest.mark.skipif(torch.cuda.is_available(), reason="interpreter only (it reads launch keys)")
def test_prefill_lengths_compile_no_new_kernels() -> None:
    """`test_kernels_triton_recompile_cases.py` in its own interpreter process (a model
    forward per request shape is slow under the interpreter)."""
    case = Path(__file__).with_name("test_kernels_triton_recompile_cases.py")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(case), "-q", "-p", "no:cacheprovider"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-4000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-2000:]
