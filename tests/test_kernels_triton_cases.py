"""Every Triton kernel against its PyTorch reference at small, awkward shapes.

Without CUDA the kernels run on CPU through Triton's interpreter. ``TRITON_INTERPRET=1`` must
be set before ``import triton`` anywhere in the process (Triton's own ``tl`` library functions
are decorated at import time; once another module has imported triton without it, interpreted
kernels that call them fail), so on CPU this module runs only in the subprocess started by
``test_kernels_triton.py`` and skips itself in any other process. With CUDA it runs the
compiled kernels on the GPU directly.

Tolerances: fp32 inputs must agree to 2e-5 (summation order only); bf16 outputs to 3e-2
absolute + relative (a few bf16 ulps: the interpreter rounds fp32 -> bf16 by truncation).
Shapes: odd lengths, empty and single-token sequences, head ratio 3, dims that are not powers
of two, page-boundary crossings, slots without initial state filled with NaN.
"""

from __future__ import annotations

import os

import pytest
import torch

CUDA = torch.cuda.is_available()
if not CUDA and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip(
        "CPU run: executed by test_kernels_triton.py in a subprocess", allow_module_level=True
    )

import tokenspeed.kernels.triton as triton_kernels  # noqa: E402
import triton  # noqa: E402
import triton.language as tl  # noqa: E402
from tokenspeed.kernels import reference as ref  # noqa: E402

DEVICE = "cuda" if CUDA else "cpu"
HK, HV, DK, DV = 2, 6, 16, 24  # grouped values r = 3, dv not a power of two


@pytest.fixture(scope="module")
def tk():
    """The ``tokenspeed.kernels.triton`` package (interpreted on CPU)."""
    assert triton_kernels.INTERPRETED != CUDA
    return triton_kernels


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def dev(*ts: torch.Tensor) -> list[torch.Tensor]:
    return [t.to(DEVICE) for t in ts]


def close(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype) -> None:
    if dtype == torch.float32:
        torch.testing.assert_close(got.cpu(), want.cpu(), atol=2e-5, rtol=2e-5)
    else:  # a few bf16 ulps (truncating casts in the interpreter, fp32 summation order)
        torch.testing.assert_close(got.float().cpu(), want.float().cpu(), atol=3e-2, rtol=3e-2)


# ---- norms -----------------------------------------------------------------------------------
DTYPES = [torch.float32, torch.bfloat16]


