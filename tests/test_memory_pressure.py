"""Memory pressure through the real server: a KV pool of 16 pages and 12 state slots cannot
hold the 16 concurrent requests sent to it, so the scheduler preempts (the `/metrics`
preemption counter moves) and evicts prefix-cache entries. Every request still completes,
and each greedy output equals, token for token, the output of a server whose pools are
large enough that nothing is preempted. Afterwards the pressured engine is idle and its
integrity check passes.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from server_fixture import Server

MAX_MODEL_LEN = 128
OUTPUT = 40
SHARED = "Shared preamble about hybrid attention models. "
PROMPTS = [
    (SHARED * (i % 3) + f"Request {i}: " + "tell me more " * (i % 5 + 1)).strip() for i in range(16)
]
SERVER_FLAGS = ["--max-model-len", str(MAX_MODEL_LEN), "--max-num-seqs", "8"]


def _start(extra: list[str]) -> Server:
    return Server([*SERVER_FLAGS, *extra], env={"TOKENSPEED_DEBUG_ROUTES": "1"})


@pytest.fixture(scope="module")
def pressured() -> Iterator[Server]:
    srv = _start(["--kv-cache-pages", "16", "--state-slots", "12"])
    yield srv
    assert srv.stop() == 0, srv.log()


def _greedy(server: Server, prompt: str) -> list[str]:
    body = {"prompt": prompt, "max_tokens": OUTPUT, "temperature": 0, "ignore_eos": True,
            "logprobs": 0}  # fmt: skip
    status, out, _ = server.request("POST", "/v1/completions", body, timeout=300)
    assert status == 200, out
    choice: dict[str, Any] = out["choices"][0]
    assert choice["finish_reason"] == "length" and out["usage"]["completion_tokens"] == OUTPUT
    return choice["logprobs"]["tokens"]  # one entry per generated token, specials included


def _all(server: Server) -> list[list[str]]:
    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        return list(pool.map(lambda p: _greedy(server, p), PROMPTS))


def test_preempted_requests_complete_with_the_unpressured_greedy_outputs(
    pressured: Server,
) -> None:
    before = pressured.metrics()
    assert before["tokenspeed_kv_pages_total"] == 16
    tight = _all(pressured)
    m = pressured.wait_idle(timeout=60)
    preemptions = m["tokenspeed_preemptions_total"] - before["tokenspeed_preemptions_total"]
    print(f"pressured: {preemptions:.0f} preemptions")
    assert preemptions > 0, "the pool was not small enough to preempt"
    assert m["tokenspeed_kv_pages_used"] == 0 and m["tokenspeed_state_slots_used"] == 0
    assert m["tokenspeed_num_requests_running"] == m["tokenspeed_num_requests_waiting"] == 0
    status, body, _ = pressured.request("GET", "/debug/integrity")
    assert (status, body) == (200, {"status": "ok"}), body
    assert pressured.panics() == []

    roomy = _start([])
    try:
        reference = _all(roomy)
        assert roomy.metrics()["tokenspeed_preemptions_total"] == 0
    finally:
        assert roomy.stop() == 0, roomy.log()
    mismatched = [i for i, (a, b) in enumerate(zip(tight, reference, strict=True)) if a != b]
    assert not mismatched, f"greedy outputs differ under pressure for prompts {mismatched}"
