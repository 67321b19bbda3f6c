"""End to end: SIGTERM while `tokenspeed serve` (demo model, CPU) streams.

During the drain new requests get an OpenAI-shaped 503 (the listener still answers), streams
that can finish within ``--shutdown-timeout`` finish normally, a stream that cannot ends with
an error event when the timeout expires, and the process exits 0 soon after.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from typing import Any

import openai
from server_fixture import API_KEY, Server
from tokenspeed.server import add_serve_arguments

DRAIN_S = 5.0
MESSAGES = [{"role": "user", "content": "Tell a very long story."}]


def _stream(client: openai.OpenAI, max_tokens: int, out: dict[str, Any]) -> None:
    """Runs one stream; records its chunks and how it ended."""
    out["chunks"] = 0
    try:
        stream = client.chat.completions.create(
            model="tokenspeed-demo-qwen3.5-moe",
            messages=MESSAGES,  # type: ignore[arg-type]
            max_tokens=max_tokens,
            temperature=1.0,  # varied text: greedy demo output is whitespace, held back
            seed=7,
            stream=True,
            extra_body={"ignore_eos": True, "chat_template_kwargs": {"enable_thinking": False}},
        )
        for chunk in stream:
            out["chunks"] += 1
            if chunk.choices and chunk.choices[0].finish_reason:
                out["finish"] = chunk.choices[0].finish_reason
        out["end"] = "done"
    except openai.APIError as e:
        out["end"] = f"error: {e}"
    out["at"] = time.monotonic()


def test_default_bind_is_local_only() -> None:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    args = parser.parse_args([])
    assert args.host == "127.0.0.1"
    assert args.shutdown_timeout == 30.0


def test_sigterm_drains_then_exits_zero() -> None:
    server = Server(["--shutdown-timeout", str(DRAIN_S), "--max-model-len", "8192"])
    client = openai.OpenAI(api_key=API_KEY, base_url=server.base + "/v1", max_retries=0)
    # Two streams short enough to finish within the drain, one that cannot.
    results: list[dict[str, Any]] = [{}, {}, {}]
    lengths = [40, 40, 8000]
    threads = [
        threading.Thread(target=_stream, args=(client, n, r), daemon=True)
        for n, r in zip(lengths, results, strict=True)
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while not all(r.get("chunks", 0) >= 2 for r in results):
        assert time.monotonic() < deadline, results
        time.sleep(0.02)

    server.proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    time.sleep(0.3)  # let the signal reach the server
    refusals = []
    while time.monotonic() - signalled < DRAIN_S - 0.5:
        try:
            status, body, _ = server.request("GET", "/v1/models", timeout=5)
            refusals.append((status, body["error"]["type"]))
        except OSError:  # connection refused: also a refusal, never a hang
            refusals.append((0, "refused"))
        time.sleep(0.2)
    assert refusals, "no request tried during the drain"
    assert all(r in ((503, "server_error"), (0, "refused")) for r in refusals), refusals
    assert (503, "server_error") in refusals  # the listener answers while draining

    code = server.proc.wait(timeout=DRAIN_S + 10)
    exited = time.monotonic()
    for t in threads:
        t.join(timeout=5)
    log = server.log()
    server.stop()  # closes the log; the process is gone already
    assert code == 0, log
    assert exited - signalled < DRAIN_S + 5, log
    short, _, long = results
    assert short == {**short, "end": "done", "finish": "length"}, (results, log)
    assert results[1]["end"] == "done", (results, log)
    assert long["end"].startswith("error:") and "shutting down" in long["end"], (results, log)
    # The long stream ended when the drain timed out, not before.
    assert long["at"] - signalled >= DRAIN_S - 0.2, (long["at"] - signalled, log)
    assert "panicked" not in log
