"""The standalone `tokenspeed-server` binary (Rust `main` embedding CPython): the same flags as
`tokenspeed serve`, the demo model served end to end over real HTTP with the `openai` client,
and a SIGTERM drain that exits 0.

The binary is built with cargo (already built by `cargo test --workspace` in CI, so this is
quick there; PyO3 picks the `python3` on PATH, as for `cargo test`, so nothing is rebuilt). It
links that interpreter's `libpython` and sees this test's packages through `PYTHONPATH`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import openai
import pytest
from server_fixture import API_KEY, Server

ROOT = Path(__file__).resolve().parents[1]


def _build_binary() -> Path:
    cmd = ["cargo", "build", "-p", "tokenspeed-launcher", "--message-format=json"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    for line in done.stdout.splitlines():
        message = json.loads(line)
        if message.get("reason") == "compiler-artifact" and message.get("executable"):
            if message["target"]["name"] == "tokenspeed-server":
                return Path(message["executable"])
    raise AssertionError("cargo built no tokenspeed-server executable")


def _child_env() -> dict[str, str]:
    # Our sys.path (editable install, site-packages of this interpreter or its venv).
    path = os.pathsep.join(p for p in sys.path if p)
    return {"PYTHONPATH": path}


@pytest.fixture(scope="module")
def binary() -> Path:
    return _build_binary()


def _help(cmd: list[str], env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [*cmd, "--help"], capture_output=True, text=True, env=env, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _flags(help_text: str) -> set[str]:
    return {w.strip("[],") for w in help_text.split() if w.startswith(("--", "[--"))}


def test_binary_has_the_flags_of_tokenspeed_serve(binary: Path) -> None:
    env = {**os.environ, **_child_env()}
    ours = _flags(_help([str(binary)], env))
    script = _flags(_help([sys.executable, "-m", "tokenspeed.cli", "serve"]))
    assert ours == script
    assert {"--model", "--served-model-name", "--max-model-len", "--api-key"} <= ours
    bad = subprocess.run(
        [str(binary), "--no-such-flag"], capture_output=True, text=True, env=env, timeout=120
    )
    assert bad.returncode == 2 and "unrecognized arguments" in bad.stderr


def test_binary_serves_the_demo_model(binary: Path) -> None:
    server = Server(command=[str(binary)], env=_child_env())
    try:
        assert "random weights" in server.log().lower()
        client = openai.OpenAI(api_key=API_KEY, base_url=server.base + "/v1", max_retries=0)
        model = client.models.list().data[0].id
        out = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "hello"}],
            max_tokens=6,
            temperature=0,
            extra_body={"chat_template_kwargs": {"enable_thinking": False}},
        )
        assert out.choices[0].finish_reason == "length"
        assert out.usage.completion_tokens == 6
        stream = client.completions.create(
            model=model, prompt="def add(a, b):", max_tokens=5, temperature=0, stream=True
        )
        streamed = "".join(c.choices[0].text for c in stream if c.choices)
        whole = client.completions.create(
            model=model, prompt="def add(a, b):", max_tokens=5, temperature=0
        )
        assert streamed == whole.choices[0].text
    finally:
        code = server.stop()
    log = server.log_path.read_text(errors="replace")
    assert code == 0, log
    assert "panicked" not in log
