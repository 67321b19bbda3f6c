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


def test_cli_version_and_serve_placeholder() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tokenspeed.cli", "version"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"tokenspeed {tokenspeed.__version__}")
    serve = subprocess.run(
        [sys.executable, "-m", "tokenspeed.cli", "serve"], capture_output=True, text=True
    )
    assert serve.returncode == 2
    assert "not built yet" in serve.stderr
