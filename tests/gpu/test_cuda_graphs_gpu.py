"""Decode CUDA graphs: greedy outputs with graphs equal the eager path's, token for token,
at batch sizes that replay a captured size exactly (1, 4) and ones that need padding (3, 5)."""

from __future__ import annotations

import pytest
import torch
from tokenspeed import LLM, SamplingParams

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _generate(enforce_eager: bool, prompts: list[list[int]]) -> list[list[int]]:
    llm = LLM(
        "qwen3.5-0.8b", load_format="dummy", num_layers=4, dtype="bfloat16",
        max_num_seqs=8, max_model_len=512, gpu_memory_utilization=0.3,
        enforce_eager=enforce_eager,
    )  # fmt: skip
    assert (llm.core.executor.graphs is None) == enforce_eager
    params = SamplingParams(max_tokens=24, ignore_eos=True, temperature=0.0)
    outs = [
        o.outputs[0].token_ids
        for o in llm.generate(prompt_token_ids=prompts, sampling_params=params)
    ]
    del llm
    torch.cuda.empty_cache()
    return [list(t) for t in outs]


@pytest.mark.parametrize("batch", [1, 3, 4, 5])
def test_graph_decode_matches_eager(batch: int) -> None:
    g = torch.Generator().manual_seed(batch)
    prompts = [torch.randint(0, 1000, (17 + 9 * i,), generator=g).tolist() for i in range(batch)]
    eager = _generate(True, prompts)
    graphs = _generate(False, prompts)
    assert graphs == eager
    assert all(len(t) == 24 for t in graphs)
