"""Decode CUDA graphs on the GPU (qwen3.5-0.8b, 4 layers, bf16, dummy weights).

1. The captured step is faithful: replaying the graph for 5 sequences (padded to 8) gives
   bitwise the logits of the eager forward on the same padded batch, writes the real rows' KV
   and state exactly as that forward does, and the padding rows touch only page 0 / slot 0.
2. Against the unpadded eager batch of 5 the logits differ only by bf16 rounding (a GEMM of 8
   rows is not bitwise a GEMM of 5): this, not a wrong cache write, is why greedy outputs of
   the two paths may part at a near-tie.
3. End to end: every token the engine picks greedily, with graphs or without, is the argmax of
   a full uncached eager recompute up to bf16 noise (TOL in logprob), and where the two paths'
   outputs part, the two candidates are within TOL of each other.
"""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.gpu
if not torch.cuda.is_available():
    pytest.skip("needs CUDA", allow_module_level=True)

import numpy as np  # noqa: E402
from tokenspeed import LLM, SamplingParams  # noqa: E402
from tokenspeed.executor.cuda_graphs import DecodeGraphs, DecodeStep  # noqa: E402
from tokenspeed.executor.executor import use_triton_kernels  # noqa: E402
from tokenspeed.models import Qwen3_5Model, SequenceChunk, build_batch  # noqa: E402
from tokenspeed.presets import preset_config  # noqa: E402
from tokenspeed.weights.dummy import dummy_weights  # noqa: E402

PAGE, MAX_PAGES = 64, 9
TOL = 0.15  # logprob: bf16 logits (~8 bits) of a 4-layer model, rounded differently per shape


@pytest.fixture(scope="module")
def model() -> Qwen3_5Model:
    use_triton_kernels()
    cfg = preset_config("qwen3.5-0.8b", 4)
    return Qwen3_5Model(cfg, dummy_weights(cfg, torch.bfloat16, "cuda"))


def _prefilled(model: Qwen3_5Model, lens: list[int]):
    kv, state = model.new_kv_cache(1 + 2 * len(lens), PAGE), model.new_state_cache(1 + len(lens))
    g = torch.Generator().manual_seed(0)
    chunks = [
        SequenceChunk(
            tokens=torch.randint(0, 1000, (n,), generator=g).tolist(), prefix_len=0,
            pages=[1 + 2 * b, 2 + 2 * b], slot=1 + b, has_initial_state=False,
        )
        for b, n in enumerate(lens)
    ]  # fmt: skip
    model.forward(build_batch(chunks, PAGE, "cuda"), kv, state)
    return kv, state


def _caches(kv, state) -> list[torch.Tensor]:
    return [t.clone() for t in (*kv.k, *kv.v, *state.conv, *state.ssm)]


def test_graph_step_is_the_padded_eager_step(model):
    lens = [17, 26, 35, 44, 53]
    n, bs = len(lens), 8
    kv, state = _prefilled(model, lens)
    before = _caches(kv, state)
    token_buf = torch.zeros(16, dtype=torch.int64, device="cuda")
    graphs = DecodeGraphs(model, kv, state, token_buf, max_num_seqs=8, max_pages=MAX_PAGES)
    # The graphs' warm-up wrote only the dummies: restore them to compare the step itself.
    for t, b in zip(_caches(kv, state), before, strict=True):
        assert torch.equal(t[1:], b[1:])
    ids = np.array([5, 6, 7, 8, 9])
    table = np.array([[1 + 2 * b, 2 + 2 * b] for b in range(n)])
    step = DecodeStep(
        input_ids=ids, prev_src=np.full(n, -1), positions=np.array(lens),
        prefix_lens=np.array(lens), slot_ids=np.arange(1, n + 1), has_initial=np.ones(n, bool),
        page_table=table, checkpoint_slots=None, checkpoint_offsets=None, temperature=None,
        seeds=[-1] * n, sample_positions=[0] * n,
    )  # fmt: skip
    logits_g, tokens_g = graphs.run(step, None)
    after_graph = _caches(kv, state)

    def eager(rows: int, width: int) -> torch.Tensor:
        for t, b in zip([*kv.k, *kv.v, *state.conv, *state.ssm], before, strict=True):
            t.copy_(b)
        chunks = [
            SequenceChunk(tokens=[int(ids[b])], prefix_len=lens[b], slot=1 + b,
                          pages=[*table[b].tolist(), *[0] * (width - 2)], has_initial_state=True)
            for b in range(n)
        ] + [
            SequenceChunk(tokens=[0], prefix_len=0, pages=[0] * width, slot=0,
                          has_initial_state=True)
            for _ in range(rows - n)
        ]  # fmt: skip
        fb = build_batch(chunks, PAGE, "cuda") if rows == n else _unchecked(chunks)
        return model.forward(fb, kv, state)

    logits_e8 = eager(bs, MAX_PAGES)[:n]
    after_e8 = _caches(kv, state)
    assert torch.equal(logits_g, logits_e8)
    assert torch.equal(tokens_g, logits_e8.float().argmax(-1))
    for g, e, b in zip(after_graph, after_e8, before, strict=True):
        assert torch.equal(g[1:], e[1:])  # real rows exactly as the eager step writes them
        written = (g != b).flatten(1).any(1).nonzero().flatten().tolist()
        assert set(written) <= {0, *range(1, 2 * n + 1)}  # pages/slots of the batch, dummy 0
    logits_e5 = eager(n, 2)
    diff = (logits_g.float() - logits_e5.float()).abs().max().item()
    scale = logits_e5.float().abs().max().item()
    print(f"graph (8 rows) vs eager (5 rows): max |logit diff| {diff:.4f} of max |logit| {scale}")
    assert diff <= 0.02 * scale  # bf16 rounding, not a different computation


