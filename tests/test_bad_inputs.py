"""Bad-input battery against the real server (demo model, CPU): one table row per case with
the status and OpenAI error `type` it must get, and a word the message must contain (so the
error names the problem). Every error has the shape `{"error": {"message", "type", "param",
"code"}}`; after every case a valid request still succeeds; nothing is logged as a panic.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from server_fixture import API_KEY, BODY_LIMIT, MAX_MODEL_LEN, Server

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
INVALID = "invalid_request_error"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


def _user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


OK_CHAT: dict[str, Any] = {"messages": _user("hi"), "max_tokens": 2}
OK_TEXT: dict[str, Any] = {"prompt": "hi", "max_tokens": 2}


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    body: bytes | dict | list | None
    status: int
    type: str | None  # None: not an error (the request is accepted)
    mentions: str = ""  # a word the error message must contain
    key: str | None = API_KEY
    headers: dict[str, str] = field(default_factory=dict)


def _nested(depth: int) -> bytes:
    return b'{"messages": ' + b"[" * depth + b"]" * depth + b"}"


CASES = [
    # Malformed bodies.
    Case("malformed json", "POST", CHAT, b'{"messages": [', 400, INVALID, "JSON"),
    Case("not json at all", "POST", CHAT, b"hello there", 400, INVALID, "JSON"),
    Case("json array body", "POST", CHAT, b"[1, 2]", 400, INVALID, "invalid type"),
    Case("empty body", "POST", CHAT, b"", 400, INVALID, "JSON"),
    Case("deeply nested json", "POST", CHAT, _nested(10_000), 400, INVALID, "JSON"),
    Case("invalid utf-8 bytes", "POST", CHAT,
         b'{"messages": [{"role": "user", "content": "\xff\xfe\xc3"}], "max_tokens": 2}',
         400, INVALID, "JSON"),
    Case("raw control character in a string", "POST", CHAT,
         b'{"messages": [{"role": "user", "content": "a\x01b"}], "max_tokens": 2}',
         400, INVALID, "control character"),
    # Escaped control characters are valid JSON text: accepted, not an error.
    Case("escaped control characters are accepted", "POST", CHAT,
         {**OK_CHAT, "messages": _user("a\u0000b\u0007c\u001b[31m")}, 200, None),
    # Wrong types.
    Case("max_tokens a string", "POST", CHAT, {**OK_CHAT, "max_tokens": "many"}, 400, INVALID,
         "max_tokens"),
    Case("max_tokens a fraction", "POST", CHAT, {**OK_CHAT, "max_tokens": 2.5}, 400, INVALID,
         "max_tokens"),
    Case("n a fraction", "POST", COMPLETIONS, {**OK_TEXT, "n": 1.5}, 400, INVALID, "n"),
    # Integral floats are integers (as in vLLM / SGLang): some clients write every number so.
    Case("integral floats are accepted", "POST", CHAT,
         {**OK_CHAT, "max_tokens": 2.0, "n": 1.0, "seed": 7.0, "top_k": 5.0}, 200, None),
    Case("messages a string", "POST", CHAT, {**OK_CHAT, "messages": "hi"}, 400, INVALID,
         "messages"),
    Case("temperature a string", "POST", CHAT, {**OK_CHAT, "temperature": "hot"}, 400, INVALID,
         "temperature"),
    Case("content a number", "POST", CHAT, {**OK_CHAT, "messages": [{"role": "user",
         "content": 42}]}, 400, INVALID, "content"),
    Case("stream a string", "POST", COMPLETIONS, {**OK_TEXT, "stream": "yes"}, 400, INVALID,
         "stream"),
    Case("prompt an object", "POST", COMPLETIONS, {**OK_TEXT, "prompt": {"a": 1}}, 400,
         INVALID, "prompt"),
    Case("image part", "POST", CHAT, {**OK_CHAT, "messages": [{"role": "user", "content": [
         {"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}]}]}, 400, INVALID,
         "content"),
    # Missing fields.
    Case("messages missing", "POST", CHAT, {"max_tokens": 2}, 400, INVALID, "messages"),
    Case("prompt missing", "POST", COMPLETIONS, {"max_tokens": 2}, 400, INVALID, "prompt"),
    Case("role missing", "POST", CHAT, {**OK_CHAT, "messages": [{"content": "hi"}]}, 400,
         INVALID, "role"),
    # Empty or huge messages.
    Case("empty messages", "POST", CHAT, {**OK_CHAT, "messages": []}, 400, INVALID, "messages"),
    Case("empty prompt", "POST", COMPLETIONS, {**OK_TEXT, "prompt": ""}, 400, INVALID,
         "prompt"),
    Case("1,000 messages (longer than the context)", "POST", CHAT,
         {**OK_CHAT, "messages": _user("hi") * 1000}, 400, INVALID, "max_model_len"),
    Case("unknown role", "POST", CHAT, {**OK_CHAT, "messages": [{"role": "wizard",
         "content": "a"}]}, 400, INVALID, "role"),
    # Limits.
    Case("max_tokens 0", "POST", CHAT, {**OK_CHAT, "max_tokens": 0}, 400, INVALID,
         "max_tokens"),
    Case("max_tokens negative", "POST", COMPLETIONS, {**OK_TEXT, "max_tokens": -5}, 400,
         INVALID, "max_tokens"),
    Case("max_completion_tokens 0", "POST", CHAT, {**OK_CHAT, "max_completion_tokens": 0}, 400,
         INVALID, "max_tokens"),
    Case("max_tokens far above the context", "POST", CHAT, {**OK_CHAT, "max_tokens": 10**9},
         400, INVALID, "max_model_len"),
    Case("max_tokens = max_model_len (prompt + output too long)", "POST", COMPLETIONS,
         {**OK_TEXT, "max_tokens": MAX_MODEL_LEN}, 400, INVALID, "max_model_len"),
    Case("prompt longer than max_model_len", "POST", COMPLETIONS,
         {**OK_TEXT, "prompt": "hello " * (MAX_MODEL_LEN + 10)}, 400, INVALID, "max_model_len"),
    Case("token prompt longer than max_model_len", "POST", COMPLETIONS,
         {**OK_TEXT, "prompt": [1] * (MAX_MODEL_LEN + 1)}, 400, INVALID, "max_model_len"),
    Case("token id outside the vocabulary", "POST", COMPLETIONS,
         {**OK_TEXT, "prompt": [10**9]}, 400, INVALID, "vocabulary"),
    Case("token ids as integral floats", "POST", COMPLETIONS,
         {**OK_TEXT, "prompt": [[1.0, 2.0], [3]]}, 200, None),
    Case("token id a fraction", "POST", COMPLETIONS, {**OK_TEXT, "prompt": [1, 2.5]}, 400,
         INVALID, "prompt"),
    Case("n over the limit", "POST", CHAT, {**OK_CHAT, "n": 1000}, 400, INVALID, "n"),
    Case("n = 0", "POST", COMPLETIONS, {**OK_TEXT, "n": 0}, 400, INVALID, "n"),
    Case("temperature out of range", "POST", CHAT, {**OK_CHAT, "temperature": 7}, 400,
         INVALID, "temperature"),
    Case("top_p out of range", "POST", CHAT, {**OK_CHAT, "top_p": 1.5}, 400, INVALID, "top_p"),
    # Tools.
    Case("tools parameters not an object schema", "POST", CHAT, {**OK_CHAT, "tools": [
         {"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}]},
         400, INVALID, "parameters"),
    Case("tools parameters not a schema", "POST", CHAT, {**OK_CHAT, "tools": [
         {"type": "function", "function": {"name": "f", "parameters": "x"}}]}, 400, INVALID,
         "parameters"),
    Case("tool without a name", "POST", CHAT, {**OK_CHAT, "tools": [
         {"type": "function", "function": {"parameters": {"type": "object"}}}]}, 400, INVALID,
         "name"),
    Case("tools not a list", "POST", CHAT, {**OK_CHAT, "tools": {"a": 1}}, 400, INVALID,
         "tools"),
    Case("tool call with an unknown name in the history", "POST", CHAT, {**OK_CHAT,
         "tools": TOOLS, "messages": [*_user("weather?"), {"role": "assistant", "content": "",
         "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "launch_rocket",
         "arguments": "{}"}}]}, {"role": "tool", "tool_call_id": "c1", "content": "done"}]},
         400, INVALID, "launch_rocket"),
    Case("/tokenize checks the history's tool calls as chat does", "POST", "/tokenize", {
         "tools": TOOLS, "messages": [*_user("weather?"), {"role": "assistant", "content": "",
         "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "launch_rocket",
         "arguments": "{}"}}]}]}, 400, INVALID, "launch_rocket"),
    # Output-shaping fields TokenSpeed does not implement: refused, never silently ignored
    # (logit_bias is implemented: its rows check validation).
    Case("response_format json_object", "POST", CHAT,
         {**OK_CHAT, "response_format": {"type": "json_object"}}, 400, INVALID, "response_format"),
    Case("response_format json_schema", "POST", COMPLETIONS, {**OK_TEXT, "response_format": {
         "type": "json_schema", "json_schema": {"name": "x", "schema": {}}}}, 400, INVALID,
         "response_format"),
    Case("logit_bias accepted", "POST", CHAT, {**OK_CHAT, "logit_bias": {"42": -100, "7": 2.5}},
         200, None),
    Case("logit_bias key not a token id", "POST", CHAT, {**OK_CHAT, "logit_bias": {"x": 1}}, 400,
         INVALID, "logit_bias"),
    Case("logit_bias value out of range", "POST", COMPLETIONS,
         {**OK_TEXT, "logit_bias": {"42": 101}}, 400, INVALID, "logit_bias"),
    Case("logit_bias token outside the vocabulary", "POST", CHAT,
         {**OK_CHAT, "logit_bias": {str(10**9): 1}}, 400, INVALID, "vocabulary"),
    Case("logit_bias not an object", "POST", CHAT, {**OK_CHAT, "logit_bias": [1]}, 400, INVALID,
         "logit_bias"),
    Case("vLLM guided_json", "POST", COMPLETIONS, {**OK_TEXT, "guided_json": {"type": "object"}},
         400, INVALID, "guided_json"),
    Case("suffix", "POST", COMPLETIONS, {**OK_TEXT, "suffix": "end"}, 400, INVALID, "suffix"),
    Case("best_of above n", "POST", COMPLETIONS, {**OK_TEXT, "best_of": 3}, 400, INVALID,
         "best_of"),
    Case("neutral forms of the refused fields are fine", "POST", CHAT, {**OK_CHAT,
         "response_format": {"type": "text"}, "logit_bias": {}, "modalities": ["text"],
         "parallel_tool_calls": False, "guided_json": None}, 200, None),
    # Logprobs.
    Case("top_logprobs above 20", "POST", CHAT, {**OK_CHAT, "logprobs": True,
         "top_logprobs": 21}, 400, INVALID, "top_logprobs"),
    Case("top_logprobs negative", "POST", CHAT, {**OK_CHAT, "logprobs": True,
         "top_logprobs": -1}, 400, INVALID, "top_logprobs"),
    Case("top_logprobs without logprobs", "POST", CHAT, {**OK_CHAT, "top_logprobs": 2}, 400,
         INVALID, "logprobs"),
    Case("completion logprobs above 20", "POST", COMPLETIONS, {**OK_TEXT, "logprobs": 21}, 400,
         INVALID, "logprobs"),
    # Size, auth, routes, methods.
    Case("oversized body", "POST", CHAT, {**OK_CHAT, "messages": _user("x" * (BODY_LIMIT + 1))},
         413, INVALID, "limit"),
    Case("wrong api key", "POST", CHAT, OK_CHAT, 401, "authentication_error", "API key",
         key="wrong-key"),
    Case("missing api key", "POST", CHAT, OK_CHAT, 401, "authentication_error", "API key",
         key=None),
    Case("api key with another scheme", "POST", CHAT, OK_CHAT, 401, "authentication_error",
         "API key", key=None, headers={"Authorization": f"Basic {API_KEY}"}),
    Case("api key as a prefix of the real one", "GET", "/v1/models", None, 401,
         "authentication_error", "API key", key=API_KEY[:-1]),
    Case("unknown model", "POST", CHAT, {**OK_CHAT, "model": "gpt-9"}, 404, INVALID, "gpt-9"),
    Case("unknown route", "POST", "/v1/nothing", OK_CHAT, 404, INVALID, "/v1/nothing"),
    Case("unknown route under /v1", "GET", "/v1/engines", None, 404, INVALID, "/v1/engines"),
    Case("unknown route without a key", "GET", "/v1/engines", None, 401,
         "authentication_error", "API key", key=None),
    Case("debug route is off by default", "GET", "/debug/integrity", None, 404, INVALID,
         "/debug/integrity"),
    Case("GET on a POST route", "GET", CHAT, None, 405, INVALID, "GET"),
    Case("PUT on a POST route", "PUT", COMPLETIONS, OK_TEXT, 405, INVALID, "PUT"),
    Case("DELETE on a GET route", "DELETE", "/v1/models", None, 405, INVALID, "DELETE"),
    Case("POST on /health", "POST", "/health", b"{}", 405, INVALID, "POST"),
]  # fmt: skip


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = Server()
    yield srv
    assert srv.stop() == 0, srv.log()


def _still_serving(server: Server) -> None:
    status, body, _ = server.request("POST", COMPLETIONS, {"prompt": "ok?", "max_tokens": 1})
    assert status == 200 and body["usage"]["completion_tokens"] == 1, body


def test_cases_have_distinct_names() -> None:
    assert len({c.name for c in CASES}) == len(CASES)


def test_bad_inputs_get_clear_openai_errors_and_the_server_keeps_serving(
    server: Server,
) -> None:
    failures = []
    for case in CASES:
        status, answer, headers = server.request(
            case.method, case.path, case.body, key=case.key, headers=case.headers
        )
        problem = _check(case, status, answer, headers)
        if problem:
            failures.append(f"{case.name}: {problem}: {status} {json.dumps(answer)[:300]}")
        _still_serving(server)
    assert not failures, "\n".join(failures)
    assert server.panics() == [], server.panics()
    m = server.wait_idle()
    assert m["tokenspeed_kv_pages_used"] == 0 and m["tokenspeed_state_slots_used"] == 0


def _check(case: Case, status: int, answer: Any, headers: dict[str, str]) -> str | None:
    """What is wrong with the answer to `case`, or None."""
    if status != case.status:
        return f"status {status}, expected {case.status}"
    if case.type is None:
        return None if isinstance(answer, dict) and "choices" in answer else "no completion"
    error = answer.get("error") if isinstance(answer, dict) else None
    if not isinstance(error, dict) or set(error) != {"message", "type", "param", "code"}:
        return "not an OpenAI error body"
    if error["type"] != case.type:
        return f"type {error['type']!r}, expected {case.type!r}"
    if not error["message"] or case.mentions.lower() not in error["message"].lower():
        return f"message does not mention {case.mentions!r}"
    if not isinstance(error["code"], str) or not error["code"]:
        return "no error code"
    if status == 405 and "allow" not in {k.lower() for k in headers}:
        return "405 without an Allow header"
    return None
