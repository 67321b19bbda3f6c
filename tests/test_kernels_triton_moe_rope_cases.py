"""MoE, RoPE and activation Triton kernels against their PyTorch references at small shapes.

Runs like `test_kernels_triton_cases.py` (whose helpers it shares): on CPU only inside the
``TRITON_INTERPRET=1`` subprocess of `test_kernels_triton.py`, on a CUDA machine compiled.
Shapes: expert counts and hidden sizes that are not powers of two, top-k 3 of 7, the decode
(GEMV) and the token-sorted prefill path, experts nobody picked, the shared expert as expert 7
(every token's extra slot), rotary dim a quarter of an odd head_dim split, KV-cache rows
crossing pages.
"""

from __future__ import annotations

import itertools
import os

import pytest
import torch

CUDA = torch.cuda.is_available()
if not CUDA and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip(
        "CPU run: executed by test_kernels_triton.py in a subprocess", allow_module_level=True
    )

import tokenspeed.kernels.triton as tk  # noqa: E402
from test_kernels_triton_cases import DTYPES, close, dev, gen  # noqa: E402
from tokenspeed.kernels import reference as ref  # noqa: E402

DEVICE = "cuda" if CUDA else "cpu"

# ---- MoE -------------------------------------------------------------------------------------
E, TOP_K, H, IM = 7, 3, 40, 24


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("renormalize", [True, False])
def test_moe_route(dtype: torch.dtype, renormalize: bool) -> None:
    logits = (torch.randn(13, E + 5, generator=gen(20)) * 2).to(dtype)[:, 2 : 2 + E]
    got_w, got_ids = tk.moe.moe_route(*dev(logits), TOP_K, renormalize)
    want_w, want_ids = ref.moe_route(logits, TOP_K, renormalize)
    assert torch.equal(got_ids.cpu(), want_ids)
    close(got_w, want_w, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens", [1, 13])
def test_moe_route_shared(dtype: torch.dtype, tokens: int) -> None:
    # E routed logits, then the shared gate's, in a strided view (as sliced from a wider GEMV)
    logits = (torch.randn(tokens, E + 4, generator=gen(26)) * 2).to(dtype)[:, 2 : 3 + E]
    got_w, got_ids = tk.moe.moe_route_shared(*dev(logits), TOP_K, True)
    want_w, want_ids = ref.moe_route_shared(logits, TOP_K, True)
    assert got_ids.shape == (tokens, TOP_K + 1) and (want_ids[:, -1] == E).all()
    assert torch.equal(got_ids.cpu(), want_ids)
    close(got_w, want_w, dtype)


@pytest.mark.parametrize("shared", [False, True])
def test_moe_route_ties_and_real_shape(shared: bool) -> None:
    """256 experts, top 8 (Qwen3.5-MoE): equal probabilities go lowest index first (a stable
    descending sort), also when the tie straddles the k-th slot."""
    e, k = 256, 8
    logits = torch.randn(4, e + 1, generator=gen(27)) * 2
    logits[1, :e] = 0.0  # all tied: experts 0..7
    logits[2, [200, 7, 99, 150, 3, 64]] = 9.0  # six tied winners, then ties at the boundary
    logits[2, [250, 40, 41]] = 8.0
    logits[3, :e] = logits[3, :e].to(torch.bfloat16).float().round()  # many partial ties
    logits = logits if shared else logits[:, :e]
    route = tk.moe.moe_route_shared if shared else tk.moe.moe_route
    got_w, got_ids = route(*dev(logits), k, True)
    probs = torch.softmax(logits[:, :e], dim=-1)
    want_ids = torch.sort(probs, dim=-1, descending=True, stable=True).indices[:, :k]
    assert torch.equal(got_ids[:, :k].cpu(), want_ids)
    want_w = probs.gather(1, want_ids)
    close(got_w[:, :k], want_w / want_w.sum(-1, keepdim=True), torch.float32)
    if shared:
        assert (got_ids[:, k] == e).all()
        close(got_w[:, k], torch.sigmoid(logits[:, e]), torch.float32)


def moe_inputs(
    tokens: int, dtype: torch.dtype, seed: int, h: int = H, im: int = IM, shared: bool = False
) -> tuple:
    """``shared``: expert ``E`` is the shared expert, routed by `moe_route_shared`."""
    g = gen(seed)
    experts = E + int(shared)
    x = torch.randn(tokens, h, generator=g).to(dtype)
    w_gate_up = (torch.randn(experts, 2 * im, h, generator=g) * 0.3).to(dtype)
    w_down = (torch.randn(experts, h, im, generator=g) * 0.3).to(dtype)
    logits = torch.randn(tokens, experts, generator=g)
    logits[:, 4] = -30.0  # expert 4 is never chosen: its blocks must not exist
    route = ref.moe_route_shared if shared else ref.moe_route
    weights, ids = route(logits.to(dtype), TOP_K, True)
    return x, w_gate_up, w_down, weights, ids


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens", [1, 5, 37])  # decode GEMV, decode GEMV, token-sorted
# even: 16-wide tiles dividing hidden and Im; tail_m: 16-row tail blocks (0: none); shared: the
# shared expert as expert E, in every token's slots (only masked + tails: the interpreter is slow)
@pytest.mark.parametrize(
    ("even", "tail_m", "shared"),
    [(False, 0, False), (False, 16, False), (True, 0, False), (True, 16, False), (False, 16, True)],
)
def test_moe_experts(
    dtype: torch.dtype, tokens: int, even: bool, tail_m: int, shared: bool, monkeypatch
) -> None:
    # ~16 pairs per expert: 32-row blocks, and 16-row tail blocks where the remainder fits
    monkeypatch.setitem(tk.moe.PREFILL_CONFIG, "block_m", 32)
    monkeypatch.setitem(tk.moe.PREFILL_CONFIG, "tail_m", tail_m)
    for config in (tk.moe.DECODE_CONFIG, tk.moe.PREFILL_CONFIG):
        for key in ("up_bn", "up_bk", "down_bn", "down_bk"):
            monkeypatch.setitem(config, key, 16)
    shape = (64, 32) if even else (H, IM)  # even: the unmasked-load variant of every kernel
    inputs = moe_inputs(tokens, dtype, 21 + tokens, *shape, shared=shared)
    assert (tokens <= tk.moe.DECODE_MAX_TOKENS) == (tokens < 37)
    got, want = tk.moe.moe_experts(*dev(*inputs)).cpu(), ref.moe_experts(*inputs)
    close(got, want if dtype == torch.float32 else rounded_like_kernels(*inputs), dtype)
    assert (got.float() - want.float()).abs().max() <= 0.05 * want.float().abs().max()


def rounded_like_kernels(
    x: torch.Tensor,
    w_gate_up: torch.Tensor,
    w_down: torch.Tensor,
    weights: torch.Tensor,
    ids: torch.Tensor,
) -> torch.Tensor:
    """The bf16 experts pair by pair in fp32, rounded where the kernels round (projections,
    silu, SwiGLU product, down projection, weighted output, final sum); the interpreter rounds
    by truncation, which alone puts it several ulps away from `ref.moe_experts`."""

    def rnd(t: torch.Tensor) -> torch.Tensor:
        if os.environ.get("TRITON_INTERPRET") == "1":
            return (t.float().contiguous().view(torch.int32) & ~0xFFFF).view(torch.float32)
        return t.to(x.dtype).float()

    im = w_down.shape[2]
    out = torch.zeros(x.shape, dtype=torch.float32)
    for t, j in itertools.product(range(ids.shape[0]), range(ids.shape[1])):
        e = ids[t, j]
        gate_up = w_gate_up[e].float() @ x[t].float()
        gate, up = rnd(gate_up[:im]), rnd(gate_up[im:])
        act = rnd(rnd(gate * torch.sigmoid(gate)) * up)
        out[t] += rnd(rnd(w_down[e].float() @ act) * weights[t, j].float())
    return rnd(out)


@pytest.mark.parametrize("tail_m", [0, 2])
def test_moe_sorted_layout_covers_every_pair_once(tail_m: int) -> None:
    # expert 3: 5 pairs = one 4-row block + a 2-row tail (without tails: two 4-row blocks)
    ids = torch.tensor([[3, 0], [3, 1], [0, 3], [5, 3], [3, 2], [0, 1]])
    # the layout is built by kernels: device in, host copies to check
    layout = tk.moe.sorted_layout(*dev(ids), 6, 4, tail_m)
    pair_of_row, row_of_pair = layout[0].cpu(), layout[1].cpu()
    blocks = [t.cpu() for t in layout[2]]
    pairs = ids.numel()
    assert torch.equal(pair_of_row[row_of_pair.long()], torch.arange(pairs, dtype=torch.int32))
    seen, padding = [], 0
    for expert, start, tail in zip(*(t.tolist() for t in blocks), strict=True):
        if expert == 6:  # spare block
            continue
        rows = 2 if tail else 4
        real = [p for p in pair_of_row[start : start + rows].tolist() if p < pairs]
        assert real and all(ids.view(-1)[p] == expert for p in real)
        seen += real
        padding += rows - len(real)
    assert sorted(seen) == list(range(pairs))  # every pair in exactly one block
    assert padding == (4 if tail_m else 12)  # experts 0, 1, 2, 3, 5 hold 3, 2, 1, 5, 1 pairs
    assert int(blocks[2].sum()) == (4 if tail_m else 0)  # tails of experts 1, 2, 3, 5


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_gated_shared_expert(dtype: torch.dtype) -> None:
    g = gen(22)
    routed, shared = (torch.randn(9, 33, generator=g).to(dtype) for _ in range(2))
    gate = torch.randn(9, 3, generator=g).to(dtype)[:, 1:2]  # a strided [N, 1] column
    got = tk.moe.add_gated_shared_expert(*dev(routed, shared, gate))
    close(got, ref.add_gated_shared_expert(routed, shared, gate), dtype)


# ---- activation ------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_silu_and_mul(dtype: torch.dtype) -> None:
    x = torch.randn(2, 7, 2 * 45, generator=gen(23)).to(dtype)
    close(tk.activation.silu_and_mul(*dev(x)), ref.silu_and_mul(x), dtype)


# ---- RoPE and the fused attention input ------------------------------------------------------
NH, NKV, HD, PAGE = 6, 2, 40, 4  # rotary dim 10 = a quarter of head_dim 40


@pytest.mark.parametrize("dtype", DTYPES)
def test_apply_rope_partial_neox(dtype: torch.dtype) -> None:
    g = gen(24)
    q = torch.randn(7, NH, 2 * HD, generator=g).to(dtype)[..., :HD]  # strided heads
    k = torch.randn(7, NKV, HD, generator=g).to(dtype)
    positions = torch.tensor([0, 1, 5, 63, 64, 1000, 70000])
    inv_freq = ref.rope_inv_freq(HD // 4, 1e7)
    got_q, got_k = tk.rope.apply_rope(*dev(q, k, positions, inv_freq))
    want_q, want_k = ref.apply_rope(q, k, positions, inv_freq)
    close(got_q, want_q, dtype)
    close(got_k, want_k, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_qk_norm_rope_kv_write(dtype: torch.dtype) -> None:
    g = gen(25)
    tokens = 6
    qkv = torch.randn(tokens, 2 * NH * HD + 2 * NKV * HD, generator=g).to(dtype)
    q_norm, k_norm = (torch.randn(HD, generator=g) * 0.1).to(dtype), torch.randn(HD).to(dtype)
    positions = torch.tensor([3, 4, 5, 6, 7, 0])
    kv_indices = torch.tensor([7, 8, 9, 10, 11, 20])  # rows 7..11 cross a page (page size 4)
    inv_freq = ref.rope_inv_freq(HD // 4, 1e7)
    caches = [torch.full((8, PAGE, NKV, HD), float("nan")).to(dtype) for _ in range(2)]
    mine = [c.clone().to(DEVICE) for c in caches]
    common = (q_norm, k_norm, 1e-6, positions, inv_freq, NH, NKV, HD)
    want_q, want_gate = ref.qk_norm_rope_kv_write(qkv, *common, *caches, kv_indices)
    got_q, got_gate = tk.rope.qk_norm_rope_kv_write(
        *dev(qkv, q_norm, k_norm), 1e-6, *dev(positions, inv_freq), NH, NKV, HD, *mine,
        kv_indices.to(DEVICE),
    )  # fmt: skip
    close(got_q, want_q, dtype)
    assert torch.equal(got_gate.cpu(), want_gate)
    for got, want in zip(mine, caches, strict=True):
        written = kv_indices
        close(got.view(-1, NKV, HD)[written], want.view(-1, NKV, HD)[written], dtype)
        untouched = torch.ones(got.view(-1, NKV, HD).shape[0], dtype=torch.bool)
        untouched[written] = False
        assert got.view(-1, NKV, HD)[untouched.to(got.device)].isnan().all()