def _unchecked(chunks: list[SequenceChunk]):
    """``build_batch`` without validation: padding rows point at page 0 on purpose."""
    from tokenspeed.models.batch import ForwardBatch

    def t(v, dt):
        return torch.tensor(v, dtype=dt, device="cuda")

    n = len(chunks)
    return ForwardBatch(
        input_ids=t([c.tokens[0] for c in chunks], torch.int64),
        positions=t([c.prefix_len for c in chunks], torch.int64),
        cu_seqlens=t(list(range(n + 1)), torch.int32),
        prefix_lens=t([c.prefix_len for c in chunks], torch.int32),
        page_table=t([c.pages for c in chunks], torch.int32),
        slot_ids=t([c.slot for c in chunks], torch.int64),
        has_initial_state=t([True] * n, torch.bool),
        logits_indices=t(list(range(n)), torch.int64),
        max_seqlen=1,
    )


def _generate(enforce_eager: bool, prompts: list[list[int]]) -> tuple[LLM, list[list[int]]]:
    llm = LLM(
        "qwen3.5-0.8b", load_format="dummy", num_layers=4, dtype="bfloat16",
        max_num_seqs=8, max_model_len=512, gpu_memory_utilization=0.3,
        enforce_eager=enforce_eager,
    )  # fmt: skip
    graphs = llm.core.executor.graphs
    assert (graphs is None) == enforce_eager
    # Every kind (greedy / temperature, with / without a state snapshot) per size is captured
    # at start-up: capturing on first use would stall a live step.
    captured = None if graphs is None else dict(graphs.graphs)
    if graphs is not None:
        assert set(captured) == {(s, t, c) for s in graphs.sizes for t in (0, 1, 2) for c in (0, 1)}
    params = SamplingParams(max_tokens=24, ignore_eos=True, temperature=0.0)
    outs = llm.generate(prompt_token_ids=prompts, sampling_params=params)
    if graphs is not None:
        assert graphs.steps_run >= 20  # the decode steps replayed graphs
        assert graphs.graphs == captured  # nothing captured while serving
    return llm, [list(o.outputs[0].token_ids) for o in outs]


@pytest.mark.parametrize("batch", [1, 3, 5, 8])
def test_greedy_tokens_are_argmax_of_uncached_recompute(batch: int) -> None:
    g = torch.Generator().manual_seed(batch)
    prompts = [torch.randint(0, 1000, (17 + 9 * i,), generator=g).tolist() for i in range(batch)]
    llm, eager = _generate(True, prompts)
    llm.shutdown()
    llm, graphs = _generate(False, prompts)
    model = llm.core.model
    worst = 0.0
    for prompt, e, gr in zip(prompts, eager, graphs, strict=True):
        for out in (e, gr):
            lp = model.logits(torch.tensor(prompt + out)).float().log_softmax(-1)
            rows = lp[len(prompt) - 1 : -1]
            gap = (
                rows.max(-1).values
                - rows.gather(1, torch.tensor(out, device="cuda")[:, None])[:, 0]
            )
            worst = max(worst, gap.max().item())
        if e != gr:
            j = next(i for i, (a, b) in enumerate(zip(e, gr, strict=True)) if a != b)
            lp = model.logits(torch.tensor(prompt + e[:j])).float().log_softmax(-1)[-1]
            tie = abs(lp[e[j]].item() - lp[gr[j]].item())
            print(f"batch {batch}: parted at token {j}: candidates {tie:.4f} apart in logprob")
            assert tie <= TOL
    llm.shutdown()
    print(f"batch {batch}: worst gap between a chosen token and the recompute's argmax {worst:.4f}")
    assert worst <= TOL


def test_logit_bias_row_samples_eagerly_beside_a_greedy_row() -> None:
    # A biased row makes the step sample outside the graph (after its captured forward): the
    # biased request is forced, the plain one stays the recompute's argmax.
    g = torch.Generator().manual_seed(11)
    prompts = [torch.randint(0, 1000, (21 + 7 * i,), generator=g).tolist() for i in range(2)]
    llm = LLM(
        "qwen3.5-0.8b", load_format="dummy", num_layers=4, dtype="bfloat16",
        max_num_seqs=8, max_model_len=512, gpu_memory_utilization=0.3,
    )  # fmt: skip
    plain = SamplingParams(max_tokens=16, ignore_eos=True, temperature=0.0)
    forced = SamplingParams(max_tokens=16, ignore_eos=True, temperature=0.0, logit_bias={777: 100})
    outs = llm.generate(prompt_token_ids=prompts, sampling_params=[forced, plain])
    assert llm.core.executor.graphs.steps_run >= 14
    assert list(outs[0].outputs[0].token_ids) == [777] * 16
    out = list(outs[1].outputs[0].token_ids)
    lp = llm.core.model.logits(torch.tensor(prompts[1] + out)).float().log_softmax(-1)
    rows = lp[len(prompts[1]) - 1 : -1]
    chosen = rows.gather(1, torch.tensor(out, device="cuda")[:, None])[:, 0]
    assert (rows.max(-1).values - chosen).max().item() <= TOL
    llm.shutdown()
