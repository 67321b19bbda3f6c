"""TokenSpeed: an LLM inference engine for agentic workloads on hybrid models."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from tokenspeed.llm import LLM
    from tokenspeed.sampling_params import SamplingParams

__all__ = ["LLM", "SamplingParams", "__version__", "core_version"]


def core_version() -> str:
    """Version of the compiled Rust core (`tokenspeed._core`)."""
    from tokenspeed import _core

    return _core.core_version()


def __getattr__(name: str) -> Any:
    # Lazy: `import tokenspeed` stays cheap (no torch import) for the CLI and version checks.
    if name == "LLM":
        from tokenspeed.llm import LLM

        return LLM
    if name == "SamplingParams":
        from tokenspeed.sampling_params import SamplingParams

        return SamplingParams
    raise AttributeError(f"module 'tokenspeed' has no attribute {name!r}")
