"""Aborting a running request ends its stream with "abort" and frees every page and state
slot it held (accounting proof); other requests are unaffected. Bad input fails clearly."""

from __future__ import annotations

import time

import hf_fixtures as fx
import pytest
from tokenspeed import LLM, SamplingParams


@pytest.fixture(scope="module")
def llm(tmp_path_factory):
    path = fx.save_checkpoint(fx.build("dense", seed=4), tmp_path_factory.mktemp("dense"))
    with LLM(path, page_size=16, max_num_seqs=4, kv_cache_pages=100, state_slots=16) as llm:
        yield llm


def drain(stream, until: str, limit: float = 60.0) -> list[tuple]:
    events: list[tuple] = []
    deadline = time.monotonic() + limit
    while not any(e[0] == until for e in events):
        assert time.monotonic() < deadline, f"no {until!r} event in {limit}s: {events[-3:]}"
        events += stream.next(0.05)
    return events


def test_abort_running_request_frees_pages_and_slots(llm):
    prompt = fx.random_tokens(50, 320, seed=1).tolist()
    long = SamplingParams(temperature=0, max_tokens=2000, ignore_eos=True)
    rid, stream = llm.core.submit(prompt, long)
    _, other = llm.core.submit(
        prompt[:30], SamplingParams(temperature=0, max_tokens=5, ignore_eos=True)
    )
    drain(stream, "token")
    assert llm.stats()["running"] >= 1
    llm.core.abort(rid)
    events = drain(stream, "finished")
    assert events[-1][1] == "abort"
    assert drain(other, "finished")[-1][1] == "length"
    stats = llm.stats()
    assert (stats["running"], stats["pages_used"], stats["slots_used"]) == (0, 0, 0), stats
    llm.check_integrity()
    llm.core.abort(rid)  # aborting an ended request is a no-op


def test_bad_input_fails_clearly(llm):
    with pytest.raises(ValueError, match="outside the vocabulary"):
        llm.generate(prompt_token_ids=[[1, 2, 999_999]])
    with pytest.raises(ValueError, match="empty"):
        llm.generate(prompt_token_ids=[[]])
    with pytest.raises(ValueError, match="tokenizer"):
        llm.generate(prompts=["hello"])
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0.0)
