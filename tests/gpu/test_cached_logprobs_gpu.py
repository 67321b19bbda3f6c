"""Logprobs served from the cache, chunked prefill and decode graphs against one uncached eager
forward (qwen3.5-0.8b, 4 layers, bf16, dummy weights).

One fixed token sequence is served twice by an engine with prefix caching, 128-token prefill
chunks and decode CUDA graphs. The first request (the sequence's first 200 tokens) publishes
the prefix with its KV pages and GDN checkpoints. The second (the whole sequence, logprobs
asked) resumes from the cache, prefills the rest in chunks and decodes from graphs. Every
generated token's logprob must match, within bf16 tolerance, the same position's logprob in
one uncached eager forward over the prompt and the generated tokens; and every chosen token
must be the recompute's argmax up to that tolerance (greedy).
"""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.gpu
if not torch.cuda.is_available():
    pytest.skip("needs CUDA", allow_module_level=True)

from tokenspeed import LLM, SamplingParams  # noqa: E402

PAGE, PROMPT, SHARED, NEW = 64, 330, 200, 24
TOL = 0.15  # logprob: bf16 logits of a 4-layer model, rounded differently per batch shape


def test_cached_chunked_graph_logprobs_match_uncached_recompute() -> None:
    g = torch.Generator().manual_seed(21)
    prompt = torch.randint(0, 1000, (PROMPT,), generator=g).tolist()
    llm = LLM(
        "qwen3.5-0.8b", load_format="dummy", num_layers=4, dtype="bfloat16", page_size=PAGE,
        max_num_seqs=4, max_model_len=1024, chunked_prefill_size=128,
        enable_prefix_caching=True, gpu_memory_utilization=0.3,
    )  # fmt: skip
    try:
        graphs = llm.core.executor.graphs
        assert graphs is not None
        first = SamplingParams(max_tokens=1, temperature=0.0)
        llm.generate(prompt_token_ids=[prompt[:SHARED]], sampling_params=first)
        replayed = graphs.steps_run
        params = SamplingParams(max_tokens=NEW, temperature=0.0, ignore_eos=True, logprobs=0)
        out = llm.generate(prompt_token_ids=[prompt], sampling_params=params)[0]
        llm.check_integrity()
        # The paths under test were taken: a cached prefix, then graph decode steps.
        assert out.num_cached_tokens >= 128 and out.num_cached_tokens % PAGE == 0
        assert graphs.steps_run - replayed >= NEW - 2
        tokens = list(out.outputs[0].token_ids)
        served_logprobs = out.outputs[0].logprobs
        assert len(tokens) == NEW and served_logprobs is not None
        got = torch.tensor([entry[t] for entry, t in zip(served_logprobs, tokens, strict=True)])
        recompute = llm.core.model.logits(torch.tensor(prompt + tokens)).float().log_softmax(-1)
        rows = recompute[PROMPT - 1 : -1].cpu()
        want = rows.gather(1, torch.tensor(tokens)[:, None])[:, 0]
        diff = (got - want).abs().max().item()
        gap = (rows.max(-1).values - want).max().item()
        print(f"served vs recomputed logprob: max |diff| {diff:.4f}; worst argmax gap {gap:.4f}")
        assert diff <= TOL
        assert gap <= TOL
    finally:
        llm.shutdown()
