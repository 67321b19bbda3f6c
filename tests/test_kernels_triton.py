"""Runs the Triton kernel cases (`test_kernels_triton_cases.py`,
`test_kernels_triton_moe_rope_cases.py`) under Triton's interpreter.

``TRITON_INTERPRET=1`` has to be set before triton is first imported, and other test modules
of this pytest process may already have imported it (transformers does), so without CUDA the
cases run in a fresh interpreter process with the variable set; nothing leaks into this one.
On a CUDA machine the cases module runs the compiled kernels itself and these tests skip.
The interpreter processes start together (one module fixture) so that they share CI's cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent
RUNS = {
    "kernels": [
        "test_kernels_triton_cases.py",
        "test_kernels_triton_moe_rope_cases.py",
        "test_kernels_triton_moe_decode_cases.py",
        "test_kernels_triton_gemv_cases.py",
    ],
    # A model forward per request shape: slow under the interpreter, so a process of its own.
    "recompile": ["test_kernels_triton_recompile_cases.py"],
}
TIMEOUT_S = 900


class Interpreted:
    """A pytest process over ``files`` with ``TRITON_INTERPRET=1``, output to a file (a pipe
    nobody reads while it runs could fill up and block it)."""

    def __init__(self, files: list[str]) -> None:
        self.out = tempfile.TemporaryFile("w+")
        cmd = [sys.executable, "-m", "pytest", *(str(HERE / f) for f in files), "-q"]
        self.proc = subprocess.Popen(
            [*cmd, "-p", "no:cacheprovider"],
            env={**os.environ, "TRITON_INTERPRET": "1"},
            stdout=self.out,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def check(self) -> None:
        code = self.proc.wait(timeout=TIMEOUT_S)
        self.out.seek(0)
        text = self.out.read()
        assert code == 0, text[-12000:]
        assert " passed" in text and "skipped" not in text, text[-2000:]


@pytest.fixture(scope="module")
def interpreted() -> Iterator[dict[str, Interpreted]]:
    runs = {name: Interpreted(files) for name, files in RUNS.items()}
    yield runs
    for run in runs.values():
        if run.proc.poll() is None:
            run.proc.kill()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the cases run compiled on the GPU")
def test_triton_kernels_under_the_interpreter(interpreted: dict[str, Interpreted]) -> None:
    interpreted["kernels"].check()


@pytest.mark.skipif(torch.cuda.is_available(), reason="interpreter only (it reads launch keys)")
def test_prefill_lengths_compile_no_new_kernels(interpreted: dict[str, Interpreted]) -> None:
    """See `test_kernels_triton_recompile_cases.py`."""
    interpreted["recompile"].check()
