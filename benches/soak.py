"""Soak test: mixed OpenAI traffic against a TokenSpeed server for a given duration.

Starts `tokenspeed serve` on the demo model (or drives `--url`), runs `--concurrency` client
threads that each loop over a weighted mix (chat, streamed chat, tool calls, completions,
streamed completions, multi-turn chats that hit the prefix cache, and streams the client
drops on purpose), and samples the server's resident memory (VmRSS) every second.

Writes `soak-<tag>.json` (counts, errors, p50/p90/p99 TTFT and end-to-end latency per kind,
RSS over time, the final gauges) and `soak-<tag>.png` under `--out-dir`. Exits 1 on any
error (every non-200 answer or broken stream that was not a deliberate drop), on RSS growth
after warm-up beyond `--max-rss-growth-mb`, or when the engine is not idle at the end.

    python benches/soak.py --duration 600 --tag 10min
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import soak_traffic as traffic

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Record:
    kind: str
    start: float  # seconds since the soak began
    e2e: float
    ttft: float | None
    ok: bool
    error: str | None = None


class LocalServer:
    """`tokenspeed serve` on the demo model in a subprocess (its log in a temp file)."""

    def __init__(self, api_key: str, extra: list[str]) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log_path = Path(tempfile.mkstemp(prefix="tokenspeed-soak-", suffix=".log")[1])
        cmd = [sys.executable, "-m", "tokenspeed.cli", "serve", "--port", str(self.port),
               "--api-key", api_key, "--max-model-len", "2048", "--max-num-seqs", "8",
               "--page-size", "16", *extra]  # fmt: skip
        self._log = self.log_path.open("w")
        # The debug route lets the soak run the engine's integrity check at the end.
        env = {**os.environ, "TOKENSPEED_DEBUG_ROUTES": "1"}
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-2000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.5)
        self.proc.kill()
        raise RuntimeError("server did not become healthy")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        finally:
            self._log.close()


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p90": None, "p99": None, "count": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "count": len(ordered)}


def run_soak(args: argparse.Namespace, host: str, port: int, pid: int | None) -> dict[str, Any]:
    client = traffic.Client(host, port, args.api_key)
    model = client.model()
    records: list[Record] = []
    rss: list[tuple[float, float]] = []
    lock = threading.Lock()
    t0 = time.monotonic()
    stop_at = t0 + args.duration

    def worker(index: int) -> None:
        rng = random.Random(args.seed * 1000 + index)
        while time.monotonic() < stop_at:
            kind = rng.choices(traffic.KINDS, weights=traffic.WEIGHTS)[0]
            start = time.monotonic()
            try:
                ttft = traffic.run(kind, client, model, rng)
                record = Record(kind, start - t0, time.monotonic() - start, ttft, True)
            except Exception as e:  # every failure is recorded, none stops the soak
                record = Record(kind, start - t0, time.monotonic() - start, None, False, repr(e))
            with lock:
                records.append(record)

    def sampler() -> None:
        while time.monotonic() < stop_at + 1:
            if pid is not None and (value := rss_mb(pid)) is not None:
                rss.append((time.monotonic() - t0, value))
            time.sleep(1.0)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.concurrency)]
    threads.append(threading.Thread(target=sampler))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    idle = client.wait_idle(timeout=60)
    integrity = client.integrity()
    return summarize(args, records, rss, idle, integrity, time.monotonic() - t0)


def summarize(
    args: argparse.Namespace,
    records: list[Record],
    rss: list[tuple[float, float]],
    idle: dict[str, float],
    integrity: str,
    wall: float,
) -> dict[str, Any]:
    errors = [r for r in records if not r.ok]
    kinds: dict[str, Any] = {}
    for kind in traffic.KINDS:
        mine = [r for r in records if r.kind == kind and r.ok]
        kinds[kind] = {
            "requests": sum(r.kind == kind for r in records),
            "errors": sum(r.kind == kind for r in errors),
            "e2e_s": percentiles([r.e2e for r in mine]),
            "ttft_s": percentiles([r.ttft for r in mine if r.ttft is not None]),
        }
    # Memory after warm-up: the high-water mark of the last third against that of the first
    # (RSS steps up and down by allocator-sized chunks; a leak lifts the peaks).
    after = [v for t, v in rss if t >= args.warmup]
    growth = None
    if len(after) >= 9:
        third = len(after) // 3
        growth = max(after[-third:]) - max(after[:third])
    busy = {k: v for k, v in idle.items() if v != 0}
    complete = [r for r in records if r.ok and r.kind != "dropped_stream"]
    return {
        "config": {
            k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "api_key"
        },
        "wall_s": wall,
        "requests": len(records),
        "errors": len(errors),
        "error_samples": [asdict(r) for r in errors[:20]],
        "e2e_s": percentiles([r.e2e for r in complete]),
        "ttft_s": percentiles([r.ttft for r in complete if r.ttft is not None]),
        "kinds": kinds,
        "rss_mb": {
            "start": rss[0][1] if rss else None,
            "after_warmup": after[0] if after else None,
            "end": rss[-1][1] if rss else None,
            "max": max(v for _, v in rss) if rss else None,
            "growth_after_warmup": growth,
            "samples": rss,
        },
        "idle_gauges_not_zero": busy,
        "integrity": integrity,
        "latency_series": [(r.start, r.e2e, r.kind) for r in complete],
    }


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    samples = summary["rss_mb"]["samples"]
    if samples:
        top.plot([t for t, _ in samples], [v for _, v in samples], color="tab:blue")
    top.axvline(summary["config"]["warmup"], color="grey", linestyle="--", label="warm-up end")
    top.set_ylabel("server RSS (MiB)")
    top.legend(loc="lower right")
    top.set_title(
        f"soak {summary['config']['tag']}: {summary['requests']} requests, "
        f"{summary['errors']} errors"
    )
    for kind in {k for _, _, k in summary["latency_series"]}:
        points = [(s, e) for s, e, k in summary["latency_series"] if k == kind]
        bottom.scatter([s for s, _ in points], [e for _, e in points], s=4, label=kind)
    bottom.set_xlabel("time (s)")
    bottom.set_ylabel("end-to-end latency (s)")
    bottom.legend(loc="upper right", fontsize="small", markerscale=3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def verdict(summary: dict[str, Any], max_growth: float) -> list[str]:
    """Why the soak failed (empty: it passed)."""
    problems = []
    if summary["errors"]:
        problems.append(f"{summary['errors']} errors, e.g. {summary['error_samples'][:3]}")
    growth = summary["rss_mb"]["growth_after_warmup"]
    if growth is not None and growth > max_growth:
        problems.append(f"RSS grew {growth:.1f} MiB after warm-up (limit {max_growth})")
    if summary["idle_gauges_not_zero"]:
        problems.append(f"engine not idle at the end: {summary['idle_gauges_not_zero']}")
    if summary["integrity"] not in ("ok", "unavailable"):
        problems.append(f"integrity check: {summary['integrity']}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600, help="seconds of traffic")
    parser.add_argument("--warmup", type=float, default=None, help="default: 20%% (<= 60 s)")
    parser.add_argument("--concurrency", type=int, default=6)
    parser.add_argument("--url", default=None, help="a running server (default: start one)")
    parser.add_argument("--pid", type=int, default=None, help="with --url: its pid, for RSS")
    parser.add_argument("--api-key", default="soak-key")
    parser.add_argument("--max-rss-growth-mb", type=float, default=64.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tag", default=time.strftime("%Y%m%d-%H%M%S"))
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.warmup is None:
        args.warmup = min(60.0, 0.2 * args.duration)
    server = None
    if args.url is None:
        server = LocalServer(args.api_key, ["--shutdown-timeout", "10"])
        host, port, pid = "127.0.0.1", server.port, server.proc.pid
    else:
        url = urlparse(args.url)
        host, port, pid = url.hostname or "127.0.0.1", url.port or 80, args.pid
    try:
        summary = run_soak(args, host, port, pid)
    finally:
        code = server.stop() if server is not None else 0
    summary["server_exit_code"] = code
    if server is not None:
        log = server.log_path.read_text(errors="replace")
        summary["server_panics"] = [line for line in log.splitlines() if "panicked" in line]
    problems = verdict(summary, args.max_rss_growth_mb)
    if summary.get("server_panics"):
        problems.append(f"panics in the server log: {summary['server_panics'][:3]}")
    if code != 0:
        problems.append(f"server exit code {code}")
    summary["problems"] = problems
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"soak-{args.tag}.json").write_text(json.dumps(summary, indent=1))
    plot(summary, args.out_dir / f"soak-{args.tag}.png")
    rss = summary["rss_mb"]
    print(
        f"soak {args.tag}: {summary['requests']} requests, {summary['errors']} errors, "
        f"e2e p50/p90/p99 {fmt(summary['e2e_s'])} s, TTFT {fmt(summary['ttft_s'])} s, "
        f"RSS start {num(rss['start'])} / after warm-up {num(rss['after_warmup'])} / "
        f"end {num(rss['end'])} MiB (growth {num(rss['growth_after_warmup'])})"
    )
    for problem in problems:
        print(f"FAIL: {problem}")
    return 1 if problems else 0


def fmt(p: dict[str, Any]) -> str:
    return "/".join(num(p[k], 3) for k in ("p50", "p90", "p99"))


def num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


if __name__ == "__main__":
    sys.exit(main())
