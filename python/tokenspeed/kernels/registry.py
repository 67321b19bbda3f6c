"""Backend registry: op name -> implementation, per backend.

A backend is a name ("reference", later "triton") with a table of ops. `ops.py` looks every
call up in the active backend and falls back to "reference", so a backend can land op by op.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

REFERENCE = "reference"

_tables: dict[str, dict[str, Callable[..., Any]]] = {REFERENCE: {}}
_active = REFERENCE


def register(backend: str, name: str, fn: Callable[..., Any]) -> None:
    """Make ``fn`` the implementation of op ``name`` in ``backend``."""
    _tables.setdefault(backend, {})[name] = fn


def set_backend(backend: str) -> None:
    """Select the backend every op dispatches to from now on."""
    global _active
    if backend not in _tables:
        raise ValueError(f"unknown kernel backend {backend!r}; available: {available_backends()}")
    _active = backend


def get_backend() -> str:
    return _active


def available_backends() -> list[str]:
    return sorted(_tables)


def lookup(name: str) -> Callable[..., Any]:
    """The active backend's implementation of ``name``, else the reference one."""
    fn = _tables[_active].get(name) or _tables[REFERENCE].get(name)
    if fn is None:
        raise KeyError(f"kernel op {name!r} has no implementation (backend {_active!r})")
    return fn
