"""The soak's traffic: one function per kind of request, each checking its answer and raising
on anything wrong (a non-200 status, a malformed body, a stream that ends without `[DONE]`).
Returns the time to the first generated token for streams (None otherwise)."""

from __future__ import annotations

import http.client
import json
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather of a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["city"],
            },
        },
    }
]
WORDS = "agent tool cache page slot state delta attention prefix stream token model".split()


class Client:
    """Plain HTTP/1.1 against the server (a connection per request, as many clients do)."""

    def __init__(self, host: str, port: int, api_key: str) -> None:
        self.host, self.port = host, port
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}

    def _conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=300)

    def get(self, path: str) -> tuple[int, str]:
        conn = self._conn()
        try:
            conn.request("GET", path, headers=self.headers)
            resp = conn.getresponse()
            return resp.status, resp.read().decode()
        finally:
            conn.close()

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        conn = self._conn()
        try:
            conn.request("POST", path, json.dumps(body), self.headers)
            resp = conn.getresponse()
            text = resp.read().decode()
        finally:
            conn.close()
        if resp.status != 200:
            raise RuntimeError(f"{path}: HTTP {resp.status}: {text[:300]}")
        return json.loads(text)

    def stream(
        self, path: str, body: dict[str, Any], drop_after: int | None = None
    ) -> tuple[list[dict[str, Any]], float | None]:
        """The stream's JSON events and the time to the first one carrying a token; with
        `drop_after`, the client hangs up after that many events."""
        conn = self._conn()
        start = time.monotonic()
        events: list[dict[str, Any]] = []
        ttft = None
        try:
            conn.request("POST", path, json.dumps({**body, "stream": True}), self.headers)
            resp = conn.getresponse()
            if resp.status != 200:
                raise RuntimeError(f"{path} stream: HTTP {resp.status}: {resp.read()[:300]!r}")
            done = False
            while not done:
                line = resp.fp.readline()
                if not line:
                    raise RuntimeError(f"{path} stream ended without [DONE]")
                if not line.startswith(b"data: "):
                    continue
                payload = line[6:].strip()
                if payload == b"[DONE]":
                    done = True
                    continue
                event = json.loads(payload)
                if "error" in event:
                    raise RuntimeError(f"{path} stream error event: {event}")
                events.append(event)
                if ttft is None and _has_token(event):
                    ttft = time.monotonic() - start
                if drop_after is not None and len(events) >= drop_after:
                    break
        finally:
            if conn.sock is not None:
                conn.sock.close()
            conn.close()
        return events, ttft

    def model(self) -> str:
        status, text = self.get("/v1/models")
        if status != 200:
            raise RuntimeError(f"/v1/models: HTTP {status}: {text}")
        return json.loads(text)["data"][0]["id"]

    def gauges(self) -> dict[str, float]:
        _, text = self.get("/metrics")
        names = ("tokenspeed_num_requests_running", "tokenspeed_num_requests_waiting",
                 "tokenspeed_kv_pages_used", "tokenspeed_state_slots_used")  # fmt: skip
        values = {}
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name in names:
                values[name] = float(value)
        return values

    def wait_idle(self, timeout: float) -> dict[str, float]:
        deadline = time.monotonic() + timeout
        while True:
            values = self.gauges()
            if not any(values.values()) or time.monotonic() > deadline:
                return values
            time.sleep(0.5)

    def integrity(self) -> str:
        """'ok', 'unavailable' (no debug route on this server), or the failure."""
        status, text = self.get("/debug/integrity")
        return {200: "ok", 404: "unavailable"}.get(status, f"HTTP {status}: {text[:300]}")


def _has_token(event: dict[str, Any]) -> bool:
    for choice in event.get("choices") or []:
        delta = choice.get("delta") or {}
        if choice.get("text") or delta.get("content") or delta.get("reasoning_content"):
            return True
        if delta.get("tool_calls"):
            return True
    return False


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _sampling(rng: random.Random) -> dict[str, Any]:
    return {"max_tokens": rng.randint(4, 24), "temperature": rng.choice([0, 0.7, 1.0]),
            "seed": rng.randint(0, 1 << 30)}  # fmt: skip


def _thinking(rng: random.Random) -> dict[str, Any]:
    return {"chat_template_kwargs": {"enable_thinking": rng.random() < 0.5}}


def _check_usage(out: dict[str, Any], max_tokens: int, choices: int = 1) -> None:
    usage = out["usage"]
    if not 0 < usage["completion_tokens"] <= max_tokens * choices:
        raise RuntimeError(f"completion_tokens {usage['completion_tokens']} > {max_tokens}")
    if usage["total_tokens"] != usage["prompt_tokens"] + usage["completion_tokens"]:
        raise RuntimeError(f"inconsistent usage {usage}")
    if len(out["choices"]) != choices:
        raise RuntimeError(f"{len(out['choices'])} choices, asked for {choices}")


