"""The engine model against Hugging Face transformers, in fp32 on CPU (max |Δ logit| <= 1e-3).

Every fixture of ``hf_fixtures`` (dense / tied / explicit layer types / MoE / Qwen3-Next with
mixed dense and MoE layers / both VLM wrappers) is written as a checkpoint (single file,
sharded, fused or per-expert experts) and loaded with ``load_model``. The same logits must
come out for the whole sequence at once; for prefill + 1-token decode steps; for several
chunks resumed from the cached state; for packed batches mixing prefill chunks and decode
tokens; and after resuming from a state checkpoint. Caches start filled with NaN so any read
of a slot or page that should not be read poisons the logits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import hf_fixtures as fx
import pytest
import torch
from tokenspeed.config import ModelConfig
from tokenspeed.models import Qwen3_5Model, SequenceChunk, build_batch, load_model

TOL = 1e-3
PAGE = 16
LAYOUTS: dict[str, dict] = {  # fixture -> how its checkpoint is written
    "dense": {},
    "dense_tied": {"shard_bytes": 60_000},
    "dense_layer_types": {},
    "moe": {"shard_bytes": 100_000},  # fused experts, sharded
    "next": {"per_expert": True, "shard_bytes": 100_000},
    "vlm": {"shard_bytes": 80_000},
    "vlm_moe": {"per_expert": True},
}
NAMES = tuple(LAYOUTS)


class Pair:
    """An HF fixture, our model loaded from its checkpoint, and memoised HF logits."""

    def __init__(self, name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
        self.hf = fx.build(name, seed=1)
        path = fx.save_checkpoint(self.hf, tmp_path_factory.mktemp(name), **LAYOUTS[name])
        self.model = load_model(path, progress=False)
        self.vocab = self.hf.config.get_text_config().vocab_size
        self._memo: dict[tuple[int, ...], torch.Tensor] = {}

    def tokens(self, n: int, seed: int) -> torch.Tensor:
        return fx.random_tokens(n, self.vocab, seed=seed)

    def hf_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """HF logits of ``tokens``; a prefix of a memoised sequence is sliced (causal model)."""
        key = tuple(tokens.tolist())
        for seen, logits in self._memo.items():
            if seen[: len(key)] == key:
                return logits[: len(key)]
        self._memo[key] = fx.hf_logits(self.hf, tokens)
        return self._memo[key]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """name -> Pair, built on first use and shared by the module's tests."""
    cache: dict[str, Pair] = {}

    def get(name: str) -> Pair:
        if name not in cache:
            cache[name] = Pair(name, tmp_path_factory)
        return cache[name]

    return get


def assert_logits_close(got: torch.Tensor, want: torch.Tensor) -> None:
    assert got.shape == want.shape
    err = (got.float() - want.float()).abs().max().item()
    assert err <= TOL, f"max |Δ logit| = {err:.3g}"


# ---- a stand-in for the scheduler ----------------------------------------------------------
@dataclass
class Seq:
    tokens: torch.Tensor
    slot: int
    pages: list[int] = field(default_factory=list)
    done: int = 0  # tokens already in the caches
    logits: list[torch.Tensor] = field(default_factory=list)


