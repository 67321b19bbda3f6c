"""MoE / RoPE / activation kernels and a 4-layer model slice on the GPU, at the real layer shapes
of Qwen3.5-35B-A3B and Qwen3.5-397B-A17B (bf16; dummy weights generated on the device).

Tolerances. Elementwise kernels (RoPE, fused q/k input, silu_and_mul, shared gate): 2e-2
absolute + relative, a couple of bf16 ulps. Expert GEMMs: each output is rounded ~6 times in
bf16 on both sides and the reference sums the k experts in bf16 while the kernel sums in fp32,
so the bound is 2% of the output's range (max abs) and 1% normwise. The model slice: see
`test_four_layer_slice_same_logits_on_both_paths`.
Run on a CUDA machine: ``PYTHONPATH=python python -m pytest tests/gpu -q``.
"""

from __future__ import annotations

import gc

import pytest
import torch
import torch.nn.functional as F
from tokenspeed.config import ModelConfig
from tokenspeed.kernels import reference as ref
from tokenspeed.kernels import register, set_backend

pytestmark = pytest.mark.gpu
if not torch.cuda.is_available():
    pytest.skip("needs CUDA", allow_module_level=True)

import tokenspeed.kernels.triton as tk  # noqa: E402
from tokenspeed.models import Qwen3_5Model, SequenceChunk, build_batch  # noqa: E402
from tokenspeed.weights import shares_expert_slot  # noqa: E402
from tokenspeed.weights.dummy import dummy_weights  # noqa: E402

DEV, BF16 = "cuda", torch.bfloat16

# Per-layer shapes (spec §1.3); num_hidden_layers=4 with interval 4 = lin, lin, lin, full.
SHAPES = {
    "35B-A3B": dict(hidden_size=2048, num_attention_heads=16, linear_num_value_heads=32,
                    num_experts=256, num_experts_per_tok=8, moe_intermediate_size=512,
                    shared_expert_intermediate_size=512),
    "397B-A17B": dict(hidden_size=4096, num_attention_heads=32, linear_num_value_heads=64,
                      num_experts=512, num_experts_per_tok=10, moe_intermediate_size=1024,
                      shared_expert_intermediate_size=1024),
}  # fmt: skip


def config(name: str) -> ModelConfig:
    rope = {"rope_type": "default", "rope_theta": 10_000_000, "partial_rotary_factor": 0.25}
    return ModelConfig.from_hf_dict({
        "model_type": "qwen3_5_moe_text", "vocab_size": 248320, "num_hidden_layers": 4,
        "num_key_value_heads": 2, "head_dim": 256, "linear_num_key_heads": 16,
        "linear_key_head_dim": 128, "linear_value_head_dim": 128, "linear_conv_kernel_dim": 4,
        "full_attention_interval": 4, "rope_parameters": rope, "rms_norm_eps": 1e-6,
        "max_position_embeddings": 262144, "tie_word_embeddings": False, "dtype": "bfloat16",
        **SHAPES[name],
    })  # fmt: skip


def rnd(*shape: int, scale: float = 1.0) -> torch.Tensor:
    return (torch.randn(*shape, device=DEV) * scale).to(BF16)


def close(got: torch.Tensor, want: torch.Tensor) -> None:
    torch.testing.assert_close(got.float(), want.float(), atol=2e-2, rtol=2e-2)


def close_ranged(got: torch.Tensor, want: torch.Tensor, span: float, normwise: float) -> None:
    diff = (got.float() - want.float()).abs()
    assert diff.max() <= span * want.float().abs().max(), (diff.max(), want.abs().max())
    assert diff.norm() <= normwise * want.float().norm(), (diff.norm(), want.float().norm())


