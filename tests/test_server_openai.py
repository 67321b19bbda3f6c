"""End to end: `tokenspeed serve` on the demo model (real engine, Python executor, CPU) in a
subprocess, driven with the `openai` client and raw HTTP.

Properties rather than golden outputs (the demo model's weights are random): streamed and
whole answers agree, seeded decoding and seeded sampling are reproducible, a stop string cuts
the seeded text exactly where it occurs, /tokenize matches transformers' rendering of the
template, and the engine's pages and slots return to idle after a client disconnects.
"""

from __future__ import annotations

import http.client
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import openai
import pytest
import tokenspeed
from prometheus_client.parser import text_string_to_metric_families
from server_fixture import API_KEY, BODY_LIMIT, MAX_MODEL_LEN, Server

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


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = Server()
    yield srv
    # SIGTERM drains and exits 0.
    assert srv.stop() == 0, srv.log()


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(api_key=API_KEY, base_url=server.base + "/v1", max_retries=0)


@pytest.fixture(scope="module")
def model(client: openai.OpenAI) -> str:
    return client.models.list().data[0].id


def _user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


NO_THINK = {"chat_template_kwargs": {"enable_thinking": False}}


def test_models_and_demo_banner(server: Server, client: openai.OpenAI) -> None:
    models = client.models.list().data
    assert [m.id for m in models] == ["tokenspeed-demo-qwen3.5-moe"]
    assert client.models.retrieve(models[0].id) == models[0]
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.models.retrieve("gpt-4o")
    status, version, _ = server.request("GET", "/version")
    assert status == 200 and version["version"] == tokenspeed.__version__, version
    status, body, _ = server.request("GET", "/health", key=None)
    assert (status, body) == (200, {"status": "ok"})


def test_chat_whole_and_streamed_agree(client: openai.OpenAI, model: str, server: Server) -> None:
    messages = _user("Tell me about hybrid attention.")
    whole = client.chat.completions.create(
        model=model, messages=messages, max_tokens=12, temperature=0, extra_body=NO_THINK
    )
    choice = whole.choices[0]
    assert choice.finish_reason == "length"
    status, tok, _ = server.request("POST", "/tokenize", {"messages": messages, **NO_THINK})
    assert status == 200
    assert whole.usage.prompt_tokens == tok["count"]
    assert whole.usage.completion_tokens == 12
    assert whole.usage.total_tokens == tok["count"] + 12
    assert whole.usage.prompt_tokens_details.cached_tokens >= 0
    stream = client.chat.completions.create(
        model=model, messages=messages, max_tokens=12, temperature=0, stream=True,
        stream_options={"include_usage": True}, extra_body=NO_THINK,
    )  # fmt: skip
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == choice.message.content
    finals = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finals == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    # OpenAI's shape with include_usage: `"usage": null` in every chunk before the last.
    assert all("usage" in c.model_fields_set and c.usage is None for c in chunks[:-1])
    assert chunks[-1].usage.completion_tokens == 12
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens >= 0


def test_thinking_goes_to_reasoning_content(server: Server, model: str) -> None:
    # With thinking on, the template opens <think>: the raw output (the same prompt and seed via
    # /v1/completions) is reasoning until a </think>, which the random model does not produce.
    messages = _user("Think first.")
    status, tok, _ = server.request("POST", "/tokenize", {"messages": messages})
    assert tok["prompt"].endswith("<think>\n")
    seeded = {"model": model, "max_tokens": 16, "temperature": 1.0, "seed": 5}
    status, raw, _ = server.request("POST", "/v1/completions", {**seeded, "prompt": tok["tokens"]})
    text = raw["choices"][0]["text"]
    assert "</think>" not in text and text.strip()
    floats = {**seeded, "prompt": [float(t) for t in tok["tokens"]]}  # clients that write 5.0
    status, same, _ = server.request("POST", "/v1/completions", floats)
    assert status == 200 and same["choices"][0]["text"] == text, same
    status, out, _ = server.request(
        "POST", "/v1/chat/completions", {**seeded, "messages": messages}
    )
    assert status == 200, out
    message = out["choices"][0]["message"]
    assert message["reasoning_content"] == message["reasoning"] == text.strip()
    assert message["content"] == ""
    status, off, _ = server.request(
        "POST", "/v1/chat/completions", {**seeded, "messages": messages, **NO_THINK}
    )
    assert "reasoning_content" not in off["choices"][0]["message"]
    assert off["choices"][0]["message"]["content"]


