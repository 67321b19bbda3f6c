"""Test-only fault injection into the executor's steps.

Off unless the environment variable ``TOKENSPEED_FAULT_FILE`` names a file when this module is
imported; the executor then calls :func:`check` once per launched step (one ``stat``). Writing
to that file injects a fault into the next step:

* ``step``: one step raises, the file is removed (the engine fails that step's requests and
  recovers);
* ``fatal``: every step raises a fatal error (the engine stops, ``/health`` answers 503).

The tests in ``tests/test_engine_faults.py`` drive a running server this way.
"""

from __future__ import annotations

import os

FAULT_FILE = os.environ.get("TOKENSPEED_FAULT_FILE") or None
ENABLED = FAULT_FILE is not None


class InjectedFault(RuntimeError):
    """The injected exception; ``fatal`` tells the engine the executor is unusable."""

    def __init__(self, message: str, *, fatal: bool) -> None:
        super().__init__(message)
        self.fatal = fatal


def check(step: int) -> None:
    """Raises the fault the fault file asks for, if any."""
    if FAULT_FILE is None:
        return
    try:
        with open(FAULT_FILE) as f:
            kind = f.read().strip()
    except FileNotFoundError:
        return
    if kind == "step":
        os.remove(FAULT_FILE)
        raise InjectedFault(f"injected fault in step {step}", fatal=False)
    if kind == "fatal":
        raise InjectedFault(f"injected fatal fault in step {step}", fatal=True)
    raise ValueError(f"{FAULT_FILE}: unknown fault {kind!r} (expected 'step' or 'fatal')")