@pytest.mark.parametrize("dtype", DTYPES)
def test_rms_norm_on_strided_head_views(tk, dtype: torch.dtype) -> None:
    g = gen(1)
    qg = torch.randn(7, 3, 2 * 20, generator=g).to(dtype)
    q = qg.chunk(2, dim=-1)[0]  # [T, nh, hd] view: rows merge with a stride
    packed = torch.randn(7, 50, generator=g).to(dtype)
    k = packed[:, 10:40].view(7, 3, 10)  # head split of a column slice: rows do not merge
    for x, d in ((q, 20), (k, 10), (torch.randn(5, 33, generator=g).to(dtype), 33)):
        w = torch.randn(d, generator=g).to(dtype)
        (xd, wd) = dev(x, w)
        close(tk.norm.rms_norm(xd, wd, 1e-6), ref.rms_norm(x, w, 1e-6), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_rms_norm(tk, dtype: torch.dtype) -> None:
    g = gen(2)
    x, res = torch.randn(9, 65, generator=g).to(dtype), torch.randn(9, 65, generator=g).to(dtype)
    w = torch.randn(65, generator=g).to(dtype)
    got, got_res = tk.norm.add_rms_norm(*dev(x, res, w), 1e-6)
    want, want_res = ref.add_rms_norm(x, res, w, 1e-6)
    close(got, want, dtype)
    close(got_res, want_res, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weight_fp32", [False, True])
def test_gated_rms_norm(tk, dtype: torch.dtype, weight_fp32: bool) -> None:
    g = gen(3)
    x = torch.randn(7, HV, DV, generator=g).to(dtype)
    z = torch.randn(7, 2 * HV * DV, generator=g).to(dtype)[:, HV * DV :].view(7, HV, DV)
    w = torch.randn(DV, generator=g).to(torch.float32 if weight_fp32 else dtype)
    close(tk.norm.gated_rms_norm(*dev(x, z, w), 1e-6), ref.gated_rms_norm(x, z, w, 1e-6), dtype)


# ---- conv1d ----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv1d_varlen_with_windows_and_checkpoints(tk, dtype: torch.dtype) -> None:
    g = gen(4)
    channels, lens = 37, [5, 1, 0, 9, 2]
    total = sum(lens)
    x = torch.randn(total, channels + 11, generator=g).to(dtype)[:, 3 : 3 + channels]
    w = torch.randn(channels, 4, generator=g).to(dtype)
    state = torch.randn(8, channels, 3, generator=g).to(dtype)
    state[[3, 7]] = float("nan")  # slots without initial state must not be read
    cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], dtype=torch.int32)
    slots = torch.tensor([1, 3, 5, 2, 7])
    init = torch.tensor([True, False, True, True, False])
    ckpt_slots, ckpt_offsets = torch.tensor([4, -1, 6, 0, 6]), torch.tensor([2, 0, 0, 9, 1])
    ckpt_slots[4] = -1
    got_state = state.clone().to(DEVICE)
    args = (cu, slots, init, ckpt_slots, ckpt_offsets)
    got = tk.conv.conv1d_varlen(*dev(x, w), got_state, *dev(*args))
    want = ref.conv1d_varlen(x, w, state, *args)
    close(got, want, dtype)
    close(got_state, state, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv1d_decode(tk, dtype: torch.dtype) -> None:
    g = gen(5)
    channels = 37
    x = torch.randn(4, channels, generator=g).to(dtype)
    w = torch.randn(channels, 4, generator=g).to(dtype)
    state = torch.randn(8, channels, 3, generator=g).to(dtype)
    args = (
        torch.tensor([1, 2, 3, 4]),
        torch.tensor([True, False, True, True]),
        torch.tensor([5, -1, 6, 7]),
        torch.tensor([0, 0, 1, 1]),
    )
    got_state = state.clone().to(DEVICE)
    got = tk.conv.conv1d_decode(*dev(x, w), got_state, *dev(*args))
    close(got, ref.conv1d_decode(x, w, state, *args), dtype)
    close(got_state, state, dtype)


# ---- GDN -------------------------------------------------------------------------------------
def gdn_inputs(
    total: int, seed: int, dtype: torch.dtype = torch.float32, dk: int = DK, dv: int = DV
) -> dict:
    """q/k/v/a/b as strided views of one packed projection, like the model produces them."""
    g = gen(seed)
    packed = torch.randn(total, 2 * HK * dk + HV * dv + 2 * HV, generator=g).to(dtype)
    q, k, v, a, b = packed.split([HK * dk, HK * dk, HV * dv, HV, HV], dim=-1)
    return {
        "q": q.view(total, HK, dk),
        "k": k.view(total, HK, dk),
        "v": v.view(total, HV, dv),
        "a": a,
        "b": b,
        "A_log": torch.empty(HV).uniform_(0.02, 1.0, generator=g).log(),
        "dt_bias": torch.randn(HV, generator=g) * 0.5 - 1.0,
    }


def test_gdn_recurrent_in_place_with_checkpoints(tk) -> None:
    inputs = gdn_inputs(4, seed=6)
    state = torch.randn(9, HV, DK, DV, generator=gen(7))
    state[2] = float("nan")  # a slot without initial state must not be read
    args = (
        torch.tensor([1, 2, 3, 4]),
        torch.tensor([True, False, True, True]),
        torch.tensor([5, -1, 6, 7]),
        torch.tensor([0, 0, 1, 1]),
    )
    got_state = state.clone().to(DEVICE)
    got = tk.gdn_recurrent.gdn_recurrent(*dev(*inputs.values()), got_state, *dev(*args))
    want = ref.gdn_recurrent(*inputs.values(), state, *args)
    close(got, want, torch.float32)
    close(got_state, state, torch.float32)


# split64 (the state as two 64-row halves) at dk = 128.
@pytest.mark.parametrize(("impl", "dk", "dv"), [("tile", DK, DV), ("split64", 128, DV)])
def test_gdn_chunked_varlen_with_states_and_checkpoints(
    tk, monkeypatch: pytest.MonkeyPatch, impl: str, dk: int, dv: int
) -> None:
    monkeypatch.setitem(tk.gdn_chunked.CONFIG, "state_impl", impl)
    # 70 crosses a chunk; 130 = 2 full chunks + 2 and checkpoints at its end; 33 cuts a chunk.
    lens = [70, 1, 0, 130, 5]
    inputs = gdn_inputs(sum(lens), seed=8, dk=dk, dv=dv)
    state = torch.randn(9, HV, dk, dv, generator=gen(9)) * 0.3
    state[[2, 5]] = float("nan")  # slots without initial state must not be read
    cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], dtype=torch.int32)
    args = (
        cu,
        torch.tensor([1, 2, 3, 4, 5]),
        torch.tensor([True, False, True, True, False]),
        torch.tensor([6, -1, 7, 8, -1]),
        torch.tensor([33, 0, 0, 130, 0]),
    )
    got_state = state.clone().to(DEVICE)
    got = tk.gdn_chunked.gdn_chunked(*dev(*inputs.values()), got_state, *dev(*args))
    want = ref.gdn_chunked(*inputs.values(), state, *args)
    close(got, want, torch.float32)
    close(got_state, state, torch.float32)