def test_named_tool_choice_forces_the_call(client: openai.OpenAI, model: str) -> None:
    # The random model writes no call of its own: the forced opening makes one, in both forms.
    forced = {"type": "function", "function": {"name": "get_weather"}}
    kwargs = dict(
        model=model, messages=_user("Weather in Paris?"), tools=TOOLS, tool_choice=forced,
        max_tokens=8, temperature=0,
    )  # fmt: skip
    whole = client.chat.completions.create(**kwargs)
    calls = whole.choices[0].message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather"]
    assert isinstance(json.loads(calls[0].function.arguments), dict)
    assert whole.usage.completion_tokens == 8
    names, arguments = [], ""
    for chunk in client.chat.completions.create(**kwargs, stream=True):
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            if call.function.name:
                names.append(call.function.name)
            arguments += call.function.arguments or ""
    assert names == ["get_weather"]
    assert arguments == calls[0].function.arguments


def test_completions_whole_streamed_n2_and_seed(client: openai.OpenAI, model: str) -> None:
    prompt = "The quick brown fox"
    whole = client.completions.create(model=model, prompt=prompt, max_tokens=10, temperature=0)
    assert whole.choices[0].finish_reason == "length" and whole.usage.completion_tokens == 10
    streamed = list(
        client.completions.create(
            model=model, prompt=prompt, max_tokens=10, temperature=0, stream=True
        )
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices) == whole.choices[0].text
    assert all("usage" not in c.model_fields_set for c in streamed)  # not asked: absent
    usage_kwargs = dict(stream=True, stream_options={"include_usage": True})
    with_usage = list(
        client.completions.create(
            model=model, prompt=prompt, max_tokens=10, temperature=0, **usage_kwargs
        )
    )
    assert [c.usage for c in with_usage[:-1]] == [None] * (len(with_usage) - 1)
    assert all("usage" in c.model_fields_set for c in with_usage)
    assert with_usage[-1].choices == [] and with_usage[-1].usage.completion_tokens == 10
    kwargs = dict(model=model, prompt=prompt, max_tokens=10, temperature=1.0, n=2, seed=7)
    first = client.completions.create(**kwargs)
    again = client.completions.create(**kwargs)
    assert sorted(c.index for c in first.choices) == [0, 1]
    assert [c.text for c in first.choices] == [c.text for c in again.choices]
    assert first.usage.completion_tokens == 20
    other = client.completions.create(**{**kwargs, "seed": 8})
    assert [c.text for c in other.choices] != [c.text for c in first.choices]


def test_chat_n2_seed_reproducible(client: openai.OpenAI, model: str) -> None:
    kwargs = dict(
        model=model, messages=_user("Pick a number."), max_tokens=8, temperature=1.0, n=2,
        seed=11, extra_body=NO_THINK,
    )  # fmt: skip
    a = client.chat.completions.create(**kwargs)  # type: ignore[arg-type]
    b = client.chat.completions.create(**kwargs)  # type: ignore[arg-type]
    assert len(a.choices) == 2
    assert [c.message.content for c in a.choices] == [c.message.content for c in b.choices]


