"""`LLM.chat` renders with the server's Rust template engine and tokenizer: the prompt equals
transformers' `apply_chat_template` + encoding of the same conversation, its greedy output
equals generating from those token ids, and bad conversations raise clear errors."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from tokenspeed import LLM, SamplingParams
from tokenspeed.demo import ensure_demo_model
from transformers import AutoTokenizer

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read a file",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}},
                "required": ["path"],
            },
        },
    }
]
CONVERSATION = [
    {"role": "system", "content": "You are a coding agent."},
    {"role": "user", "content": "Open main.py"},
    {
        "role": "assistant",
        "content": "",
        "reasoning_content": "I should read it.",
        "tool_calls": [
            {
                "id": "call_0",
                "type": "function",
                "function": {"name": "read_file", "arguments": '{"path": "main.py"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_0", "content": "print('hi')"},
    {"role": "user", "content": [{"type": "text", "text": "What does it print?"}]},
]


def hf_form(conversation: list[dict]) -> list[dict]:
    """Transformers' templates take tool-call arguments as a dict, OpenAI clients send JSON
    text (which our renderer parses): the same conversation in the reference's form."""
    out = []
    for message in conversation:
        calls = message.get("tool_calls")
        if calls:
            calls = [
                {
                    **c,
                    "function": {
                        **c["function"],
                        "arguments": json.loads(c["function"]["arguments"]),
                    },
                }
                for c in calls
            ]
            message = {**message, "tool_calls": calls}
        out.append(message)
    return out


@pytest.fixture(scope="module")
def llm() -> Iterator[LLM]:
    with LLM(ensure_demo_model(), device="cpu", page_size=16, max_model_len=1024) as engine:
        yield engine


@pytest.fixture(scope="module")
def reference() -> AutoTokenizer:
    return AutoTokenizer.from_pretrained(str(ensure_demo_model()))


@pytest.mark.parametrize("thinking", [True, False])
def test_render_matches_transformers(llm: LLM, reference, thinking: bool) -> None:
    kwargs = {"enable_thinking": thinking}
    ours = llm.render_chat(CONVERSATION, tools=TOOLS, chat_template_kwargs=kwargs)
    theirs = reference.apply_chat_template(
        hf_form(CONVERSATION), tools=TOOLS, tokenize=False, add_generation_prompt=True, **kwargs
    )
    assert ours == theirs
    assert ours.endswith("<think>\n") == thinking


def test_chat_prompt_and_greedy_output(llm: LLM, reference) -> None:
    params = SamplingParams(max_tokens=6, temperature=0.0)
    kwargs = {"enable_thinking": False}
    second = [{"role": "user", "content": "Say hi."}]
    outputs = llm.chat([CONVERSATION, second], params, tools=TOOLS, chat_template_kwargs=kwargs)
    assert len(outputs) == 2
    for conversation, out in ((CONVERSATION, outputs[0]), (second, outputs[1])):
        text = reference.apply_chat_template(
            hf_form(conversation), tools=TOOLS, tokenize=False, add_generation_prompt=True, **kwargs
        )
        expected_ids = reference.encode(text, add_special_tokens=False)
        assert out.prompt == text
        assert out.prompt_token_ids == expected_ids
        direct = llm.generate(prompt_token_ids=expected_ids, sampling_params=params)[0]
        assert out.outputs[0].token_ids == direct.outputs[0].token_ids
        assert len(out.outputs[0].token_ids) == 6
        assert out.outputs[0].text == reference.decode(
            out.outputs[0].token_ids, skip_special_tokens=True
        )


@pytest.mark.parametrize(
    ("messages", "tools", "needle"),
    [
        ([{"role": "wizard", "content": "hi"}], None, "wizard"),
        ([], None, "messages"),
        ([{"role": "user", "content": "hi"}], [{"type": "function"}], "function"),
    ],
)
def test_bad_conversations_raise(llm: LLM, messages, tools, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        llm.chat(messages, SamplingParams(max_tokens=1), tools=tools)
