"""What every benchmark records with its figures (device, date, commit, versions) and how it
writes them: ``<stem>.json``, ``<stem>.md`` and a ``<stem>.png`` plot under benches/results/."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def environment(device: torch.device) -> dict[str, Any]:
    """Device, date, commit (``TS_COMMIT`` when git metadata did not travel), versions."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return {
        "device": name or "cpu",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": os.environ.get("TS_COMMIT") or git_commit(),
        "torch": torch.__version__,
    }


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def header(env: dict[str, Any]) -> str:
    return f"device {env['device']}, {env['date']}, commit {env['commit']}, torch {env['torch']}"


def write(
    out_dir: str | Path,
    stem: str,
    result: dict[str, Any],
    lines: list[str],
    plot: Callable[[Any], None] | None = None,
) -> None:
    """``plot(fig)`` draws the figure (matplotlib, headless)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)
    if plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(7, 4))
        plot(fig)
        fig.tight_layout()
        fig.savefig(out / f"{stem}.png", dpi=110)
        plt.close(fig)


def timed_cuda(fn: Callable[[], Any], device: torch.device, repeats: int = 10) -> float:
    """Median seconds of ``fn`` (CUDA events on GPU, wall clock on CPU), after one warm-up."""
    import time

    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]