class Harness:
    """Hands out pages (shuffled, never page 0) and runs steps; caches start as NaN."""

    def __init__(self, model: Qwen3_5Model, num_pages: int = 64, num_slots: int = 10) -> None:
        self.model = model
        self.device = model.device
        self.kv = model.new_kv_cache(num_pages, PAGE)
        self.state = model.new_state_cache(num_slots)
        for t in [*self.kv.k, *self.kv.v, *self.state.conv, *self.state.ssm]:
            t.fill_(float("nan"))
        self.free = (
            torch.randperm(num_pages - 1, generator=torch.Generator().manual_seed(0)) + 1
        ).tolist()

    def step(
        self, work: list[tuple[Seq, int]], checkpoints: dict[int, tuple[int, int]] | None = None
    ) -> None:
        """Run ``n`` new tokens of each ``(seq, n)``; ``checkpoints``: work index -> (slot, offset)."""
        chunks = []
        for i, (seq, n) in enumerate(work):
            need = -(-(seq.done + n) // PAGE) - len(seq.pages)
            seq.pages += [self.free.pop() for _ in range(max(need, 0))]
            slot, offset = (checkpoints or {}).get(i, (-1, -1))
            chunks.append(
                SequenceChunk(
                    tokens=seq.tokens[seq.done : seq.done + n].tolist(),
                    prefix_len=seq.done,
                    pages=list(seq.pages),
                    slot=seq.slot,
                    has_initial_state=seq.done > 0,
                    all_logits=True,
                    checkpoint_slot=slot,
                    checkpoint_offset=offset,
                )
            )
        batch = build_batch(chunks, PAGE, self.device)
        assert batch.is_decode == all(n == 1 for _, n in work)
        logits = self.model.forward(batch, self.kv, self.state)
        for (seq, n), part in zip(work, logits.split([n for _, n in work]), strict=True):
            seq.logits.append(part.cpu())
            seq.done += n


def check_seq(pair: Pair, seq: Seq) -> None:
    assert_logits_close(torch.cat(seq.logits), pair.hf_logits(seq.tokens[: seq.done]))


# ---- tests -----------------------------------------------------------------------------------
BASE_SEED = 6  # the streaming tests use prefixes of one 200-token sequence per fixture


@pytest.mark.parametrize("length", [1, 63, 64, 65, 200])
@pytest.mark.parametrize("name", NAMES)
def test_full_sequence_logits(pairs, name: str, length: int) -> None:
    p = pairs(name)
    tokens = p.tokens(length, seed=length)
    assert_logits_close(p.model.logits(tokens), fx.hf_logits(p.hf, tokens))


@pytest.mark.parametrize("name", NAMES)
def test_prefill_then_decode_steps(pairs, name: str) -> None:
    """Prefill 57 tokens, then 1-token steps across the page (16) and GDN chunk (64) edges."""
    p = pairs(name)
    seq = Seq(p.tokens(200, BASE_SEED)[:70], slot=3)
    h = Harness(p.model)
    h.step([(seq, 57)])
    for _ in range(13):
        h.step([(seq, 1)])
    check_seq(p, seq)


@pytest.mark.parametrize("name", NAMES)
def test_chunks_resumed_from_cache(pairs, name: str) -> None:
    p = pairs(name)
    seq = Seq(p.tokens(200, BASE_SEED), slot=7)
    h = Harness(p.model)
    for n in (37, 50, 13, 1, 99):  # boundaries 37, 87, 100, 101: not multiples of 64 or 16
        h.step([(seq, n)])
    check_seq(p, seq)


@pytest.mark.parametrize("name", ["dense", "dense_layer_types", "moe", "next", "vlm_moe"])
def test_packed_batches_mix_prefill_chunks_and_decode(pairs, name: str) -> None:
    p = pairs(name)
    a = Seq(p.tokens(200, BASE_SEED)[:150], slot=4)
    b, c, d = (Seq(p.tokens(n, seed=n), slot=s) for n, s in ((45, 1), (70, 9), (22, 2)))
    h = Harness(p.model)
    h.step([(a, 100), (b, 44), (c, 64)])  # three prefills of different lengths
    h.step([(a, 30), (b, 1), (c, 1), (d, 20)])  # chunk + decodes + a new sequence
    h.step([(c, 4), (a, 20), (d, 1)])
    e = Seq(p.tokens(2, seed=2), slot=6)
    h.step([(d, 1), (e, 1), (c, 1)])  # pure decode steps (recurrent GDN path), e is new
    h.step([(e, 1)])
    for seq in (a, b, c, d, e):
        check_seq(p, seq)


@pytest.mark.parametrize("name", ["dense_tied", "next"])
def test_state_checkpoints_and_resume(pairs, name: str) -> None:
    """A checkpoint written at offset t equals the state after running exactly t tokens, and a
    new sequence sharing the first 64 tokens resumes from it (shared full KV pages)."""
    p = pairs(name)
    h = Harness(p.model, num_pages=80, num_slots=12)
    a = Seq(p.tokens(200, BASE_SEED)[:120], slot=1)
    h.step([(a, 37)])
    h.step([(a, 50)], checkpoints={0: (5, 27)})  # after 64 tokens, mid-chunk
    h.step([(a, 1)], checkpoints={0: (6, 1)})  # decode: after the token (88)
    h.step([(a, 1)], checkpoints={0: (7, 0)})  # decode: before the token (88 again)
    check_seq(p, a)

    r = Seq(a.tokens, slot=2)
    h.step([(r, 64)])
    assert_same_state(h, 5, 2)
    h.step([(r, 24)])
    assert_same_state(h, 6, 2)
    assert_same_state(h, 7, 2)

    b = Seq(torch.cat([a.tokens[:64], p.tokens(40, seed=21)]), slot=3)
    b.pages, b.done = a.pages[:4], 64  # the 4 full pages of the shared prefix
    h.state.copy_slots(torch.tensor([5]), torch.tensor([3]))
    h.step([(b, 25)])
    h.step([(b, 1)])
    h.step([(b, 14)])
    assert_logits_close(torch.cat(b.logits), p.hf_logits(b.tokens)[64:])


def assert_same_state(h: Harness, got_slot: int, want_slot: int) -> None:
    for conv in h.state.conv:
        torch.testing.assert_close(conv[got_slot], conv[want_slot], atol=1e-5, rtol=1e-4)
    for ssm in h.state.ssm:
        torch.testing.assert_close(ssm[got_slot], ssm[want_slot], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["dense_tied", "moe"])
def test_from_in_memory_hf_state_dict(name: str) -> None:
    """Independent of the safetensors loader: HF's own parameters, prefix stripped."""
    hf = fx.build(name, seed=2)
    cfg = ModelConfig.from_hf_dict(hf.config.to_dict())
    weights = {k.removeprefix("model."): t for k, t in hf.state_dict().items()}
    if cfg.tie_word_embeddings:
        weights["lm_head.weight"] = weights["embed_tokens.weight"]
    for key in ("linear_attn.A_log", "linear_attn.norm.weight"):
        assert all(t.dtype == torch.float32 for k, t in weights.items() if k.endswith(key))
    model = Qwen3_5Model(cfg, weights)
    assert not weights  # consumed: originals of fused projections are freed
    tokens = fx.random_tokens(90, cfg.vocab_size, seed=3)
    assert_logits_close(model.logits(tokens), fx.hf_logits(hf, tokens))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["dense", "next"])
