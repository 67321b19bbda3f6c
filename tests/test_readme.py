"""The README's set-up commands work as printed: `tokenspeed serve` (demo model, default flags)
answers the README's `curl` example, and `.ci/run` runs the README's test command."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from server_fixture import free_port

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README, flags=re.S)


def block_with(needle: str) -> str:
    found = [b for b in bash_blocks() if needle in b]
    assert len(found) == 1, f"expected one README bash block with {needle!r}, got {found}"
    return found[0]


def test_readme_serve_command_answers_the_curl_example() -> None:
    serve = block_with("tokenspeed serve").strip()
    assert serve.endswith("tokenspeed serve"), serve  # no hidden flags: defaults serve the demo
    curl = block_with("curl ").replace("\\\n", " ").strip()
    port = free_port()
    assert ":8000/" in curl, curl
    curl = curl.replace(":8000/", f":{port}/")  # the only change: a free port for the test
    exe = shutil.which("tokenspeed")
    cmd = [exe] if exe else [sys.executable, "-m", "tokenspeed.cli"]
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(
            [*cmd, "serve", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, text=True
        )
        try:
            _wait_healthy(proc, port, log)
            out = subprocess.run(
                ["bash", "-c", curl], capture_output=True, text=True, timeout=120, check=True
            ).stdout
            body = json.loads(out)
            assert body["object"] == "chat.completion", body
            choice = body["choices"][0]
            assert choice["message"]["role"] == "assistant"
            assert choice["finish_reason"] in ("stop", "length")
            assert 0 < body["usage"]["completion_tokens"] <= _max_tokens(curl)
            log.seek(0)
            assert "random weights" in log.read().lower()  # start-up says it is a demo
        finally:
            proc.terminate()
            assert proc.wait(timeout=60) == 0


def test_ci_runs_the_readme_test_command() -> None:
    test_block = block_with("pytest")
    commands = [line.strip() for line in test_block.splitlines() if "pytest" in line]
    assert len(commands) == 1, commands
    ci_lines = [
        line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines() if "pytest" in line
    ]
    # .ci/run spells the interpreter "$PY" and installs quietly; otherwise the same command.
    normalised = [
        line.replace('"$PY" -m pip install -q', "pip install").replace('"$PY" -m', "python -m")
        for line in ci_lines
        if not line.startswith("#")
    ]
    assert commands[0] in normalised, f"README {commands[0]!r} not run by .ci/run: {ci_lines}"


def _max_tokens(curl: str) -> int:
    data = shlex.split(curl)[shlex.split(curl).index("-d") + 1]
    return int(json.loads(data)["max_tokens"])


def _wait_healthy(proc: subprocess.Popen, port: int, log) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"server exited early:\n{log.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("server did not become healthy in time")