def test_gdn_chunked_bf16_checkpoint_on_chunk_boundary(tk) -> None:
    # bf16 activations: bf16 dot operands and bf16 intermediates (fp32 under the interpreter
    # for the dots); the checkpoint at 64 falls on a chunk boundary of the 129-token sequence.
    lens = [64, 129, 3]
    inputs = gdn_inputs(sum(lens), seed=11, dtype=torch.bfloat16)
    state = torch.randn(7, HV, DK, DV, generator=gen(12)) * 0.3
    cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], dtype=torch.int32)
    args = (
        cu,
        torch.tensor([3, 1, 2]),
        torch.tensor([True, True, False]),
        torch.tensor([-1, 5, 6]),
        torch.tensor([0, 64, 0]),
    )
    got_state = state.clone().to(DEVICE)
    got = tk.gdn_chunked.gdn_chunked(*dev(*inputs.values()), got_state, *dev(*args))
    want = ref.gdn_chunked(*inputs.values(), state, *args)
    close(got, want, torch.bfloat16)
    close(got_state, state, torch.bfloat16)


def test_gdn_chunked_rejects_bad_checkpoint_offset(tk) -> None:
    inputs = gdn_inputs(3, seed=10)
    state = torch.zeros(3, HV, DK, DV)
    cu, one = torch.tensor([0, 3], dtype=torch.int32), torch.tensor([1])
    with pytest.raises(ValueError, match="checkpoint offset 4"):
        tk.gdn_chunked.gdn_chunked(
            *dev(*inputs.values(), state, cu, one, torch.tensor([True]), torch.tensor([2])),
            torch.tensor([4], device=DEVICE),
        )


# ---- paged attention -------------------------------------------------------------------------
NH, NKV, HD, PAGE = 6, 2, 40, 4  # group 3, head_dim not a power of two, tiny pages