def test_stop_string_cuts_the_greedy_text(client: openai.OpenAI, model: str) -> None:
    prompt = "Once upon a time"
    full = client.completions.create(model=model, prompt=prompt, max_tokens=24, temperature=0)
    text = full.choices[0].text
    stop = text[len(text) // 2 : len(text) // 2 + 3]
    assert len(stop) == 3
    cut = client.completions.create(
        model=model, prompt=prompt, max_tokens=24, temperature=0, stop=[stop]
    )
    assert cut.choices[0].text == text[: text.index(stop)]
    assert cut.choices[0].finish_reason == "stop"
    streamed = client.completions.create(
        model=model, prompt=prompt, max_tokens=24, temperature=0, stop=[stop], stream=True
    )
    chunks = [c for c in streamed if c.choices]
    assert "".join(c.choices[0].text for c in chunks) == text[: text.index(stop)]
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_logit_bias_forces_and_logprobs_stay_raw(
    client: openai.OpenAI, model: str, server: Server
) -> None:
    status, tok, _ = server.request("POST", "/tokenize", {"prompt": " banana"})
    assert status == 200 and tok["count"] == 1, tok
    banana = tok["tokens"][0]
    kwargs = dict(model=model, prompt="Once upon a time", max_tokens=4, temperature=0)
    plain = client.completions.create(**kwargs).choices[0].text
    forced = client.completions.create(**kwargs, logprobs=0, logit_bias={str(banana): 100})
    choice = forced.choices[0]
    assert choice.text == " banana" * 4 != plain
    # Logprobs are the raw model's (vLLM's default), not the biased distribution's ~0.
    assert all(lp < -1 for lp in choice.logprobs.token_logprobs), choice.logprobs
    # Banning it changes nothing where the model did not pick it anyway.
    banned = client.completions.create(**kwargs, logit_bias={str(banana): -100})
    assert banned.choices[0].text == plain


def test_logprobs(client: openai.OpenAI, model: str) -> None:
    out = client.chat.completions.create(
        model=model, messages=_user("Hi"), max_tokens=6, temperature=0, logprobs=True,
        top_logprobs=3, extra_body=NO_THINK,
    )  # fmt: skip
    content = out.choices[0].logprobs.content
    assert len(content) == 6
    for entry in content:
        tops = entry.top_logprobs
        assert len(tops) == 3
        assert all(t.logprob <= 0 for t in tops)
        assert [t.logprob for t in tops] == sorted((t.logprob for t in tops), reverse=True)
        # Greedy: the sampled token is the most likely one.
        assert entry.token == tops[0].token and entry.logprob == pytest.approx(tops[0].logprob)
    text = client.completions.create(
        model=model, prompt="Hi", max_tokens=4, temperature=0, logprobs=2
    )
    lp = text.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 4
    assert all(len(t) <= 2 for t in lp.top_logprobs)


def test_second_turn_hits_the_prefix_cache(client: openai.OpenAI, model: str) -> None:
    system = f"Session {uuid.uuid4()}. " + "You are a careful assistant. " * 12
    turn1 = [{"role": "system", "content": system}, {"role": "user", "content": "Hello"}]
    first = client.chat.completions.create(
        model=model, messages=turn1, max_tokens=8, temperature=0, extra_body=NO_THINK
    )
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    turn2 = [
        *turn1,
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "And then?"},
    ]
    second = client.chat.completions.create(
        model=model, messages=turn2, max_tokens=8, temperature=0, extra_body=NO_THINK
    )
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert 0 < cached < second.usage.prompt_tokens


