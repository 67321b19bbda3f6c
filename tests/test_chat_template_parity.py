"""The server's Rust chat-template renderer (minijinja) renders the official Qwen3.5 template
byte-identically to transformers' jinja2 rendering (``render_jinja_template``) on generated
conversations: tools, parallel tool calls, tool responses, reasoning, thinking on/off, system
prompts, multi-turn, content-part lists, and the template's own errors."""

from __future__ import annotations

import copy
import json
import os
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest
from transformers.utils.chat_template_utils import render_jinja_template

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "crates" / "server" / "templates" / "qwen3_5_chat_template.jinja"

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city. Uses <b>HTML</b> & 'quotes' — ünïcode.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City name"},
                    "days": {"type": "integer", "minimum": 1},
                    "unit": {"type": "string", "enum": ["c", "f"]},
                },
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "write_file",
            "description": "Write a file.\nOverwrites.",
            "parameters": {
                "type": "object",
                "properties": {
                    "path": {"type": "string"},
                    "content": {"type": "string"},
                    "mode": {"type": "number", "default": 0.5},
                    "append": {"type": "boolean"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "options": {"type": "object"},
                },
            },
        },
    },
    {"type": "function", "function": {"name": "noop", "parameters": {}}},
]

USER_TEXTS = [
    "What's the weather in Paris?",
    "  padded question with spaces \n\n",
    "多語言：今天天氣如何？🌤️",
    "Write `hello.py` that prints 'hi'.\n```python\nprint('hi')\n```",
    'Quotes " and \\ backslashes \t tabs',
    "<tool_response>fake</tool_response> but with text after",
]
ARG_VALUES: list[Any] = [
    "Paris",
    "multi\nline\nvalue",
    3,
    -7,
    2.5,
    1e20,
    0.0001,
    True,
    False,
    None,
    ["a", "b", 1],
    {"nested": {"k": [1, 2]}, "flag": False},
    "",
    'ünï <code> & "q"',
]


def _tool_call(rng: random.Random, wrap_function: bool) -> dict[str, Any]:
    name = rng.choice(["get_weather", "write_file", "noop"])
    keys = rng.sample(
        ["city", "days", "path", "content", "mode", "tags", "options", "z_last"], rng.randint(0, 4)
    )
    arguments = {key: rng.choice(ARG_VALUES) for key in keys}
    function = {"name": name, "arguments": arguments}
    if wrap_function:
        return {"id": f"call_{rng.randint(0, 999)}", "type": "function", "function": function}
    return function


def _assistant(rng: random.Random, with_calls: bool) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant"}
    style = rng.randint(0, 4)
    answer = rng.choice(["Sure.", "", "  The answer is 42.  ", "Let me check.\n", "多謝！"])
    if style == 0:
        message["content"] = answer
    elif style == 1:
        message["content"] = answer
        message["reasoning_content"] = rng.choice(["\nthinking hard\n", "short", "  "])
    elif style == 2:
        message["content"] = f"<think>\ninline reasoning\n</think>\n\n{answer}"
    elif style == 3:
        message["content"] = answer
        message["reasoning"] = "aliased reasoning field"
    else:
        message["content"] = None if with_calls else answer
    if with_calls:
        wrap = rng.random() < 0.8
        message["tool_calls"] = [_tool_call(rng, wrap) for _ in range(rng.randint(1, 3))]
    return message


def _conversation(rng: random.Random) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    if rng.random() < 0.6:
        system = rng.choice(["You are helpful.", "  Be terse.  \n", "系统提示"])
        content: Any = system if rng.random() < 0.7 else [{"type": "text", "text": system}]
        messages.append({"role": "system", "content": content})
    for _turn in range(rng.randint(1, 4)):
        text = rng.choice(USER_TEXTS)
        parts = [{"type": "text", "text": text}, {"type": "text", "text": " more"}]
        messages.append({"role": "user", "content": text if rng.random() < 0.8 else parts})
        if rng.random() < 0.5:
            assistant = _assistant(rng, with_calls=True)
            messages.append(assistant)
            for _ in range(len(assistant["tool_calls"])):
                result = rng.choice(['{"temp": 21}', "done", "  multi\nline  ", "错误"])
                messages.append({"role": "tool", "tool_call_id": "x", "content": result})
            if rng.random() < 0.5:
                messages.append(_assistant(rng, with_calls=False))
        else:
            messages.append(_assistant(rng, with_calls=False))
    if rng.random() < 0.6:  # end on a user turn, the usual prompt shape
        messages.append({"role": "user", "content": rng.choice(USER_TEXTS)})
    case: dict[str, Any] = {"messages": messages, "add_generation_prompt": rng.random() < 0.8}
    if rng.random() < 0.6:
        case["tools"] = rng.sample(TOOLS, rng.randint(1, 3))
    thinking = rng.choice([None, True, False])
    if thinking is not None:
        case["chat_template_kwargs"] = {"enable_thinking": thinking, "unused_kwarg": [1, 2]}
    return case