def paged_setup(
    prefix: list[int], new: list[int], seed: int, num_pages: int = 64, page: int = PAGE
) -> dict:
    """Random caches and page tables with shuffled pages (page 0 never used)."""
    g = gen(seed)
    k_cache = torch.randn(num_pages, page, NKV, HD, generator=g)
    v_cache = torch.randn(num_pages, page, NKV, HD, generator=g)
    need = [-(-(p + n) // page) for p, n in zip(prefix, new, strict=True)]
    perm = (torch.randperm(num_pages - 1, generator=g) + 1).tolist()
    table = torch.zeros(len(prefix), max(need) + 1, dtype=torch.int32)
    used = 0
    for b, count in enumerate(need):
        table[b, :count] = torch.tensor(perm[used : used + count])
        used += count
    return {
        "q": torch.randn(sum(new), NH, HD, generator=g),
        "k_cache": k_cache,
        "v_cache": v_cache,
        "page_table": table,
        "cu_seqlens": torch.tensor([0, *torch.tensor(new).cumsum(0).tolist()], dtype=torch.int32),
        "prefix_lens": torch.tensor(prefix, dtype=torch.int32),
    }


def test_paged_prefill_with_cached_prefixes(tk) -> None:
    # prefixes that end mid-page and on a page boundary; new runs crossing pages; one token
    s = paged_setup(prefix=[5, 0, 8, 3], new=[3, 23, 1, 6], seed=11)
    got = tk.attention.paged_attention(*dev(*s.values()), HD**-0.5)
    close(got, ref.paged_attention(*s.values(), HD**-0.5), torch.float32)


@pytest.mark.parametrize("splits", [None, 1, 3, 7])
def test_paged_decode_split_k(tk, splits: int | None) -> None:
    s = paged_setup(prefix=[37, 0, 12, 50, 3], new=[1] * 5, seed=12)
    want = ref.paged_attention(*s.values(), HD**-0.5)
    args = dev(s["q"], s["k_cache"], s["v_cache"], s["page_table"], s["prefix_lens"])
    # min_keys 8: these short contexts still cut into several (and some empty) splits
    kw = {"splits": splits, "min_keys": 8} if splits else {}
    got = tk.attention_decode.paged_decode(*args, HD**-0.5, block_n=16, **kw)
    close(got, want, torch.float32)
    close(tk.attention.paged_attention(*dev(*s.values()), HD**-0.5), want, torch.float32)


def nan_empty(real_empty):
    """``torch.empty`` that fills float tensors with NaN: a kernel that reads memory nobody
    wrote (an inactive split's partial output) shows it."""

    def empty(*shape, **kw):
        t = real_empty(*shape, **kw)
        return t.fill_(float("nan")) if t.is_floating_point() else t

    return empty


@pytest.mark.parametrize(
    "kw", [{}, {"block_n": 16}, {"block_n": 16, "min_keys": 16}, {"splits": 5}, {"splits": 1}]
)
def test_paged_decode_wide_page_table(tk, kw: dict, monkeypatch) -> None:
    # The page table is as wide as the longest context the server allows (5404 keys here),
    # the contexts are 1, 63, 64, 65 and 1000 keys: split boundaries follow each sequence's
    # length (64-key splits at most 27 of them, some past the end), not the table's width.
    s = paged_setup(prefix=[0, 62, 63, 64, 999], new=[1] * 5, seed=14, num_pages=320)
    s["page_table"] = torch.cat([s["page_table"], torch.zeros(5, 1100, dtype=torch.int32)], 1)
    want = ref.paged_attention(*s.values(), HD**-0.5)
    args = dev(s["q"], s["k_cache"], s["v_cache"], s["page_table"], s["prefix_lens"])
    monkeypatch.setattr(torch, "empty", nan_empty(torch.empty))
    got = tk.attention_decode.paged_decode(*args, HD**-0.5, **kw)
    close(got, want, torch.float32)


@pytest.mark.parametrize(
    "kw",
    [{"block_n": 16}, {"block_n": 32}, {"block_n": 16, "splits": 3}, {"block_n": 32, "splits": 1}],
)
def test_paged_decode_tile_in_page(tk, kw: dict, monkeypatch) -> None:
    # Pages of 32 keys: each key tile (16 or 32 keys) lies in one page, whose id the kernel
    # loads an iteration ahead. Contexts end mid-page, on a page end, one key into a page and
    # across many pages, in a table far wider than any of them; with 1 or 3 splits a split
    # runs many tiles (a page id one tile late breaks those).
    s = paged_setup(prefix=[0, 31, 32, 47, 700], new=[1] * 5, seed=17, num_pages=48, page=32)
    s["page_table"] = torch.cat([s["page_table"], torch.zeros(5, 200, dtype=torch.int32)], 1)
    want = ref.paged_attention(*s.values(), HD**-0.5)
    args = dev(s["q"], s["k_cache"], s["v_cache"], s["page_table"], s["prefix_lens"])
    monkeypatch.setattr(torch, "empty", nan_empty(torch.empty))
    got = tk.attention_decode.paged_decode(*args, HD**-0.5, min_keys=16, **kw)
    close(got, want, torch.float32)


@pytest.mark.parametrize("new", [[1, 1, 1], [3, 1, 9]])
def test_paged_attention_output_gate(tk, new: list[int]) -> None:
    """The fused sigmoid gate (decode merge / prefill epilogue) reads a strided view."""
    s = paged_setup(prefix=[70, 0, 5], new=new, seed=15)
    qg = torch.randn(sum(new), NH, 2 * HD, generator=gen(16)) * 3
    gate = qg[:, :, HD:]  # as split from the fused q/gate projection
    want = ref.paged_attention(*s.values(), HD**-0.5, gate)
    got = tk.attention.paged_attention(*dev(*s.values()), HD**-0.5, *dev(gate))
    close(got, want, torch.float32)
    ungated = ref.paged_attention(*s.values(), HD**-0.5)
    close(want, ungated * torch.sigmoid(gate), torch.float32)
    assert not torch.allclose(want, ungated, atol=1e-2)


@triton.jit
def _to_bf16_kernel(x_ptr, y_ptr, N, BLOCK: tl.constexpr):
    i = tl.arange(0, BLOCK)
    x = tl.load(x_ptr + i, mask=i < N)
    tl.store(y_ptr + i, x.to(tl.bfloat16), mask=i < N)


def triton_bf16(x: torch.Tensor) -> torch.Tensor:
    """fp32 -> bf16 by Triton's own cast (round-to-nearest on GPUs; the interpreter truncates),
    so expected values round exactly as the kernel does."""
    flat = x.float().contiguous().view(-1).to(DEVICE)
    y = torch.empty(flat.shape, dtype=torch.bfloat16, device=DEVICE)
    _to_bf16_kernel[(1,)](flat, y, flat.numel(), BLOCK=triton.next_power_of_2(flat.numel()))
    return y.view(x.shape)


def test_decode_merge_gate_rounding_bf16(tk) -> None:
    """Merge epilogue in bf16: ``o`` and ``sigmoid(gate)`` each rounded to bf16, the product
    rounded once (the reference's order), exactly; NaN partial outputs of inactive splits
    (lse = -inf) never reach the result. (The interpreter's bf16 ``tl.dot`` is unusable, so
    this drives the merge kernel directly with one active split: o is its partial exactly.)"""
    b, nh, hd, nsplit = 2, 3, HD, 5
    part_o = torch.full((b, nh, nsplit, hd), float("nan"))
    part_lse = torch.full((b, nh, nsplit), float("-inf"))
    o = torch.randn(b, nh, hd, generator=gen(17)) * 2
    part_o[:, :, 2] = o
    part_lse[:, :, 2] = 1.5
    gate = (torch.randn(b, nh, 2 * hd, generator=gen(18)) * 3).bfloat16()[:, :, hd:]
    out = torch.empty(b, nh, hd, dtype=torch.bfloat16, device=DEVICE)
    g = dev(gate)[0]
    tk.attention_decode._decode_merge_kernel[(b * nh,)](
        *dev(part_o, part_lse), out, g, g.stride(0), g.stride(1), nh, hd, nsplit,
        HAS_GATE=True, BS=8, BD=64, CHUNK=2,
    )  # fmt: skip
    sig = triton_bf16(torch.sigmoid(gate.float()))
    want = triton_bf16(triton_bf16(o).float() * sig.float())
    assert torch.equal(out.cpu(), want.cpu())


def test_write_kv_cache_strided_values(tk) -> None:
    g = gen(13)
    k = torch.randn(5, NKV, HD, generator=g)
    v = torch.randn(5, 3 * NKV * HD, generator=g)[:, NKV * HD : 2 * NKV * HD].view(5, NKV, HD)
    caches = [torch.zeros(6, PAGE, NKV, HD) for _ in range(4)]
    idx = torch.tensor([4, 5, 6, 7, 13])  # crosses a page boundary
    ref.write_kv_cache(k, v, caches[0], caches[1], idx)
    got_k, got_v = caches[2].to(DEVICE), caches[3].to(DEVICE)
    tk.attention.write_kv_cache(*dev(k, v), got_k, got_v, idx.to(DEVICE))
    assert torch.equal(got_k.cpu(), caches[0]) and torch.equal(got_v.cpu(), caches[1])


# ---- the whole model -------------------------------------------------------------------------
# moe: its shared expert runs as expert E (the unfused path's ops have their own cases)
@pytest.mark.parametrize("name", ["dense", "moe"])
def test_tiny_model_triton_path_matches_reference_path(tk, tmp_path, name: str) -> None:
    """Prefill chunks resumed from the caches, a packed mixed batch and decode steps give the
    same logits on both backends (fp32, tiny HF fixture with every parameter random)."""
    import hf_fixtures as fx
    from tokenspeed.kernels import set_backend
    from tokenspeed.models import SequenceChunk, build_batch, load_model

    if DEVICE != "cpu":
        pytest.skip("the model fixture is built on CPU; GPU parity lives in tests/gpu")
    hf = fx.build(name, seed=1)
    model = load_model(fx.save_checkpoint(hf, tmp_path), progress=False)
    vocab = hf.config.get_text_config().vocab_size
    a, b = (
        fx.random_tokens(45, vocab, seed=2).tolist(),
        fx.random_tokens(20, vocab, seed=3).tolist(),
    )
    page = 16
    # (seq, tokens, prefix) per step: chunked prefill, then a packed prefill+decode, then decode
    # of both, then of one (one token: the fused norm + GEMV path, gemv.FUSE_MAX_TOKENS)
    steps = [
        [(0, a[:37], 0)],
        [(0, a[37:44], 37), (1, b[:19], 0)],
        [(0, a[44:45], 44), (1, b[19:20], 19)],
        [(1, a[:1], 20)],
    ]

    def run(backend: str) -> list[torch.Tensor]:
        set_backend(backend)
        try:
            kv, state = model.new_kv_cache(12, page), model.new_state_cache(4)
            for t in [*kv.k, *kv.v, *state.conv, *state.ssm]:
                t.fill_(float("nan"))
            pages = {0: [3, 7, 1, 9], 1: [2, 11, 4]}
            out = []
            for step in steps:
                chunks = [
                    SequenceChunk(tokens=toks, prefix_len=pre, pages=pages[s], slot=s + 1,
                                  has_initial_state=pre > 0, all_logits=True)
                    for s, toks, pre in step
                ]  # fmt: skip
                out.append(model.forward(build_batch(chunks, page, "cpu"), kv, state))
            return out
        finally:
            set_backend("reference")

    for got, want in zip(run("triton"), run("reference"), strict=True):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
