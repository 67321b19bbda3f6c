"""End to end: executor faults injected into a running `tokenspeed serve` (demo model, CPU).

The test-only hook (``tokenspeed.executor.faults``, armed by ``TOKENSPEED_FAULT_FILE``) makes
one step raise, or every step raise a fatal error. A one-step fault must fail the affected
request with an OpenAI-shaped 500 (an error event for a stream) and leave the server healthy:
the next requests give the same greedy text as before the fault and no page or slot stays
held. A fatal fault must end in-flight requests with an error, not hang them, and turn
`/health` to 503.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from server_fixture import API_KEY, BUSY_GAUGES, Server

NO_THINK: dict[str, Any] = {"chat_template_kwargs": {"enable_thinking": False}}
MESSAGES = [{"role": "user", "content": "Count the ways hybrid attention helps."}]


@pytest.fixture(scope="module")
def fault_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("faults") / "fault"


@pytest.fixture(scope="module")
def server(fault_file: Path) -> Iterator[Server]:
    srv = Server(env={"TOKENSPEED_FAULT_FILE": str(fault_file)})
    yield srv
    assert srv.panics() == []
    assert srv.stop() == 0, srv.log()


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(api_key=API_KEY, base_url=server.base + "/v1", max_retries=0)


def _greedy(client: openai.OpenAI, max_tokens: int = 8) -> str:
    reply = client.chat.completions.create(
        model="tokenspeed-demo-qwen3.5-moe",
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=max_tokens,
        temperature=0,
        extra_body=NO_THINK,
    )
    return reply.choices[0].message.content or ""


def _stream(client: openai.OpenAI, max_tokens: int) -> Any:
    return client.chat.completions.create(
        model="tokenspeed-demo-qwen3.5-moe",
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=max_tokens,
        temperature=0,
        stream=True,
        extra_body={**NO_THINK, "ignore_eos": True},
    )


def test_one_step_fault_fails_the_request_and_the_server_recovers(
    server: Server, client: openai.OpenAI, fault_file: Path
) -> None:
    before = _greedy(client)
    assert before

    fault_file.write_text("step")
    with pytest.raises(openai.InternalServerError) as failed:
        _greedy(client)
    error = failed.value.body
    assert isinstance(error, dict) and error["type"] == "server_error", error
    assert "injected fault" in error["message"], error
    assert not fault_file.exists()  # the fault fired exactly once

    # A stream that is running when a step fails ends with an error event.
    stream = _stream(client, max_tokens=400)
    first = next(iter(stream))
    assert first.choices[0].delta is not None
    fault_file.write_text("step")
    with pytest.raises(openai.APIError, match="injected fault"):
        for _ in stream:
            pass

    # Recovered: same greedy text as before the faults, health ok, nothing held.
    assert _greedy(client) == before
    assert server.request("GET", "/health", key=None)[0] == 200
    idle = server.wait_idle()
    assert {g: idle[g] for g in BUSY_GAUGES} == dict.fromkeys(BUSY_GAUGES, 0.0)


def test_fatal_fault_ends_requests_and_marks_the_server_unhealthy(
    server: Server, client: openai.OpenAI, fault_file: Path
) -> None:
    stream = _stream(client, max_tokens=400)
    next(iter(stream))
    fault_file.write_text("fatal")
    started = time.monotonic()
    with pytest.raises(openai.APIError, match="fatal"):
        for _ in stream:
            pass
    assert time.monotonic() - started < 10  # ended, not hung

    status, body, _ = server.request("GET", "/health", key=None)
    assert status == 503, body
    assert "injected fatal fault" in body["error"]["message"]
    with pytest.raises(openai.APIStatusError) as refused:
        _greedy(client)
    assert refused.value.status_code == 503