@pytest.fixture(autouse=True)
def seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("name", SHAPES)
def test_moe_route_and_experts(name: str) -> None:
    cfg = config(name)
    h, e, k, im = (
        cfg.hidden_size,
        cfg.num_experts,
        cfg.num_experts_per_tok,
        cfg.moe_intermediate_size,
    )
    # e + 1 experts, the last the shared one (as the model stores them for these presets)
    w_gate_up, w_down = rnd(e + 1, 2 * im, h, scale=0.02), rnd(e + 1, h, im, scale=0.02)
    for tokens in (1, 8, 32, 1000):  # GEMV decode path up to 32 tokens, token-sorted above
        x = rnd(tokens, h)
        logits = rnd(tokens, e + 1)  # the routed experts', then the shared gate's
        weights, ids = tk.moe.moe_route(logits[:, :e], k, True)
        want_w, want_ids = ref.moe_route(logits[:, :e], k, True)
        close(weights, want_w)
        # bf16 logits can tie: compare the chosen probabilities, not the indices
        probs = torch.softmax(logits[:, :e].float(), -1)
        close(probs.gather(1, ids).sort(1).values, probs.gather(1, want_ids).sort(1).values)
        got = tk.moe.moe_experts(x, w_gate_up[:e], w_down[:e], want_w, want_ids)
        want = ref.moe_experts(x, w_gate_up[:e], w_down[:e], want_w, want_ids)
        close_ranged(got, want, 0.02, 0.01)
        # the shared expert as expert e: every token's slot k, weight sigmoid(gate logit)
        weights, ids = tk.moe.moe_route_shared(logits, k, True)
        want_w, want_ids = ref.moe_route_shared(logits, k, True)
        assert torch.equal(ids[:, k], want_ids[:, k]) and (ids[:, k] == e).all()
        close(weights[:, k], want_w[:, k])
        got = tk.moe.moe_experts(x, w_gate_up, w_down, want_w, want_ids)
        want = ref.moe_experts(x, w_gate_up, w_down, want_w, want_ids)
        close_ranged(got, want, 0.02, 0.01)
    routed, shared, gate = rnd(1000, h), rnd(1000, h), rnd(1000, 1)
    close(
        tk.moe.add_gated_shared_expert(routed, shared, gate),
        ref.add_gated_shared_expert(routed, shared, gate),
    )
    x = rnd(1000, 2 * cfg.shared_expert_intermediate_size)
    close(tk.activation.silu_and_mul(x), ref.silu_and_mul(x))


@pytest.mark.parametrize("name", SHAPES)
def test_rope_and_fused_attention_input(name: str) -> None:
    cfg = config(name)
    nh, nkv, hd, tokens, page = cfg.num_attention_heads, 2, 256, 1000, 64
    inv_freq = ref.rope_inv_freq(cfg.rotary_dim, cfg.rope_theta, DEV)
    positions = torch.randint(0, 200_000, (tokens,), device=DEV)
    q, k = rnd(tokens, nh, 2 * hd)[..., :hd], rnd(tokens, nkv, hd)
    for got, want in zip(tk.rope.apply_rope(q, k, positions, inv_freq),
                         ref.apply_rope(q, k, positions, inv_freq), strict=True):  # fmt: skip
        close(got, want)
    qkv = rnd(tokens, 2 * nh * hd + 2 * nkv * hd)
    q_norm, k_norm = rnd(hd, scale=0.1), rnd(hd, scale=0.1)
    rows = torch.randperm(40 * page, device=DEV)[:tokens]
    caches = [torch.zeros(40, page, nkv, hd, dtype=BF16, device=DEV) for _ in range(4)]
    common = (q_norm, k_norm, 1e-6, positions, inv_freq, nh, nkv, hd)
    got = tk.rope.qk_norm_rope_kv_write(qkv, *common, caches[0], caches[1], rows)
    want = ref.qk_norm_rope_kv_write(qkv, *common, caches[2], caches[3], rows)
    close(got[0], want[0])
    assert torch.equal(got[1], want[1])
    close(caches[0], caches[2])
    assert torch.equal(caches[1], caches[3])


def slice_logits(model: Qwen3_5Model, backend: str) -> torch.Tensor:
    """Two prefills packed in one step (one resumed from a cached prefix), then a decode step of
    both sequences; the logits of every new token, fp32."""
    page = 64
    gen = torch.Generator().manual_seed(2)
    a = torch.randint(0, model.cfg.vocab_size, (700,), generator=gen).tolist()
    b = torch.randint(0, model.cfg.vocab_size, (300,), generator=gen).tolist()
    steps = [
        [(0, a[:512], 0)],
        [(0, a[512:699], 512), (1, b[:299], 0)],
        [(0, a[699:700], 699), (1, b[299:300], 299)],
    ]
    pages = {0: list(range(1, 13)), 1: list(range(13, 19))}
    set_backend(backend)
    try:
        kv, state = model.new_kv_cache(20, page), model.new_state_cache(4)
        out = []
        for step in steps:
            chunks = [
                SequenceChunk(tokens=toks, prefix_len=pre, pages=pages[s], slot=s + 1,
                              has_initial_state=pre > 0, all_logits=True)
                for s, toks, pre in step
            ]  # fmt: skip
            out.append(model.forward(build_batch(chunks, page, DEV), kv, state).float())
        return torch.cat(out)
    finally:
        set_backend("reference")


def normwise(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got - want).norm() / want.norm()).item()


