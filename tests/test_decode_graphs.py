"""The decode-graph step (static buffers, padding to the captured batch size, previous-step
tokens gathered on the device, sampling inside the step) against the eager path, on CPU: the
same code runs without capture (``emulate``), so everything but the capture itself is proven
here; tests/gpu/test_cuda_graphs_gpu.py covers the capture on a GPU."""

from __future__ import annotations

import hf_fixtures as fx
import pytest
import torch
from tokenspeed import LLM, SamplingParams
from tokenspeed.sampling import TOP_K_CAP, SampleBatch, greedy_or_temperature, sample

PAGE = 16
VOCAB = 320
PROMPTS = [fx.random_tokens(n, VOCAB, seed=n).tolist() for n in (3, 17, 40, 64, 90)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return fx.save_checkpoint(fx.build("moe", seed=3), tmp_path_factory.mktemp("moe"))


def make_llm(path, graphs: bool, overlap: bool) -> LLM:
    llm = LLM(
        path, page_size=PAGE, max_num_seqs=8, overlap=overlap, kv_cache_pages=200,
        state_slots=48, seed=11,
    )  # fmt: skip
    if graphs:  # before any request: the engine thread is idle
        core = llm.core
        max_pages = -(-(core.max_model_len + 1) // PAGE)
        core.executor.capture_decode_graphs(core.max_running, max_pages, emulate=True)
    return llm


def run(llm: LLM, params: list[SamplingParams]) -> list[list[int]]:
    outs = llm.generate(prompt_token_ids=PROMPTS, sampling_params=params)
    llm.check_integrity()
    return [o.outputs[0].token_ids for o in outs]


CASES = {
    "greedy": [SamplingParams(temperature=0.0, max_tokens=12, ignore_eos=True)] * 5,
    # Seeded temperature rows and a greedy row in one batch: sampled in the step. (Unseeded
    # draws depend on which requests share each step, which generate() does not fix.)
    "temperature": [
        SamplingParams(temperature=t, seed=s, max_tokens=12, ignore_eos=True)
        for t, s in ((0.8, 1), (1.0, 2), (0.0, None), (1.3, 7), (0.5, 4))
    ],
    # Top-k rows (top-p / min-p on top), an untruncated and a greedy row: sampled in the step.
    "top_k": [
        SamplingParams(temperature=1.0, top_k=20, seed=3, max_tokens=12, ignore_eos=True),
        SamplingParams(temperature=0.7, top_k=5, top_p=0.9, seed=8, max_tokens=12, ignore_eos=True),
        SamplingParams(temperature=0.0, max_tokens=12, ignore_eos=True),
        SamplingParams(temperature=1.2, seed=9, max_tokens=12, ignore_eos=True),
        SamplingParams(
            temperature=0.9, top_k=40, min_p=0.05, seed=6, max_tokens=12, ignore_eos=True
        ),
    ],
    # Logprobs, penalties, top-p without top-k: the step's logits, sampled by the eager sampler.
    "eager_sampler": [
        SamplingParams(temperature=1.0, top_k=20, seed=3, max_tokens=12, ignore_eos=True),
        SamplingParams(temperature=0.0, logprobs=2, max_tokens=12, ignore_eos=True),
        SamplingParams(
            temperature=0.7, presence_penalty=0.5, seed=5, max_tokens=12, ignore_eos=True
        ),
        SamplingParams(temperature=0.0, max_tokens=12, ignore_eos=True),
        SamplingParams(temperature=0.9, top_p=0.8, seed=6, max_tokens=12, ignore_eos=True),
    ],
}


@pytest.mark.parametrize("overlap", [False, True])
@pytest.mark.parametrize("case", sorted(CASES))
def test_graph_step_equals_eager(model_dir, case, overlap):
    params = CASES[case]
    with make_llm(model_dir, graphs=False, overlap=overlap) as llm:
        eager = run(llm, params)
    with make_llm(model_dir, graphs=True, overlap=overlap) as llm:
        graphs = run(llm, params)
        graphs_used = llm.core.executor.graphs.steps_run
        by_mode = llm.core.executor.graphs.steps_by_mode
    # Every decode step (11; overlap may launch one more), page-boundary GDN snapshots included.
    assert graphs_used >= 11
    if case == "top_k":  # the truncated sampling ran inside the step
        assert by_mode[2] >= 11, by_mode
    assert graphs == eager
    assert all(len(t) == 12 for t in graphs)


def test_greedy_or_temperature_is_sample():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 50, generator=gen) * 3
    temperature = torch.tensor([0.0, 0.5, 1.0, 2.0, 0.0, 1.0])
    noise = torch.empty(6, 50).exponential_(generator=torch.Generator().manual_seed(1))
    ones = torch.ones(6)
    batch = SampleBatch(
        temperature=temperature, top_p=ones, top_k=torch.zeros(6, dtype=torch.long),
        min_p=torch.zeros(6), presence=torch.zeros(6), frequency=torch.zeros(6),
        repetition=ones, seeds=[-1] * 6, positions=[0] * 6, use_min_p=False, use_top_k_p=False,
    )  # fmt: skip
    expected = sample(logits, batch, torch.Generator().manual_seed(1)).tokens
    assert torch.equal(greedy_or_temperature(logits, temperature, noise), expected)
    assert torch.equal(greedy_or_temperature(logits, temperature, None), logits.argmax(-1))
    # Sampled rows really sample: not all of them equal the argmax over 50 tokens.
    assert not torch.equal(expected[[1, 2, 3, 5]], logits.argmax(-1)[[1, 2, 3, 5]])


def test_truncated_graph_sampling_is_sample():
    # Rows with 1 <= top_k <= TOP_K_CAP (with top-p / min-p on top) sample from the TOP_K_CAP
    # candidates; untruncated and greedy rows as before: every row equals the eager sampler's
    # token for the same noise, over many random draws.
    rows, vocab = 8, 300
    top_k = torch.tensor([1, 5, 20, TOP_K_CAP, 0, 3, 40, 0])
    top_p = torch.tensor([1.0, 0.9, 0.95, 0.5, 1.0, 1.0, 0.99, 1.0])
    min_p = torch.tensor([0.0, 0.0, 0.05, 0.0, 0.0, 0.3, 0.01, 0.0])
    temperature = torch.tensor([1.0, 0.7, 0.6, 1.5, 1.0, 1.0, 2.0, 0.0])
    batch = SampleBatch(
        temperature=temperature, top_p=top_p, top_k=top_k, min_p=min_p,
        presence=torch.zeros(rows), frequency=torch.zeros(rows), repetition=torch.ones(rows),
        seeds=[-1] * rows, positions=[0] * rows,
    )  # fmt: skip
    differs = torch.zeros(rows, dtype=torch.bool)
    for draw in range(200):
        logits = torch.randn(rows, vocab, generator=torch.Generator().manual_seed(draw)) * 2
        noise = torch.empty(rows, vocab).exponential_(generator=torch.Generator().manual_seed(draw))
        expected = sample(logits, batch, torch.Generator().manual_seed(draw)).tokens
        got = greedy_or_temperature(logits, temperature, noise, (top_k, top_p, min_p))
        assert torch.equal(got, expected), (draw, got, expected)
        differs |= got != logits.argmax(-1)
    assert differs[[1, 2, 3, 4, 6]].all()  # those rows really sample
    assert not differs[[0, 7]].any()  # top_k 1 and greedy are the argmax


def test_snapshots_taken_in_graph_steps_serve_later_prefix_hits(model_dir):
    """A's decode crosses page boundaries (GDN snapshots written by graph steps); B's prompt is
    A's whole sequence, so B starts from those snapshots: its greedy output must equal B's
    output with caching off (everything recomputed)."""
    greedy = SamplingParams(temperature=0.0, max_tokens=40, ignore_eos=True)
    prompt = PROMPTS[1]
    with make_llm(model_dir, graphs=True, overlap=True) as llm:
        a = llm.generate(prompt_token_ids=[prompt], sampling_params=greedy)[0].outputs[0]
        follow = prompt + list(a.token_ids)
        b = llm.generate(prompt_token_ids=[follow], sampling_params=greedy)[0]
        assert b.num_cached_tokens >= len(follow) - PAGE  # the hit reached into A's output
        cached_run = list(b.outputs[0].token_ids)
    with make_llm(model_dir, graphs=False, overlap=False) as llm:  # a new, empty cache
        fresh = llm.generate(prompt_token_ids=[follow], sampling_params=greedy)[0]
    assert cached_run == list(fresh.outputs[0].token_ids)
