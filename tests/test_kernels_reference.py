"""The PyTorch reference kernels against independent formulations of the same math.

GDN: chunked form == token-by-token recurrent form == a float64 closed form == HF's torch
chunk kernel; paged attention == plain causal SDPA; conv == F.conv1d over the whole
sequence; norms bit-identical to HF's modules (bf16 too); RoPE == explicit pair rotation;
MoE == a per-token loop, and the shared expert run as expert E == the spec's separate gated
add. Shapes use head ratios that are not powers of two.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from tokenspeed.kernels import get_backend, ops, register, set_backend
from tokenspeed.kernels import reference as ref
from tokenspeed.kernels.registry import lookup
from transformers.models.qwen3_5 import modeling_qwen3_5 as hf

HK, HV, DK, DV = 2, 6, 16, 24  # grouped values: r = 3


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def gdn_inputs(total: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = gen(seed)
    return {
        "q": torch.randn(total, HK, DK, generator=g),
        "k": torch.randn(total, HK, DK, generator=g),
        "v": torch.randn(total, HV, DV, generator=g),
        "a": torch.randn(total, HV, generator=g),
        "b": torch.randn(total, HV, generator=g),
        "A_log": torch.empty(HV).uniform_(0.02, 1.0, generator=g).log(),
        "dt_bias": torch.randn(HV, generator=g) * 0.5 - 1.0,
    }


def run_recurrent(
    x: dict, state: torch.Tensor, lens: list[int], slots: list[int], init: list[bool]
):
    """Token by token through gdn_recurrent: all sequences advance together, one step each."""
    cu = [0, *torch.tensor(lens).cumsum(0).tolist()]
    out = torch.empty(x["v"].shape)
    has_init = torch.tensor(init)
    for t in range(max(lens)):
        live = [i for i, n in enumerate(lens) if t < n]
        rows = torch.tensor([cu[i] + t for i in live])
        out[rows] = ref.gdn_recurrent(
            x["q"][rows], x["k"][rows], x["v"][rows], x["a"][rows], x["b"][rows],
            x["A_log"], x["dt_bias"], state,
            torch.tensor([slots[i] for i in live]), has_init[live] | (t > 0),
        )  # fmt: skip
    return out


@pytest.mark.parametrize("chunk_size", [64, 16])
def test_gdn_chunked_matches_recurrent_varlen(chunk_size: int) -> None:
    lens, slots, init = [1, 70, 130, 64], [3, 1, 5, 2], [True, False, True, True]
    x = gdn_inputs(sum(lens))
    state0 = torch.randn(7, HV, DK, DV, generator=gen(1)) * 0.3
    state0[1] = float("nan")  # no initial state: the slot's content must not be read

    s_chunk = state0.clone()
    cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], dtype=torch.int32)
    o_chunk = ref.gdn_chunked(
        **x, state=s_chunk, cu_seqlens=cu, slot_ids=torch.tensor(slots),
        has_initial_state=torch.tensor(init), chunk_size=chunk_size,
    )  # fmt: skip
    s_rec = state0.clone()
    o_rec = run_recurrent(x, s_rec, lens, slots, init)
    torch.testing.assert_close(o_chunk, o_rec, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(s_chunk[slots], s_rec[slots], atol=2e-5, rtol=1e-4)
    untouched = [0, 4, 6]
    assert torch.equal(s_chunk[untouched], state0[untouched])


def test_gdn_chunked_checkpoint_is_state_after_offset() -> None:
    lens, offsets = [90, 40, 65], [67, 0, 65]  # mid-chunk, before the first token, at the end
    x = gdn_inputs(sum(lens), seed=2)
    cu = torch.tensor([0, 90, 130, 195], dtype=torch.int32)
    state = torch.zeros(8, HV, DK, DV)
    state[2] = torch.randn(HV, DK, DV, generator=gen(3)) * 0.3
    init = torch.tensor([False, True, False])
    expected_ckpt = {}
    for i, off in enumerate(offsets):  # the state after exactly `off` tokens, run on its own
        s = state.clone()
        sub = {k: v[cu[i] : cu[i] + off] for k, v in x.items() if v.dim() > 1}
        if off:
            run_recurrent({**x, **sub}, s, [off], [[1, 2, 3][i]], [bool(init[i])])
        expected_ckpt[i] = s[[1, 2, 3][i]].clone()
    s = state.clone()
    ref.gdn_chunked(
        **x, state=s, cu_seqlens=cu, slot_ids=torch.tensor([1, 2, 3]), has_initial_state=init,
        checkpoint_slots=torch.tensor([5, 6, 7]), checkpoint_offsets=torch.tensor(offsets),
    )  # fmt: skip
    for i, slot in enumerate([5, 6, 7]):
        torch.testing.assert_close(s[slot], expected_ckpt[i], atol=2e-5, rtol=1e-4)


def test_gdn_recurrent_checkpoint_before_and_after() -> None:
    x = gdn_inputs(2, seed=4)
    state = torch.randn(6, HV, DK, DV, generator=gen(5))
    before = state[[1, 2]].clone()
    ref.gdn_recurrent(
        **x, state=state, slot_ids=torch.tensor([1, 2]), has_initial_state=torch.tensor([True, True]),
        checkpoint_slots=torch.tensor([3, 4]), checkpoint_offsets=torch.tensor([0, 1]),
    )  # fmt: skip
    assert torch.equal(state[3], before[0])
    assert torch.equal(state[4], state[2])
    assert not torch.allclose(state[2], before[1])


def test_gdn_recurrent_matches_float64_closed_form() -> None:
    """S_t = exp(g)(I - β k kᵀ) S + β k vᵀ, o = Sᵀ q, written independently in float64."""
    n = 20
    x = gdn_inputs(n, seed=6)
    state = torch.zeros(2, HV, DK, DV)
    o = run_recurrent(x, state, [n], [1], [False]).double()
    d = {k: v.double() for k, v in x.items()}
    g = -d["A_log"].exp() * F.softplus(d["a"] + d["dt_bias"])
    beta = torch.sigmoid(d["b"])
    for h in range(HV):
        s = torch.zeros(DK, DV, dtype=torch.float64)
        for t in range(n):
            q = d["q"][t, h // (HV // HK)]
            k = d["k"][t, h // (HV // HK)]
            q = q / math.sqrt((q @ q).item() + 1e-6) / math.sqrt(DK)
            k = k / math.sqrt((k @ k).item() + 1e-6)
            s = (
                g[t, h].exp()
                * (torch.eye(DK, dtype=torch.float64) - beta[t, h] * torch.outer(k, k))
                @ s
            )
            s = s + beta[t, h] * torch.outer(k, d["v"][t, h])
            torch.testing.assert_close(o[t, h], s.T @ q, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(state[1, h].double(), s, atol=1e-5, rtol=1e-5)


def test_gdn_chunked_matches_hf_torch_chunk_kernel() -> None:
    n = 150
    x = gdn_inputs(n, seed=7)
    init = torch.randn(HV, DK, DV, generator=gen(8)) * 0.3
    g, beta = ref.gdn_gates(x["a"], x["b"], x["A_log"], x["dt_bias"])
    r = HV // HK  # heads expanded here (h // r): older HF kernels expect equal head counts
    q, k = x["q"].repeat_interleave(r, dim=1), x["k"].repeat_interleave(r, dim=1)
    o_hf, s_hf = hf.torch_chunk_gated_delta_rule(
        q[None], k[None], x["v"][None], g=g[None], beta=beta[None],
        initial_state=init[None], output_final_state=True, use_qk_l2norm_in_kernel=True,
    )  # fmt: skip
    state = torch.zeros(2, HV, DK, DV)
    state[1] = init
    o = ref.gdn_chunked(
        **x, state=state, cu_seqlens=torch.tensor([0, n], dtype=torch.int32),
        slot_ids=torch.tensor([1]), has_initial_state=torch.tensor([True]),
    )  # fmt: skip
    torch.testing.assert_close(o, o_hf[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(state[1], s_hf[0], atol=1e-5, rtol=1e-4)


# ---- conv ------------------------------------------------------------------------------------
def test_conv1d_varlen_and_decode_match_full_conv() -> None:
    channels, width = 10, 4
    g = gen(9)
    weight = torch.randn(channels, width, generator=g)
    seqs = [torch.randn(n, channels, generator=g) for n in (2, 9, 30)]

    def full(x: torch.Tensor) -> torch.Tensor:  # zero-padded causal conv over the whole sequence
        y = F.conv1d(x.t()[None], weight[:, None, :], padding=width - 1, groups=channels)
        return F.silu(y[0, :, : x.shape[0]]).t()

    state = torch.full((6, channels, width - 1), float("nan"))
    splits = [(1, 1), (4, 5), (17, 13)]  # (first chunk, rest): the rest via varlen + decodes
    firsts = [s[:a] for s, (a, _) in zip(seqs, splits, strict=True)]
    cu = torch.tensor([0, *torch.tensor([len(f) for f in firsts]).cumsum(0).tolist()])
    y1 = ref.conv1d_varlen(
        torch.cat(firsts), weight, state, cu, torch.tensor([1, 2, 3]),
        torch.tensor([False] * 3), torch.tensor([4, -1, 5]), torch.tensor([0, -1, 10]),
    )  # fmt: skip
    for i, f in enumerate(firsts):
        torch.testing.assert_close(y1[cu[i] : cu[i + 1]], full(seqs[i])[: len(f)])
    # checkpoint windows: zeros before any token; rows 7..9 after 10 tokens
    assert torch.equal(state[4], torch.zeros(channels, width - 1))
    assert torch.equal(state[5], seqs[2][7:10].t())
    # continue: one decode step for every sequence, then a varlen chunk
    y2 = ref.conv1d_decode(
        torch.stack([s[a] for s, (a, _) in zip(seqs, splits, strict=True)]), weight, state,
        torch.tensor([1, 2, 3]), torch.tensor([True] * 3),
    )  # fmt: skip
    for i, (a, _) in enumerate(splits):
        torch.testing.assert_close(y2[i], full(seqs[i])[a])
    rests = [s[a + 1 :] for s, (a, _) in zip(seqs, splits, strict=True)]
    cu = torch.tensor([0, *torch.tensor([len(r) for r in rests]).cumsum(0).tolist()])
    y3 = ref.conv1d_varlen(
        torch.cat(rests), weight, state, cu, torch.tensor([1, 2, 3]), torch.tensor([True] * 3)
    )
    for i, (a, _) in enumerate(splits):
        torch.testing.assert_close(y3[cu[i] : cu[i + 1]], full(seqs[i])[a + 1 :])
    for i, slot in enumerate([1, 2, 3]):  # final window: last K-1 pre-conv rows (0-padded)
        padded = torch.cat([torch.zeros(width - 1, channels), seqs[i]])
        assert torch.equal(state[slot], padded[-(width - 1) :].t())


# ---- attention -------------------------------------------------------------------------------
def test_paged_attention_matches_causal_sdpa() -> None:
    nh, nkv, hd, page = 6, 2, 8, 16
    g = gen(10)
    totals, prefixes = [5, 40, 100, 33], [0, 17, 64, 32]  # new tokens = total - prefix
    k_cache = torch.full((40, page, nkv, hd), float("nan"))
    v_cache = torch.full((40, page, nkv, hd), float("nan"))
    free = (torch.randperm(39, generator=g) + 1).tolist()  # scattered pages, never page 0
    seqs = []
    for total in totals:
        pages = [free.pop() for _ in range(-(-total // page))]
        seqs.append(
            {
                "q": torch.randn(total, nh, hd, generator=g),
                "k": torch.randn(total, nkv, hd, generator=g),
                "v": torch.randn(total, nkv, hd, generator=g),
                "pages": pages,
            }
        )

    def rows(s: dict, lo: int, hi: int) -> torch.Tensor:
        pos = torch.arange(lo, hi)
        return torch.tensor(s["pages"])[pos // page] * page + pos % page

    for s, p in zip(seqs, prefixes, strict=True):  # the cached prefixes
        ref.write_kv_cache(s["k"][:p], s["v"][:p], k_cache, v_cache, rows(s, 0, p))
    new = [(s, p, t) for s, p, t in zip(seqs, prefixes, totals, strict=True)]
    kv_idx = torch.cat([rows(s, p, t) for s, p, t in new])
    ref.write_kv_cache(
        torch.cat([s["k"][p:] for s, p, _ in new]), torch.cat([s["v"][p:] for s, p, _ in new]),
        k_cache, v_cache, kv_idx,
    )  # fmt: skip
    max_pages = max(len(s["pages"]) for s in seqs)
    table = torch.tensor([s["pages"] + [0] * (max_pages - len(s["pages"])) for s in seqs])
    lens = torch.tensor([t - p for _, p, t in new])
    cu = torch.cat([torch.zeros(1, dtype=torch.long), lens.cumsum(0)]).int()
    out = ref.paged_attention(
        torch.cat([s["q"][p:] for s, p, _ in new]), k_cache, v_cache, table.int(), cu,
        torch.tensor(prefixes, dtype=torch.int32), hd**-0.5,
    )  # fmt: skip
    for i, (s, p, t) in enumerate(new):
        q = s["q"].transpose(0, 1)[None]
        k = s["k"].transpose(0, 1)[None]
        v = s["v"].transpose(0, 1)[None]
        want = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        torch.testing.assert_close(out[cu[i] : cu[i + 1]], want[0].transpose(0, 1)[p:t])


# ---- norms, rope, activation ---------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_norms_bit_identical_to_hf(dtype: torch.dtype) -> None:
    g = gen(11)
    x = torch.randn(7, 3, 24, generator=g).to(dtype)
    res = torch.randn(7, 3, 24, generator=g).to(dtype)
    z = torch.randn(7, 3, 24, generator=g).to(dtype)
    norm = hf.Qwen3_5RMSNorm(24, eps=1e-6).to(dtype)
    gated = hf.Qwen3_5RMSNormGated(24, eps=1e-6)  # weight kept fp32, as TokenSpeed loads it
    with torch.no_grad():
        norm.weight.copy_(torch.randn(24, generator=g) * 0.1)
        gated.weight.copy_(1 + torch.randn(24, generator=g) * 0.1)
        assert torch.equal(ref.rms_norm(x, norm.weight, 1e-6), norm(x))
        normed, resid = ref.add_rms_norm(x, res, norm.weight, 1e-6)
        assert torch.equal(resid, x + res) and torch.equal(normed, norm(x + res))
        assert torch.equal(ref.gated_rms_norm(x, z, gated.weight, 1e-6), gated(x, z))


def test_partial_neox_rope_rotates_pairs_j_and_j_plus_half() -> None:
    rotary_dim, hd, theta = 8, 20, 10_000.0
    g = gen(12)
    q, k = torch.randn(5, 3, hd, generator=g), torch.randn(5, 1, hd, generator=g)
    pos = torch.tensor([0, 1, 7, 100, 4095])
    inv = ref.rope_inv_freq(rotary_dim, theta)
    torch.testing.assert_close(inv, theta ** (-torch.arange(0, rotary_dim, 2) / rotary_dim))
    q2, k2 = ref.apply_rope(q, k, pos, inv)
    half = rotary_dim // 2
    for x, y in ((q, q2), (k, k2)):
        assert torch.equal(y[..., rotary_dim:], x[..., rotary_dim:])  # pass-through dims
        for j in range(half):
            ang = (pos.float() * inv[j]).double()[:, None]  # fp32 angle, like HF
            a, b = x[..., j].double(), x[..., j + half].double()
            want_a, want_b = a * ang.cos() - b * ang.sin(), b * ang.cos() + a * ang.sin()
            torch.testing.assert_close(y[..., j].double(), want_a, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(y[..., j + half].double(), want_b, atol=1e-5, rtol=1e-5)


def test_silu_and_mul_gate_first() -> None:
    x = torch.randn(4, 10, generator=gen(13))
    torch.testing.assert_close(ref.silu_and_mul(x), F.silu(x[:, :5]) * x[:, 5:])


# ---- MoE -----------------------------------------------------------------------------------
@pytest.mark.parametrize("renormalize", [True, False])
def test_moe_route_and_experts_match_per_token_loop(renormalize: bool) -> None:
    n, h, e, im, top = 9, 12, 5, 7, 2
    g = gen(14)
    x = torch.randn(n, h, generator=g)
    logits = torch.randn(n, e, generator=g) * 2
    gate_up = torch.randn(e, 2 * im, h, generator=g) / h**0.5
    down = torch.randn(e, h, im, generator=g) / im**0.5
    weights, ids = ref.moe_route(logits, top, renormalize)
    out = ref.moe_experts(x, gate_up, down, weights, ids)
    for t in range(n):
        probs = logits[t].softmax(-1)
        chosen = probs.argsort(descending=True)[:top]
        assert set(ids[t].tolist()) == set(chosen.tolist())
        w = probs[chosen] / (probs[chosen].sum() if renormalize else 1.0)
        want = sum(
            w[j] * (down[c] @ (F.silu(gate_up[c, :im] @ x[t]) * (gate_up[c, im:] @ x[t])))
            for j, c in enumerate(chosen.tolist())
        )
        torch.testing.assert_close(out[t], want, atol=1e-5, rtol=1e-5)
    shared, gate_logit = torch.randn(n, h, generator=g), torch.randn(n, 1, generator=g)
    torch.testing.assert_close(
        ref.add_gated_shared_expert(out, shared, gate_logit), out + gate_logit.sigmoid() * shared
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_shared_expert_as_expert_e_is_the_spec_sum(dtype: torch.dtype) -> None:
    """`moe_route_shared` + `moe_experts` over E+1 experts == spec §2.6: the routed sum, then
    ``+ sigmoid(gate logit) * shared_mlp(x)`` (the shared expert is added last, as HF does)."""
    n, h, e, im, top = 11, 12, 5, 7, 3
    g = gen(15)
    x = torch.randn(n, h, generator=g).to(dtype)
    logits = (torch.randn(n, e + 1, generator=g) * 2).to(dtype)  # last column: shared gate
    gate_up = (torch.randn(e + 1, 2 * im, h, generator=g) / h**0.5).to(dtype)
    down = (torch.randn(e + 1, h, im, generator=g) / im**0.5).to(dtype)
    weights, ids = ref.moe_route_shared(logits, top, True)
    want_w, want_ids = ref.moe_route(logits[:, :e], top, True)
    assert torch.equal(ids, torch.cat([want_ids, torch.full((n, 1), e)], 1))
    assert torch.equal(weights[:, :top], want_w)
    assert torch.equal(weights[:, top], torch.sigmoid(logits[:, e]))
    got = ref.moe_experts(x, gate_up, down, weights, ids)
    routed = ref.moe_experts(x, gate_up[:e], down[:e], want_w, want_ids)
    gate, up = F.linear(x, gate_up[e]).chunk(2, dim=-1)
    shared = F.linear(F.silu(gate) * up, down[e])
    want = ref.add_gated_shared_expert(routed, shared, logits[:, e:])
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0 if dtype == torch.bfloat16 else 1e-6)


# ---- registry -------------------------------------------------------------------------------
def test_backend_registry_dispatch_and_fallback() -> None:
    assert get_backend() == "reference"
    with pytest.raises(ValueError, match="unknown kernel backend 'nope'"):
        set_backend("nope")
    calls = []

    def fake_silu_and_mul(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape)
        return ref.silu_and_mul(x)

    register("test-backend", "silu_and_mul", fake_silu_and_mul)
    set_backend("test-backend")
    try:
        x = torch.randn(2, 4)
        ops.silu_and_mul(x)
        assert calls == [x.shape]
        assert lookup("rms_norm") is ref.rms_norm  # not provided: falls back to the reference
    finally:
        set_backend("reference")
    ops.silu_and_mul(x)
    assert len(calls) == 1