TRUTH = "fp32-truth"  # reference ops in fp32; experts upcast one expert at a time
# Kept bf16 in the truth model: the experts' tensors, the shared expert's included (it is
# expert E of them, views of one buffer: an fp32 copy would not be)
EXPERT_WEIGHTS = ("experts.gate_up_proj", "experts.down_proj", "shared_expert.gate_proj.weight",
                  "shared_expert.up_proj.weight", "shared_expert.down_proj.weight")  # fmt: skip


def moe_experts_fp32(
    x: torch.Tensor,
    w_gate_up: torch.Tensor,
    w_down: torch.Tensor,
    weights: torch.Tensor,
    ids: torch.Tensor,
) -> torch.Tensor:
    """`reference.moe.moe_experts` in fp32 over bf16 expert weights, each expert upcast when
    used: 397B-A17B's experts in fp32 would not fit in 80 GB, one expert at a time does."""
    out = torch.zeros_like(x)
    for expert in torch.unique(ids).tolist():
        token_idx, slot = torch.where(ids == expert)
        gate, up = F.linear(x[token_idx], w_gate_up[expert].float()).chunk(2, dim=-1)
        y = F.linear(F.silu(gate) * up, w_down[expert].float()) * weights[token_idx, slot, None]
        out.index_add_(0, token_idx, y)
    return out


def agreement(got: torch.Tensor, want: torch.Tensor) -> float:
    return (got.argmax(-1) == want.argmax(-1)).float().mean().item()


@pytest.mark.parametrize("name", SHAPES)
def test_four_layer_slice_same_logits_on_both_paths(name: str) -> None:
    """Both bf16 paths are as close to the fp32 truth as bf16 allows (issue 7: "agrees with the
    CPU fp32 reference within bf16 tolerance"), the Triton path no further than the reference.

    The truth is the same weights run in fp32 on the reference ops. Why not bound Triton vs
    reference directly: random-weight layers amplify rounding and bf16 router logits tie, so
    ulp-level differences grow to a few % of the logits. Measured on the H100 (35B-A3B, commit
    fa75c5d, benches/results/gpu-tests-slice-diag-2026-11-22.log): the bf16 reference path is
    0.0502 normwise from fp32; swapping one op for its Triton kernel that differs only in a
    bf16 summation order (the MoE k-expert sum in fp32, the shared-expert add) already moves
    the logits 0.022 from the reference path; the GDN chunk kernel with bf16 intermediates
    (w, u, v_new, h stored in bf16, bf16 dots: flash-linear-attention's precision) moves them
    0.045, yet the Triton path is 0.0487 from fp32, closer than the reference path (397B-A17B:
    reference 0.0422, Triton 0.0427; gpu-tests-slice-truth-2026-11-22.log). So the
    distance between the two bf16 paths measures how two roundings diverge, not which is
    wrong; the distance to fp32 does. Bounds: Triton's normwise error to fp32 at most 1.25x
    the reference path's + 0.005 (a quarter more than the reference path's own bf16 rounding
    noise; the GDN precision variants above span 0.0478-0.0506), and its arg-max agreement with fp32 at most 0.03 below the
    reference path's (30 of 1002 rows; ulp-level op swaps flip up to 5% of rows)."""
    register(TRUTH, "moe_experts", moe_experts_fp32)
    cfg = config(name)
    weights = dummy_weights(cfg, BF16, DEV, seed=1)
    # fp32 copies of every weight but the experts (shared with the bf16 model, upcast per use)
    assert shares_expert_slot(cfg)  # else the bf16 shared expert would be a separate fp32 MLP's
    fp32 = Qwen3_5Model(cfg, {
        n: w if n.endswith(EXPERT_WEIGHTS) else w.float() for n, w in weights.items()
    })  # fmt: skip
    truth = slice_logits(fp32, TRUTH)
    del fp32
    gc.collect()
    model = Qwen3_5Model(cfg, weights)
    want, got = slice_logits(model, "reference"), slice_logits(model, "triton")
    del model, weights
    gc.collect()
    torch.cuda.empty_cache()
    err_ref, err_tri = normwise(want, truth), normwise(got, truth)
    agree_ref, agree_tri = agreement(want, truth), agreement(got, truth)
    report = (
        f"{name}: vs fp32: reference normwise {err_ref:.5f} argmax {agree_ref:.4f}, triton "
        f"normwise {err_tri:.5f} argmax {agree_tri:.4f}; triton vs reference normwise "
        f"{normwise(got, want):.5f} argmax {agreement(got, want):.4f}"
    )
    print(report)
    assert err_tri <= 1.25 * err_ref + 0.005, report
    assert agree_tri >= agree_ref - 0.03, report
