"""Sampling: the penalty formulas against a per-token transcription of vLLM's definition, the
sampler's frequencies against the softmax of reference logits (fixed seeds), top-k / top-p /
min-p supports, and end to end: seeds reproduce, temperature 0 and top_k=1 equal greedy,
penalties steer greedy decoding exactly like HF logits + the vLLM formulas, min_tokens and
stop ids."""

from __future__ import annotations

import hf_fixtures as fx
import pytest
import torch
from tokenspeed import LLM, SamplingParams
from tokenspeed.sampling import SampleBatch, apply_penalties, sample

VOCAB = 320


def reference_penalties(logits, prompt, output, presence, frequency, repetition):
    """vLLM's definition, one token at a time."""
    out = logits.clone()
    for t in range(out.shape[0]):
        count = output.count(t)
        if t in prompt or count:
            out[t] = out[t] / repetition if out[t] > 0 else out[t] * repetition
        out[t] -= frequency * count + presence * (count > 0)
    return out


def test_penalties_follow_vllm_definition():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 40, generator=gen) * 3
    prompts = [[1, 2, 3, 5], [], [7, 7, 8]]
    outputs = [[2, 2, 9, 30], [4, 4, 4], []]
    pres, freq, rep = [0.5, -1.0, 0.0], [0.3, 0.7, 1.2], [1.3, 0.8, 2.0]
    mask = torch.zeros(3, 40, dtype=torch.bool)
    counts = torch.zeros(3, 40)
    for r in range(3):
        mask[r, prompts[r]] = True
        for t in outputs[r]:
            counts[r, t] += 1
    got = apply_penalties(
        logits, mask, counts, torch.tensor(pres), torch.tensor(freq), torch.tensor(rep)
    )
    for r in range(3):
        want = reference_penalties(logits[r], prompts[r], outputs[r], pres[r], freq[r], rep[r])
        torch.testing.assert_close(got[r], want, rtol=0, atol=1e-6)


def batch_of(rows: int, **fields) -> SampleBatch:
    def col(name, default, dtype=torch.float32):
        return torch.full((rows,), fields.get(name, default), dtype=dtype)

    return SampleBatch(
        temperature=col("temperature", 1.0), top_p=col("top_p", 1.0),
        top_k=col("top_k", 0, torch.int64), min_p=col("min_p", 0.0),
        presence=col("presence", 0.0), frequency=col("frequency", 0.0),
        repetition=col("repetition", 1.0), seeds=fields.get("seeds", [-1] * rows),
        positions=fields.get("positions", [0] * rows), num_logprobs=-1,
    )  # fmt: skip


@pytest.fixture(scope="module")
def reference_logits():
    """Next-token logits of an HF fixture for a short prompt (a realistic, peaked shape)."""
    hf = fx.build("dense", seed=5)
    return fx.hf_logits(hf, fx.random_tokens(12, VOCAB, seed=1))[-1].float()


def test_sampled_frequencies_match_softmax(reference_logits):
    draws, temperature = 40_000, 0.7
    logits = reference_logits.expand(draws, -1)
    gen = torch.Generator().manual_seed(1234)
    tokens = sample(logits, batch_of(draws, temperature=temperature), gen).tokens
    freq = torch.bincount(tokens, minlength=VOCAB).float() / draws
    p = torch.softmax(reference_logits / temperature, dim=-1)
    sigma = (p * (1 - p) / draws).sqrt()
    assert ((freq - p).abs() <= 5 * sigma + 1e-4).all(), (freq - p).abs().max()
    assert p.max() < 0.9  # the test would be vacuous on a one-hot distribution


@pytest.mark.parametrize(("field", "value"), [("top_k", 5), ("top_p", 0.6), ("min_p", 0.2)])
def test_truncation_keeps_the_right_support(reference_logits, field, value):
    draws = 20_000
    gen = torch.Generator().manual_seed(7)
    batch = batch_of(draws, **{field: value})
    tokens = sample(reference_logits.expand(draws, -1), batch, gen).tokens
    p = torch.softmax(reference_logits, dim=-1)
    order = p.argsort(descending=True)
    if field == "top_k":
        keep = order[:value]
    elif field == "top_p":  # smallest prefix of the sorted probs whose mass reaches p
        n = int((p[order].cumsum(0) < value).sum()) + 1
        keep = order[:n]
    else:
        keep = (p >= value * p.max()).nonzero()[:, 0]
    assert set(tokens.unique().tolist()) <= set(keep.tolist())
    renorm = torch.zeros_like(p)
    renorm[keep] = p[keep] / p[keep].sum()
    freq = torch.bincount(tokens, minlength=VOCAB).float() / draws
    sigma = (renorm * (1 - renorm) / draws).sqrt()
    assert ((freq - renorm).abs() <= 5 * sigma + 1e-4).all()


# ---- end to end ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hf_and_llm(tmp_path_factory):
    hf = fx.build("dense", seed=5)
    path = fx.save_checkpoint(hf, tmp_path_factory.mktemp("dense"))
    llm = LLM(path, page_size=16, max_num_seqs=64, kv_cache_pages=600, state_slots=200)
    yield hf, llm
    llm.shutdown()


def tokens_of(llm, prompts, params):
    return [
        o.outputs[0].token_ids
        for o in llm.generate(prompt_token_ids=prompts, sampling_params=params)
    ]


PROMPTS = [fx.random_tokens(n, VOCAB, seed=n).tolist() for n in (5, 18, 33)]