def chat(client: Client, model: str, rng: random.Random) -> float | None:
    body = {"model": model, "messages": [{"role": "user", "content": _words(rng, 12)}],
            **_sampling(rng), **_thinking(rng)}  # fmt: skip
    out = client.post("/v1/chat/completions", body)
    _check_usage(out, body["max_tokens"])
    return None


def chat_stream(client: Client, model: str, rng: random.Random) -> float | None:
    body = {"model": model, "messages": [{"role": "user", "content": _words(rng, 20)}],
            "stream_options": {"include_usage": True}, **_sampling(rng), **_thinking(rng)}  # fmt: skip
    events, ttft = client.stream("/v1/chat/completions", body)
    if not events or events[-1].get("usage") is None:
        raise RuntimeError("chat stream without a final usage chunk")
    return ttft


def tool_call(client: Client, model: str, rng: random.Random) -> float | None:
    """Half forced calls (`tool_choice` naming the tool), half a history with a call and its
    result (`auto`)."""
    if rng.random() < 0.5:
        body = {"model": model, "tools": TOOLS, "max_tokens": 48, "temperature": 0,
                "messages": [{"role": "user", "content": "Weather in " + _words(rng, 2)}],
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}  # fmt: skip
        out = client.post("/v1/chat/completions", body)
        calls = out["choices"][0]["message"].get("tool_calls") or []
        if out["choices"][0]["finish_reason"] == "tool_calls" and (
            not calls or calls[0]["function"]["name"] != "get_weather"
        ):
            raise RuntimeError(f"forced call missing: {out['choices'][0]}")
        return None
    call_id = f"call_{rng.randint(0, 9999)}"
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": call_id, "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": call_id, "content": '{"temp_c": 21}'},
    ]  # fmt: skip
    body = {"model": model, "tools": TOOLS, "messages": messages, **_sampling(rng)}
    out = client.post("/v1/chat/completions", body)
    _check_usage(out, body["max_tokens"])
    return None


def completion(client: Client, model: str, rng: random.Random) -> float | None:
    n = rng.choice([1, 1, 2])
    body = {"model": model, "prompt": _words(rng, 16), "n": n, **_sampling(rng)}
    out = client.post("/v1/completions", body)
    _check_usage(out, body["max_tokens"], n)
    return None


def completion_stream(client: Client, model: str, rng: random.Random) -> float | None:
    body = {"model": model, "prompt": _words(rng, 24), **_sampling(rng)}
    events, ttft = client.stream("/v1/completions", body)
    finals = [c for e in events for c in e.get("choices", []) if c.get("finish_reason")]
    if len(finals) != 1:
        raise RuntimeError(f"completion stream ended with {len(finals)} finish reasons")
    return ttft


def multi_turn(client: Client, model: str, rng: random.Random) -> float | None:
    """Three turns on a session-specific system prompt (prefix-cache hits and evictions)."""
    system = f"Session {uuid.uuid4()}. " + "You are a careful assistant. " * rng.randint(5, 30)
    messages = [{"role": "system", "content": system}]
    for _ in range(3):
        messages.append({"role": "user", "content": _words(rng, 8)})
        body = {"model": model, "messages": messages, "max_tokens": 8, "temperature": 0,
                "chat_template_kwargs": {"enable_thinking": False}}  # fmt: skip
        out = client.post("/v1/chat/completions", body)
        _check_usage(out, 8)
        messages.append({"role": "assistant", "content": out["choices"][0]["message"]["content"]})
    return None


def dropped_stream(client: Client, model: str, rng: random.Random) -> float | None:
    """A stream the client abandons after a few events (the server must abort it)."""
    body = {"model": model, "prompt": _words(rng, 8), "max_tokens": 200, "ignore_eos": True,
            "temperature": 1.0}  # fmt: skip
    _, ttft = client.stream("/v1/completions", body, drop_after=rng.randint(1, 5))
    return ttft


KINDS_AND_WEIGHTS: list[tuple[Callable[[Client, str, random.Random], float | None], int]] = [
    (chat, 3), (chat_stream, 3), (tool_call, 2), (completion, 2), (completion_stream, 2),
    (multi_turn, 1), (dropped_stream, 1),
]  # fmt: skip
KINDS = [f.__name__ for f, _ in KINDS_AND_WEIGHTS]
WEIGHTS = [w for _, w in KINDS_AND_WEIGHTS]
_BY_NAME = {f.__name__: f for f, _ in KINDS_AND_WEIGHTS}


def run(kind: str, client: Client, model: str, rng: random.Random) -> float | None:
    return _BY_NAME[kind](client, model, rng)
