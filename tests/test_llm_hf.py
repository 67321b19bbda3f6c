"""``LLM.generate`` against Hugging Face ``generate`` (fp32, CPU): greedy tokens identical and
logprobs within 2e-3, for a batch of prompts of lengths 1..300, on the dense, MoE, Qwen3-Next
and VLM-wrapper fixtures. The engine runs with small pages, chunked prefill and overlap so the
batch really mixes prefill chunks and decodes.

The reference is greedy decoding with a full HF forward per step: ``generate`` with its cache
continues wrongly after some prompt lengths in transformers' torch fallback of the GDN
kernels (e.g. 129 tokens: the step after the prompt differs from HF's own full forward by
0.27 in the logits), so the cached path is not a reference."""

from __future__ import annotations

import hf_fixtures as fx
import pytest
import torch
from tokenspeed import LLM, SamplingParams

LOGPROB_TOL = 2e-3
PROMPT_LENS = (1, 2, 15, 16, 17, 64, 129, 300)
NEW_TOKENS = 6
FIXTURES = {  # fixture -> checkpoint layout
    "dense": {},
    "moe": {"shard_bytes": 100_000},
    "next": {"per_expert": True},
    "vlm": {},
}


@torch.no_grad()
def hf_greedy(hf, prompt: list[int]) -> tuple[list[int], torch.Tensor]:
    """Greedy decoding with full HF forwards (no cache), and each step's log-softmax."""
    tokens = list(prompt)
    steps = []
    for _ in range(NEW_TOKENS):
        logits = fx.hf_logits(hf, torch.tensor(tokens))[-1].float()
        steps.append(torch.log_softmax(logits, dim=-1))
        tokens.append(int(logits.argmax()))
    return tokens[len(prompt) :], torch.stack(steps)


@pytest.mark.parametrize("name", list(FIXTURES))
def test_greedy_tokens_and_logprobs_match_hf(name, tmp_path):
    hf = fx.build(name, seed=2)
    path = fx.save_checkpoint(hf, tmp_path / name, **FIXTURES[name])
    vocab = hf.config.get_text_config().vocab_size
    prompts = [fx.random_tokens(n, vocab, seed=n).tolist() for n in PROMPT_LENS]
    params = SamplingParams(temperature=0.0, max_tokens=NEW_TOKENS, ignore_eos=True, logprobs=3)
    with LLM(path, page_size=16, chunked_prefill_size=128, max_num_seqs=8) as llm:
        outputs = llm.generate(prompt_token_ids=prompts, sampling_params=params)
        llm.check_integrity()
    for prompt, result in zip(prompts, outputs, strict=True):
        want_tokens, want_logprobs = hf_greedy(hf, prompt)
        got = result.outputs[0]
        assert result.prompt_token_ids == prompt
        assert got.token_ids == want_tokens, f"prompt length {len(prompt)}"
        assert got.finish_reason == "length"
        assert got.logprobs is not None and len(got.logprobs) == NEW_TOKENS
        for step, (token, entry) in enumerate(zip(got.token_ids, got.logprobs, strict=True)):
            want = want_logprobs[step]
            top = want.topk(3).indices.tolist()
            assert set(top) <= set(entry), f"top-3 ids {top} missing from {sorted(entry)}"
            for tid, lp in entry.items():
                err = abs(lp - want[tid].item())
                assert err <= LOGPROB_TOL, f"len {len(prompt)} step {step} token {tid}: {err:.3g}"
            assert token == top[0]