def test_reference_model_on_cuda(tmp_path, name: str) -> None:
    """The same reference ops on the GPU: fp32 chunks + decode + packed batch vs HF on CPU."""
    torch.backends.cuda.matmul.allow_tf32 = False
    hf = fx.build(name, seed=1)
    path = fx.save_checkpoint(hf, tmp_path, **LAYOUTS[name])
    model = load_model(path, device="cuda", progress=False)
    vocab = hf.config.get_text_config().vocab_size
    a = Seq(fx.random_tokens(150, vocab, seed=1), slot=2)
    b = Seq(fx.random_tokens(40, vocab, seed=2), slot=5)
    h = Harness(model)
    h.step([(a, 70), (b, 39)])
    h.step([(a, 1), (b, 1)])
    h.step([(a, 79)])
    for seq in (a, b):
        assert_logits_close(torch.cat(seq.logits), fx.hf_logits(hf, seq.tokens))


@pytest.mark.parametrize("name", ["dense", "next"])
def test_bf16_is_as_close_to_fp32_as_hf_bf16(tmp_path, name: str) -> None:
    """In bf16 (fp32 state, gates, A_log and GDN norm) our logits are no further from the fp32
    reference than HF's own bf16 model is."""
    hf = fx.build(name, seed=1)
    model = load_model(fx.save_checkpoint(hf, tmp_path), dtype=torch.bfloat16, progress=False)
    tokens = fx.random_tokens(130, hf.config.vocab_size, seed=3)
    want = fx.hf_logits(hf, tokens)
    hf_err = (fx.hf_logits(hf.to(torch.bfloat16), tokens).float() - want).abs().mean()
    our_err = (model.logits(tokens).float() - want).abs().mean()
    assert our_err <= 1.25 * hf_err, f"ours {our_err:.4f} vs HF bf16 {hf_err:.4f}"
