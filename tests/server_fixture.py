"""`tokenspeed serve` on the demo model (CPU) in a subprocess, for the end-to-end tests.

The server's stdout and stderr go to a file, not a pipe: a pipe nobody reads fills up after
~64 KiB of log lines (one per response) and then blocks the server. The file also lets tests
check that nothing was logged as a panic.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

API_KEY = "test-key"
MAX_MODEL_LEN = 512
BODY_LIMIT = 64 * 1024
# The occupancy gauges that must return to 0 once the server is idle.
BUSY_GAUGES = (
    "tokenspeed_num_requests_running",
    "tokenspeed_num_requests_waiting",
    "tokenspeed_kv_pages_used",
    "tokenspeed_state_slots_used",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running server; ``extra`` flags go after the defaults (later flags win)."""

    def __init__(
        self,
        extra: list[str] | None = None,
        *,
        api_key: str | None = API_KEY,
        max_model_len: int = MAX_MODEL_LEN,
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
    ) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.api_key = api_key
        # `command` replaces `tokenspeed serve` (e.g. the standalone `tokenspeed-server` binary).
        cmd = command or [sys.executable, "-m", "tokenspeed.cli", "serve"]
        cmd = [*cmd, "--port", str(self.port)]
        cmd += ["--max-model-len", str(max_model_len)]
        cmd += ["--max-num-seqs", "8", "--page-size", "16"]
        cmd += ["--max-request-bytes", str(BODY_LIMIT)]
        if api_key is not None:
            cmd += ["--api-key", api_key]
        cmd += extra or []
        self.log_path = Path(tempfile.mkstemp(prefix="tokenspeed-serve-", suffix=".log")[1])
        self._log = self.log_path.open("w")
        full_env = {**os.environ, **env} if env else None
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, text=True, env=full_env
        )
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                if self.request("GET", "/health", key=None)[0] == 200:
                    return
            except OSError:
                time.sleep(0.5)
        self.proc.kill()
        raise RuntimeError(f"server did not become healthy in time:\n{self.log()}")

    def log(self) -> str:
        """Everything the server printed so far."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def headers(self, key: str | None = API_KEY) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def request(
        self,
        method: str,
        path: str,
        body: bytes | dict | list | None = None,
        key: str | None = API_KEY,
        headers: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> tuple[int, Any, dict[str, str]]:
        """(status, JSON body or text, headers); HTTP errors are returned, not raised."""
        data = json.dumps(body).encode() if isinstance(body, dict | list) else body
        hdrs = {**self.headers(key), **(headers or {})}
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw, status, got = resp.read(), resp.status, dict(resp.headers)
        except urllib.error.HTTPError as e:
            raw, status, got = e.read(), e.code, dict(e.headers)
        text = raw.decode(errors="replace")
        try:
            return status, json.loads(text), got
        except json.JSONDecodeError:
            return status, text, got

    def metrics(self) -> dict[str, float]:
        """Unlabelled samples of `/metrics` by name (counters with their `_total` suffix)."""
        status, text, _ = self.request("GET", "/metrics")
        assert status == 200, text
        values = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if not sample.labels:
                    values[sample.name] = sample.value
        return values

    def wait_idle(self, timeout: float = 20) -> dict[str, float]:
        """Polls `/metrics` until nothing is running, waiting or held; returns the last scrape
        (which the caller asserts on: a timeout returns the busy values)."""
        deadline = time.monotonic() + timeout
        while True:
            m = self.metrics()
            if sum(m[g] for g in BUSY_GAUGES) == 0 or time.monotonic() > deadline:
                return m
            time.sleep(0.2)

    def panics(self) -> list[str]:
        """Log lines that report a panic (none may appear, whatever the input)."""
        return [line for line in self.log().splitlines() if "panicked" in line]

    def stop(self) -> int:
        """SIGTERM (which drains) and the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        finally:
            self._log.close()
        return code