def _error_cases() -> list[dict[str, Any]]:
    tool_only = [{"role": "user", "content": "<tool_response>x</tool_response>"}]
    late_system = [{"role": "user", "content": "hi"}, {"role": "system", "content": "late"}]
    bad_role = [{"role": "user", "content": "hi"}, {"role": "robot", "content": "beep"}]
    image_in_system = [
        {"role": "system", "content": [{"type": "image"}]},
        {"role": "user", "content": "x"},
    ]
    return [
        {"messages": m, "add_generation_prompt": True}
        for m in (tool_only, late_system, bad_role, image_in_system)
    ]


def _cases() -> list[dict[str, Any]]:
    rng = random.Random(20260101)
    return [_conversation(rng) for _ in range(80)] + _error_cases()


def _render_python(case: dict[str, Any]) -> dict[str, str]:
    try:
        rendered, _ = render_jinja_template(
            conversations=[copy.deepcopy(case["messages"])],
            tools=case.get("tools"),
            chat_template=TEMPLATE.read_text(),
            add_generation_prompt=case["add_generation_prompt"],
            **case.get("chat_template_kwargs", {}),
        )
    except Exception as exc:  # the template's raise_exception(...)
        return {"error": str(exc)}
    return {"text": rendered[0]}


def _as_openai_wire(case: dict[str, Any]) -> dict[str, Any]:
    """Sends tool-call arguments as JSON strings (the OpenAI wire format) to the Rust side."""
    case = copy.deepcopy(case)
    for message in case["messages"]:
        for call in message.get("tool_calls", []):
            function = call.get("function", call)
            function["arguments"] = json.dumps(function["arguments"])
    return case


def _cargo_example(name: str) -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache" / "tokenspeed-target"))
    cmd = ["cargo", "build", "-q", "-p", "tokenspeed-server", "--example", name]
    subprocess.run(cmd, cwd=REPO, check=True, env={**os.environ, "CARGO_TARGET_DIR": str(target)})
    return target / "debug" / "examples" / name


def _render_rust(cases: list[dict[str, Any]], *args: str) -> list[dict[str, str]]:
    binary = _cargo_example("render_chat")
    done = subprocess.run(
        [binary, *args], input=json.dumps(cases), capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def cases() -> list[dict[str, Any]]:
    return _cases()


def test_cases_cover_the_acceptance_features(cases: list[dict[str, Any]]) -> None:
    ok = [c for c in cases if "text" in _render_python(c)]
    assert len(ok) >= 50
    messages = [m for c in ok for m in c["messages"]]
    assert sum("tools" in c for c in ok) >= 20
    assert sum(len(m.get("tool_calls", [])) >= 2 for m in messages) >= 10
    assert sum(m["role"] == "tool" for m in messages) >= 20
    assert sum("reasoning_content" in m for m in messages) >= 10
    assert sum(m["role"] == "system" for m in messages) >= 20
    kwargs = [c.get("chat_template_kwargs", {}).get("enable_thinking") for c in ok]
    assert kwargs.count(True) >= 10 and kwargs.count(False) >= 10
    assert sum(sum(m["role"] == "user" for m in c["messages"]) >= 3 for c in ok) >= 10


def test_rust_renders_like_jinja2(cases: list[dict[str, Any]]) -> None:
    expected = [_render_python(c) for c in cases]
    assert sum("error" in e for e in expected) == 4
    for wire in (False, True):
        sent = [_as_openai_wire(c) if wire else c for c in cases]
        got = _render_rust(sent, "--chat-template", str(TEMPLATE))
        for index, (want, have) in enumerate(zip(expected, got, strict=True)):
            if "text" in want:
                assert have == want, f"case {index} (wire={wire})"
            else:
                assert "error" in have and want["error"] in have["error"], f"case {index}"


def test_template_resolution_from_model_dir(tmp_path: Path, cases: list[dict[str, Any]]) -> None:
    """tokenizer_config.json's chat_template is used (and beats the built-in one); the built-in
    template is the official one."""
    assert (
        TEMPLATE.read_text()
        == (REPO / "python" / "tokenspeed" / "vocab" / TEMPLATE.name).read_text()
    )
    custom = "{% for m in messages %}[{{ m.role }}|{{ m.content }}|{{ eos_token }}]{% endfor %}"
    config = {"chat_template": custom, "eos_token": {"content": "<|im_end|>"}}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    case = cases[0]
    got = _render_rust([case], "--model-dir", str(tmp_path))[0]["text"]
    want, _ = render_jinja_template(
        conversations=[case["messages"]], chat_template=custom, eos_token="<|im_end|>"
    )
    assert got == want[0] and "|<|im_end|>]" in got
    builtin = _render_rust([case], "--model-dir", str(tmp_path / "missing"))[0]
    assert builtin == _render_python(case)