def test_seed_reproduces_and_greedy_equivalents(hf_and_llm):
    _, llm = hf_and_llm
    greedy = tokens_of(llm, PROMPTS, SamplingParams(temperature=0, max_tokens=12, ignore_eos=True))
    top1 = tokens_of(llm, PROMPTS, SamplingParams(top_k=1, max_tokens=12, ignore_eos=True))
    assert top1 == greedy
    seeded = [
        SamplingParams(temperature=1.0, seed=s, max_tokens=12, ignore_eos=True)
        for s in (11, 12, 13)
    ]
    first = tokens_of(llm, PROMPTS, seeded)
    # Same seeds in another batch composition (reversed, with extra requests in between).
    extra = SamplingParams(temperature=1.0, max_tokens=12, ignore_eos=True)
    again = tokens_of(llm, PROMPTS[::-1] + PROMPTS, seeded[::-1] + [extra] * 3)[:3][::-1]
    assert again == first
    assert first != greedy
    other_seed = tokens_of(
        llm, PROMPTS, [SamplingParams(temperature=1.0, seed=99, max_tokens=12, ignore_eos=True)] * 3
    )
    assert other_seed != first


def test_end_to_end_frequencies_match_softmax(hf_and_llm):
    hf, llm = hf_and_llm
    prompt = fx.random_tokens(9, VOCAB, seed=77).tolist()
    draws = 1200
    params = [SamplingParams(temperature=1.0, seed=s, max_tokens=1) for s in range(draws)]
    got = [t[0] for t in tokens_of(llm, [prompt] * draws, params)]
    p = torch.softmax(fx.hf_logits(hf, torch.tensor(prompt))[-1].float(), dim=-1)
    freq = torch.bincount(torch.tensor(got), minlength=VOCAB).float() / draws
    sigma = (p * (1 - p) / draws).sqrt()
    assert ((freq - p).abs() <= 5 * sigma + 2e-3).all(), (freq - p).abs().max()
    llm.check_integrity()


def test_penalties_steer_greedy_like_reference(hf_and_llm):
    hf, llm = hf_and_llm
    # The prompt repeats itself, so repetition-aware penalties have something to push against.
    prompt = fx.random_tokens(10, VOCAB, seed=3).tolist() * 3
    # Negative penalties and repetition < 1 pull seen tokens up: visible on a random model.
    knobs = dict(presence_penalty=-1.0, frequency_penalty=-0.5, repetition_penalty=0.6)
    params = SamplingParams(temperature=0, max_tokens=10, ignore_eos=True, **knobs)
    got = tokens_of(llm, [prompt], params)[0]
    out: list[int] = []
    for _ in range(10):
        logits = fx.hf_logits(hf, torch.tensor(prompt + out))[-1].float()
        logits = reference_penalties(logits, prompt, out, -1.0, -0.5, 0.6)
        out.append(int(logits.argmax()))
    assert got == out
    plain = tokens_of(llm, [prompt], SamplingParams(temperature=0, max_tokens=10, ignore_eos=True))[
        0
    ]
    assert plain != out  # the penalties mattered


def test_logit_bias_steers_greedy_like_reference(hf_and_llm):
    hf, llm = hf_and_llm
    prompt = fx.random_tokens(10, VOCAB, seed=5).tolist() * 2
    plain = tokens_of(llm, [prompt], SamplingParams(temperature=0, max_tokens=8, ignore_eos=True))
    # Push the plain path's first token down, a few others up (some enough to win sometimes),
    # with a repetition penalty so the order (bias, then penalties, as vLLM) matters too.
    bias = {plain[0][0]: -100.0, 11: 4.0, 200: 2.5, 317: 1.5}
    params = SamplingParams(
        temperature=0, max_tokens=8, ignore_eos=True, logit_bias=bias, repetition_penalty=0.7
    )
    got = tokens_of(llm, [prompt], params)[0]
    out: list[int] = []
    for _ in range(8):
        logits = fx.hf_logits(hf, torch.tensor(prompt + out))[-1].float()
        for token, value in bias.items():
            logits[token] += value
        logits = reference_penalties(logits, prompt, out, 0.0, 0.0, 0.7)
        out.append(int(logits.argmax()))
    assert got == out
    assert plain[0][0] not in got and got != plain[0]
    with pytest.raises(ValueError, match="logit_bias"):
        SamplingParams(logit_bias={3: 101.0})
    with pytest.raises(ValueError, match="outside the vocabulary"):
        llm.generate(
            prompt_token_ids=[prompt], sampling_params=SamplingParams(logit_bias={VOCAB: 1})
        )


def test_min_tokens_and_stop_token_ids(hf_and_llm):
    _, llm = hf_and_llm
    prompt = PROMPTS[1]
    greedy = tokens_of(
        llm, [prompt], SamplingParams(temperature=0, max_tokens=12, ignore_eos=True)
    )[0]
    stop = greedy[4]
    first_stop = greedy.index(stop)
    res = llm.generate(
        prompt_token_ids=[prompt],
        sampling_params=SamplingParams(temperature=0, max_tokens=12, stop_token_ids=[stop]),
    )[0].outputs[0]
    assert res.token_ids == greedy[: first_stop + 1]
    assert (res.finish_reason, res.stop_reason) == ("stop", stop)
    # min_tokens masks the stop token until that many tokens were generated.
    res = llm.generate(
        prompt_token_ids=[prompt],
        sampling_params=SamplingParams(
            temperature=0, max_tokens=12, stop_token_ids=[stop], min_tokens=first_stop + 2
        ),
    )[0].outputs[0]
    assert stop not in res.token_ids[: first_stop + 2]
    assert res.token_ids[:first_stop] == greedy[:first_stop]
