"""Batch description, caches and weight hand-over: layouts and every error they raise."""

from __future__ import annotations

import dataclasses
import re

import hf_fixtures as fx
import pytest
import torch
from tokenspeed.config import ModelConfig
from tokenspeed.models import PagedKVCache, Qwen3_5Model, SequenceChunk, StateCache, build_batch
from tokenspeed.weights import WeightError, dummy_weights


@pytest.fixture(scope="module")
def cfg() -> ModelConfig:
    return ModelConfig.from_hf_dict(fx.build("next").config.to_dict())


def chunk(tokens: int, prefix: int = 0, pages: list[int] | None = None, **kw) -> SequenceChunk:
    return SequenceChunk(
        tokens=list(range(tokens)),
        prefix_len=prefix,
        pages=[1, 2, 3] if pages is None else pages,
        slot=1,
        has_initial_state=prefix > 0,
        **kw,
    )


def test_build_batch_layout_and_kv_indices() -> None:
    batch = build_batch(
        [chunk(3, prefix=14, pages=[7, 2]), chunk(1, prefix=4, pages=[5], all_logits=True)],
        page_size=16,
        device="cpu",
    )
    assert batch.cu_seqlens.tolist() == [0, 3, 4]
    assert batch.positions.tolist() == [14, 15, 16, 4]
    assert batch.page_table.tolist() == [[7, 2], [5, 0]]
    assert batch.logits_indices.tolist() == [2, 3]  # last token of seq 0, all (1) of seq 1
    assert batch.max_seqlen == 3 and not batch.is_decode
    assert batch.checkpoint_slots is None
    # positions 14, 15 on page 7 rows 14, 15; position 16 on page 2 row 0; position 4 on page 5
    assert batch.kv_indices(16).tolist() == [7 * 16 + 14, 7 * 16 + 15, 2 * 16, 5 * 16 + 4]


@pytest.mark.parametrize(
    ("chunks", "message"),
    [
        ([], "empty batch"),
        ([chunk(0)], "no new tokens"),
        ([chunk(10, prefix=30, pages=[1, 2])], "page_table: sequence 0 holds 30\\+10 tokens"),
        ([chunk(3, pages=[0])], "needs 1 real pages"),
        ([chunk(3, checkpoint_slot=4, checkpoint_offset=5)], "offset 5 outside \\[0, 3\\]"),
    ],
)
def test_build_batch_rejects_bad_sequences(chunks: list[SequenceChunk], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_batch(chunks, page_size=16, device="cpu")


def test_validate_names_the_field() -> None:
    batch = build_batch([chunk(3), chunk(2)], page_size=16, device="cpu")
    bad = {
        "max_seqlen": 1,
        "positions": batch.positions[:2],
        "cu_seqlens": torch.tensor([0, 3, 4], dtype=torch.int32),
        "logits_indices": torch.tensor([5]),
        "checkpoint_slots": torch.tensor([1, -1]),
    }
    for field, value in bad.items():
        with pytest.raises(ValueError, match=field):
            dataclasses.replace(batch, **{field: value}).validate(16)


def test_cache_shapes_dtypes_and_copy(cfg: ModelConfig) -> None:
    kv = PagedKVCache(cfg, num_pages=5, page_size=16, dtype=torch.bfloat16, device="cpu")
    assert len(kv.k) == len(kv.v) == cfg.num_attention_layers
    assert kv.k[0].shape == (5, 16, cfg.num_key_value_heads, cfg.head_dim)
    assert kv.k[0].dtype == torch.bfloat16
    state = StateCache(cfg, num_slots=4, dtype=torch.bfloat16, device="cpu")
    assert len(state.conv) == len(state.ssm) == cfg.num_linear_layers
    assert state.conv[0].shape == (4, cfg.conv_dim, cfg.linear_conv_kernel_dim - 1)
    assert state.conv[0].dtype == torch.bfloat16
    hv, dk, dv = cfg.linear_num_value_heads, cfg.linear_key_head_dim, cfg.linear_value_head_dim
    assert state.ssm[0].shape == (4, hv, dk, dv) and state.ssm[0].dtype == torch.float32
    for t in [*state.conv, *state.ssm]:
        t[2].normal_()
    state.copy_slots(torch.tensor([2]), torch.tensor([3]))
    assert all(torch.equal(t[3], t[2]) for t in [*state.conv, *state.ssm])
    per_slot = sum(t[0].numel() * t.element_size() for t in [*state.conv, *state.ssm])
    assert StateCache.bytes_per_slot(cfg, torch.bfloat16) == per_slot
    per_page = sum(t[0].numel() * t.element_size() for t in [*kv.k, *kv.v])
    assert PagedKVCache.bytes_per_page(cfg, 16, torch.bfloat16) == per_page
    with pytest.raises(ValueError, match="num_pages=1"):
        PagedKVCache(cfg, num_pages=1, page_size=16, dtype=torch.float32, device="cpu")
    with pytest.raises(ValueError, match="num_slots=1"):
        StateCache(cfg, num_slots=1, dtype=torch.float32, device="cpu")


def test_model_rejects_weights_that_do_not_fit(cfg: ModelConfig) -> None:
    weights = dummy_weights(cfg, torch.float32, "cpu")
    missing = dict(weights)
    del missing["layers.1.mlp.experts.down_proj"]
    with pytest.raises(
        WeightError, match=re.escape("missing tensor layers.1.mlp.experts.down_proj")
    ):
        Qwen3_5Model(cfg, missing)
    extra = {**weights, "layers.0.mlp.bias": torch.zeros(3)}
    with pytest.raises(WeightError, match=re.escape("unexpected tensor layers.0.mlp.bias")):
        Qwen3_5Model(cfg, extra)
    shaped = {**weights, "norm.weight": torch.zeros(cfg.hidden_size + 1)}
    with pytest.raises(WeightError, match=re.escape("norm.weight: shape")):
        Qwen3_5Model(cfg, shaped)


def test_dummy_weights_run_and_bf16_decode_matches_prefill(cfg: ModelConfig) -> None:
    """A bf16 model built from dummy weights: the recurrent (decode) and chunked (prefill) GDN
    paths agree at bf16 precision, and logits are finite."""
    model = Qwen3_5Model(cfg, dummy_weights(cfg, torch.bfloat16, "cpu", seed=1))
    tokens = torch.randint(0, cfg.vocab_size, (20,), generator=torch.Generator().manual_seed(0))
    full = model.logits(tokens).float()
    assert full.dtype == torch.float32 and torch.isfinite(full).all()
    kv, state = model.new_kv_cache(4, 16), model.new_state_cache(2)
    steps = [model.forward(build_batch([chunk_of(tokens, 0, 12)], 16, "cpu"), kv, state)]
    for i in range(12, 20):
        steps.append(model.forward(build_batch([chunk_of(tokens, i, 1)], 16, "cpu"), kv, state))
    stepped = torch.cat(steps).float()
    scale = full[[11, *range(12, 20)]].abs().max()
    assert (stepped - full[[11, *range(12, 20)]]).abs().max() <= 0.05 * scale


def chunk_of(tokens: torch.Tensor, start: int, n: int) -> SequenceChunk:
    return SequenceChunk(
        tokens=tokens[start : start + n].tolist(),
        prefix_len=start,
        pages=[1, 2],
        slot=1,
        has_initial_state=start > 0,
    )