def test_tokenize_messages_with_tools_matches_transformers(server: Server) -> None:
    from tokenspeed.demo import demo_dir
    from transformers import AutoTokenizer

    messages = [
        {"role": "system", "content": "Use tools when useful."},
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
    ]
    status, body, _ = server.request(
        "POST", "/tokenize", {"messages": messages, "tools": TOOLS, **NO_THINK}
    )
    assert status == 200, body
    reference = AutoTokenizer.from_pretrained(str(demo_dir()))
    text = reference.apply_chat_template(
        messages, tools=TOOLS, tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    assert body["prompt"] == text
    assert body["tokens"] == reference.encode(text, add_special_tokens=False)
    assert body["count"] == len(body["tokens"])
    status, back, _ = server.request("POST", "/detokenize", {"tokens": body["tokens"]})
    assert (status, back["prompt"]) == (200, text)


def test_metrics_parse_and_count(server: Server, client: openai.OpenAI, model: str) -> None:
    client.completions.create(model=model, prompt="count me", max_tokens=3)
    status, text, headers = server.request("GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in (
        "tokenspeed_num_requests_running", "tokenspeed_num_requests_waiting",
        "tokenspeed_kv_pages_used", "tokenspeed_state_slots_used",
        "tokenspeed_prefix_cache_hit_tokens", "tokenspeed_preemptions",
        "tokenspeed_time_to_first_token_seconds", "tokenspeed_inter_token_latency_seconds",
        "tokenspeed_e2e_request_latency_seconds", "tokenspeed_http_requests",
        "tokenspeed_prompt_tokens", "tokenspeed_generation_tokens",
    ):  # fmt: skip
        assert name in families, name
    ok = [
        s
        for s in families["tokenspeed_http_requests"].samples
        if s.labels == {"route": "/v1/completions", "status": "200"}
    ]
    assert ok and ok[0].value >= 1
    values = server.metrics()
    assert values["tokenspeed_generation_tokens_total"] >= 3
    assert values["tokenspeed_time_to_first_token_seconds_count"] >= 1


def _idle(server: Server) -> dict[str, float]:
    deadline = time.monotonic() + 20
    while True:
        m = server.metrics()
        busy = (
            m["tokenspeed_num_requests_running"] + m["tokenspeed_num_requests_waiting"]
            + m["tokenspeed_kv_pages_used"] + m["tokenspeed_state_slots_used"]
        )  # fmt: skip
        if busy == 0 or time.monotonic() > deadline:
            return m
        time.sleep(0.2)


@pytest.mark.parametrize("stream", [True, False])
def test_client_disconnect_frees_the_request(server: Server, model: str, stream: bool) -> None:
    aborts_before = server.metrics()["tokenspeed_client_aborts_total"]
    body = json.dumps(
        {"model": model, "prompt": "Keep going", "max_tokens": 400, "stream": stream,
         "ignore_eos": True}
    ).encode()  # fmt: skip
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request(
        "POST", "/v1/completions", body,
        {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"},
    )  # fmt: skip
    if stream:
        resp = conn.getresponse()
        assert resp.status == 200
        seen = 0
        while seen < 3:  # a few generated chunks: the request is running
            seen += resp.fp.readline().startswith(b"data: {")
    deadline = time.monotonic() + 20
    while (running := server.metrics())["tokenspeed_num_requests_running"] < 1:
        assert time.monotonic() < deadline, "the request never ran"
        time.sleep(0.05)
    assert running["tokenspeed_kv_pages_used"] >= 1
    if conn.sock is not None:
        conn.sock.close()
    conn.close()
    m = _idle(server)
    assert m["tokenspeed_num_requests_running"] == 0
    assert m["tokenspeed_num_requests_waiting"] == 0
    assert m["tokenspeed_kv_pages_used"] == 0
    assert m["tokenspeed_state_slots_used"] == 0
    assert m["tokenspeed_client_aborts_total"] == aborts_before + 1
    # 400 tokens take far longer than this test did: the request really was cut short.
    generated = (
        m["tokenspeed_generation_tokens_total"] - running["tokenspeed_generation_tokens_total"]
    )
    assert generated < 300


def test_concurrent_requests(server: Server, client: openai.OpenAI, model: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def ask(i: int) -> tuple[int, str | None, str]:
        out = client.chat.completions.create(
            model=model, messages=_user(f"question {i}"), max_tokens=6, temperature=0,
            extra_body=NO_THINK,
        )  # fmt: skip
        return out.usage.completion_tokens, out.choices[0].message.content, out.id

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(ask, range(12)))
    assert [r[0] for r in results] == [6] * 12
    assert len({r[2] for r in results}) == 12  # distinct response ids
    # Batching does not change greedy answers.
    assert ask(3)[1] == results[3][1]
    m = _idle(server)
    assert m["tokenspeed_kv_pages_used"] == 0 and m["tokenspeed_state_slots_used"] == 0


def _bad_inputs(model: str) -> list[tuple[str, str, bytes | dict, str | None, int, str]]:
    """(name, path, body, api key, status, expected error code)."""
    chat = "/v1/chat/completions"
    ok = {"model": model, "messages": _user("hi"), "max_tokens": 2}
    bad_tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}
    return [
        ("invalid json", chat, b'{"messages": [', API_KEY, 400, "invalid_request"),
        ("wrong type", chat, {**ok, "max_tokens": "many"}, API_KEY, 400, "invalid_request"),
        ("messages not a list", chat, {**ok, "messages": "hi"}, API_KEY, 400, "invalid_request"),
        ("empty messages", chat, {**ok, "messages": []}, API_KEY, 400, "invalid_request"),
        ("bad role", chat, {**ok, "messages": [{"role": "x", "content": "a"}]}, API_KEY, 400,
         "invalid_request"),
        ("unknown model", chat, {**ok, "model": "gpt-9"}, API_KEY, 404, "model_not_found"),
        ("negative max_tokens", chat, {**ok, "max_tokens": -1}, API_KEY, 400, "invalid_request"),
        ("zero max_tokens", chat, {**ok, "max_tokens": 0}, API_KEY, 400, "invalid_request"),
        ("huge max_tokens", chat, {**ok, "max_tokens": 10**9}, API_KEY, 400, "invalid_request"),
        ("prompt too long", "/v1/completions",
         {"model": model, "prompt": "hello " * (MAX_MODEL_LEN + 10), "max_tokens": 1}, API_KEY,
         400, "invalid_request"),
        ("bad tools schema", chat, {**ok, "tools": [bad_tool]}, API_KEY, 400, "invalid_request"),
        ("tools not a list", chat, {**ok, "tools": {"a": 1}}, API_KEY, 400, "invalid_request"),
        ("temperature out of range", chat, {**ok, "temperature": 7}, API_KEY, 400,
         "invalid_request"),
        ("n = 0", chat, {**ok, "n": 0}, API_KEY, 400, "invalid_request"),
        ("tool_choice names no tool", chat,
         {**ok, "tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "x"}}},
         API_KEY, 400, "invalid_request"),
        ("bad api key", chat, ok, "wrong-key", 401, "invalid_api_key"),
        ("missing api key", chat, ok, None, 401, "invalid_api_key"),
        ("oversized body", chat, {**ok, "messages": _user("x" * (BODY_LIMIT + 1))}, API_KEY,
         413, "request_too_large"),
        ("unknown route", "/v1/nothing", ok, API_KEY, 404, "not_found"),
        ("token id outside vocab", "/detokenize", {"tokens": [10**9]}, API_KEY, 400,
         "invalid_request"),
    ]  # fmt: skip


def test_bad_inputs_get_their_status_and_the_server_keeps_serving(
    server: Server, client: openai.OpenAI, model: str
) -> None:
    failures = []
    for name, path, body, key, status, code in _bad_inputs(model):
        got, answer, _ = server.request("POST", path, body, key=key)
        error = answer.get("error") if isinstance(answer, dict) else None
        if got != status or not error or error.get("code") != code or not error.get("message"):
            failures.append(f"{name}: {got} {answer}")
            continue
        assert set(error) == {"message", "type", "param", "code"}, name
    assert not failures, "\n".join(failures)
    # The OpenAI client maps the statuses to its exception types.
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=_user("hi"), max_tokens=1)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=model, messages=[], max_tokens=1)
    ok = client.chat.completions.create(model=model, messages=_user("still there?"), max_tokens=2)
    assert ok.choices[0].finish_reason == "length"
    assert _idle(server)["tokenspeed_kv_pages_used"] == 0


def test_openapi_document(server: Server) -> None:
    status, doc, _ = server.request("GET", "/openapi.json")
    assert status == 200
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/models", "/tokenize",
                 "/detokenize", "/health", "/metrics"):  # fmt: skip
        assert path in doc["paths"], path
    schemas = doc["components"]["schemas"]
    chat = json.dumps(schemas["ChatCompletionRequest"])
    for field in ("messages", "tools", "max_completion_tokens", "chat_template_kwargs"):
        assert f'"{field}"' in chat, field
    sampling = json.dumps(schemas["SamplingFields"])
    for field in ("temperature", "top_k", "seed", "stop", "n", "stream_options"):
        assert f'"{field}"' in sampling, field
    assert "ErrorResponse" in schemas
