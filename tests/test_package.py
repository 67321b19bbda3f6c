"""The installed package: Rust core importable, kernels shipped inside it, CLI entry point."""

from __future__ import annotations

import subprocess
import sys

import tokenspeed


def test_rust_core_is_loaded_and_matches_package_version() -> None:
    from tokenspeed import _core

    assert _core.__file__ is not None and _core.__file__.endswith(".abi3.so")
    assert tokenspeed.core_version() == tokenspeed.__version__


def test_kernels_are_part_of_the_package() -> None:
    import tokenspeed.kernels as kernels

    assert kernels.__name__ == "tokenspeed.kernels"
    assert kernels.__file__ is not None and "tokenspeed" in kernels.__file__


def test_cli_version_and_serve_flags() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tokenspeed.cli", "version"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"tokenspeed {tokenspeed.__version__}")
    # `serve` itself is exercised end to end by tests/test_server_*.py; here its flags.
    serve = subprocess.run(
        [sys.executable, "-m", "tokenspeed.cli", "serve", "--help"], capture_output=True, text=True
    )
    assert serve.returncode == 0, serve.stderr
    for flag in (
        "--model", "--host", "--port", "--served-model-name", "--max-model-len",
        "--max-num-seqs", "--enable-prefix-caching", "--no-enable-prefix-caching", "--dtype",
        "--tool-call-parser", "--reasoning-parser", "--chat-template", "--api-key",
    ):  # fmt: skip
        assert flag in serve.stdout, flag
