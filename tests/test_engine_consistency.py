"""The engine against itself: greedy outputs never depend on prefix caching, chunk size,
overlap, batch composition, or memory pressure (eviction and preemption, which must really
happen). Every run ends with the pools' accounting proof. Reference: one run with caching off,
no overlap, unlimited chunks and ample memory (itself checked against HF in test_llm_hf.py)."""

from __future__ import annotations

import hf_fixtures as fx
import pytest
from tokenspeed import LLM, SamplingParams

PAGE = 16
VOCAB = 320
GREEDY = SamplingParams(temperature=0.0, max_tokens=10, ignore_eos=True)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """The MoE fixture: hybrid layers and routed experts, the most batch-sensitive model."""
    return fx.save_checkpoint(fx.build("moe", seed=3), tmp_path_factory.mktemp("moe"))


def make_llm(path, **overrides) -> LLM:
    kwargs = dict(
        page_size=PAGE, max_num_seqs=8, chunked_prefill_size=None, overlap=False,
        enable_prefix_caching=False, kv_cache_pages=400, state_slots=64,
    )  # fmt: skip
    kwargs.update(overrides)
    return LLM(path, **kwargs)


def prompts(lengths, seed: int = 0) -> list[list[int]]:
    return [fx.random_tokens(n, VOCAB, seed=seed + i).tolist() for i, n in enumerate(lengths)]


def run(llm: LLM, batch: list[list[int]], params=GREEDY) -> list[list[int]]:
    outputs = llm.generate(prompt_token_ids=batch, sampling_params=params)
    llm.check_integrity()
    return [o.outputs[0].token_ids for o in outputs]


BATCH = prompts([3, 17, 40, 64, 90, 130, 201])


@pytest.fixture(scope="module")
def reference(model_dir):
    with make_llm(model_dir) as llm:
        return run(llm, BATCH)


@pytest.mark.parametrize("chunk", [16, 64, 200, None])
def test_chunked_prefill_sizes_and_overlap(model_dir, reference, chunk):
    # Chunks of 16 need max_num_seqs small: the step budget is at least max_num_seqs-1+page.
    overlap = chunk in (16, 200)
    with make_llm(model_dir, chunked_prefill_size=chunk, max_num_seqs=2, overlap=overlap) as llm:
        assert run(llm, BATCH) == reference


def test_overlap_with_prefix_caching(model_dir, reference):
    with make_llm(model_dir, overlap=True, enable_prefix_caching=True) as llm:
        assert run(llm, BATCH) == reference
        assert run(llm, BATCH) == reference  # second pass served from the cache
        assert llm.stats()["prefix_hit_tokens"] > 0


def test_alone_versus_inside_a_batch_of_16(model_dir):
    target = prompts([77], seed=100)
    others = prompts([5 + 13 * i for i in range(16)], seed=200)
    with make_llm(model_dir, overlap=True, max_num_seqs=17, chunked_prefill_size=96) as llm:
        alone = run(llm, target)[0]
        mixed = run(llm, others[:8] + target + others[8:])
    assert mixed[8] == alone


def test_eviction_and_preemption_do_not_change_answers(model_dir):
    batch = prompts([40 + 7 * i for i in range(12)], seed=300)
    params = SamplingParams(temperature=0.0, max_tokens=24, ignore_eos=True)
    with make_llm(model_dir) as llm:
        want = run(llm, batch, params)
    # 14 pages of 16 tokens: one request needs up to 10, so two at once already overflow.
    tight = dict(kv_cache_pages=14, state_slots=12, max_num_seqs=4, enable_prefix_caching=True)
    for overlap in (False, True):
        with make_llm(model_dir, overlap=overlap, **tight) as llm:
            assert run(llm, batch, params) == want
            stats = llm.stats()
            assert stats["preemptions"] > 0, stats
            assert stats["evicted_pages"] > 0, stats
            assert stats["pages_used"] == 0 and stats["slots_used"] == 0, stats


def test_multi_turn_caching_never_changes_an_answer(model_dir):
    """4 conversations, 6 turns, interleaved: turn k+1 = turn k prompt + output + ~100 new."""
    params = SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True)
    results = {}
    for caching in (False, True):
        with make_llm(model_dir, enable_prefix_caching=caching, overlap=caching) as llm:
            convs = prompts([60, 90, 110, 130], seed=400)
            turns = []
            for k in range(6):
                outs = llm.generate(prompt_token_ids=convs, sampling_params=params)
                turns.append(
                    [
                        (c, o.outputs[0].token_ids, o.num_cached_tokens)
                        for c, o in zip(convs, outs, strict=True)
                    ]
                )
                news = prompts([95 + 5 * i for i in range(4)], seed=500 + 10 * k)
                convs = [
                    c + o.outputs[0].token_ids + n
                    for c, o, n in zip(convs, outs, news, strict=True)
                ]
            llm.check_integrity()
            results[caching] = turns
    for k, (plain, cached) in enumerate(zip(results[False], results[True], strict=True)):
        assert [out for _, out, _ in cached] == [out for _, out, _ in plain], f"turn {k}"
        assert all(hit == 0 for _, _, hit in plain)
        if k == 0:
            continue
        for (prev_prompt, prev_out, _), (_, _, hit) in zip(
            results[True][k - 1], cached, strict=True
        ):
            floor = (len(prev_prompt) + len(prev_out)) // PAGE * PAGE - PAGE
            assert hit >= floor, f"turn {k}: {hit} cached tokens < {floor}"
