"""TokenSpeed: an LLM inference engine for agentic workloads on hybrid models."""

from __future__ import annotations

__version__ = "0.1.0"


def core_version() -> str:
    """Version of the compiled Rust core (`tokenspeed._core`)."""
    from tokenspeed import _core

    return _core.core_version()
