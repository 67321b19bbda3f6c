"""GDN decode in Triton: one gated-delta-rule step per sequence, state updated in place.

Semantics: `reference/gdn.py::gdn_recurrent`. A program owns one (sequence, value head,
block of ``BV`` value columns): the update ``S = e^g S + k (beta (v - Sᵀk))ᵀ`` and the readout
``o = Sᵀq`` are independent per value column, so splitting over columns is exact and gives
enough programs at batch 1. The fp32 state is read from and written to ``state[slot]``
directly (no gather/scatter copies); gating, q/k L2-norm and the q scale are fused in.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from tokenspeed.kernels.triton.common import check_device, next_pow2, pdl_launch, pdl_supported

L2NORM_EPS = 1e-6
# Below this batch the decode step is latency-bound: the state tile loads under PDL's overlap.
EARLY_STATE_MAX_BATCH = 32


@triton.jit
def gdn_gate_values(a, b_raw, A_log, dt_bias):
    """fp32 log-decay ``g = -exp(A_log) softplus(a + dt_bias)`` (PyTorch's threshold 20) and
    ``beta = sigmoid(b)`` rounded to b's dtype first, as the reference does."""
    x = a.to(tl.float32) + dt_bias.to(tl.float32)
    softplus = tl.where(x > 20.0, x, tl.log(1.0 + tl.exp(tl.minimum(x, 20.0))))
    g = -tl.exp(A_log.to(tl.float32)) * softplus
    beta = tl.sigmoid(b_raw.to(tl.float32)).to(b_raw.dtype).to(tl.float32)
    return g, beta


@triton.jit
def _gdn_decode_kernel(
    q_ptr, q_sb, q_sh, k_ptr, k_sb, k_sh, v_ptr, v_sb, v_sh,
    a_ptr, a_sb, b_ptr, b_sb, A_log_ptr, dt_bias_ptr,
    state_ptr, slot_ptr, init_ptr, ckpt_slot_ptr, ckpt_off_ptr, out_ptr,
    HV, R, DK, DV, scale,
    HAS_CKPT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, GDC: tl.constexpr = False,
    EARLY_STATE: tl.constexpr = False,
):  # fmt: skip
    """``EARLY_STATE`` (with PDL, small batches) loads the state tile (an earlier step's)
    before the wait, so its latency hides under the conv kernel; otherwise it loads after q, k,
    v, a and b, which streams faster once the batch is bandwidth-bound (B >= 32 on the H200:
    70.7% of HBM against 62.9% at 32, 74.4% against 69.3% at 256)."""
    if GDC:
        tl.extra.cuda.gdc_launch_dependents()
    pid_bh = tl.program_id(0)
    b = pid_bh // HV
    hv = pid_bh % HV
    hk = hv // R  # grouped values: consecutive value heads share a q/k head
    kk = tl.arange(0, BK)
    vv = tl.program_id(1) * BV + tl.arange(0, BV)
    k_ok = kk < DK
    v_ok = vv < DV
    b64 = b.to(tl.int64)
    slot = tl.load(slot_ptr + b).to(tl.int64)
    has_init = tl.load(init_ptr + b).to(tl.int32)
    head_base = (slot * HV + hv) * DK * DV
    tile = kk[:, None] * DV + vv[None, :]
    mask = k_ok[:, None] & v_ok[None, :]
    # Without initial state the slot is not read at all (it may hold garbage, even NaN).
    init_mask = mask & ((kk * 0 + has_init) != 0)[:, None]
    if EARLY_STATE:
        s = tl.load(state_ptr + head_base + tile, mask=init_mask, other=0.0)
    A_log = tl.load(A_log_ptr + hv)
    dt_bias = tl.load(dt_bias_ptr + hv)
    if GDC:
        tl.extra.cuda.gdc_wait()
    q = tl.load(q_ptr + b64 * q_sb + hk * q_sh + kk, mask=k_ok, other=0.0).to(tl.float32)
    k = tl.load(k_ptr + b64 * k_sb + hk * k_sh + kk, mask=k_ok, other=0.0).to(tl.float32)
    v = tl.load(v_ptr + b64 * v_sb + hv * v_sh + vv, mask=v_ok, other=0.0).to(tl.float32)
    q = q * tl.rsqrt(tl.sum(q * q) + 1e-6) * scale
    k = k * tl.rsqrt(tl.sum(k * k) + 1e-6)
    g, beta = gdn_gate_values(
        tl.load(a_ptr + b64 * a_sb + hv), tl.load(b_ptr + b64 * b_sb + hv), A_log, dt_bias
    )
    if not EARLY_STATE:
        s = tl.load(state_ptr + head_base + tile, mask=init_mask, other=0.0)
    before = s
    s = s * tl.exp(g)
    u = beta * (v - tl.sum(s * k[:, None], axis=0))
    s = s + k[:, None] * u[None, :]
    o = tl.sum(s * q[:, None], axis=0)
    tl.store(state_ptr + head_base + tile, s, mask=mask)
    if HAS_CKPT:
        ck_slot = tl.load(ckpt_slot_ptr + b).to(tl.int64)
        after = (tl.load(ckpt_off_ptr + b) == 1).to(tl.float32)
        ck = after * s + (1.0 - after) * before
        ck_mask = mask & ((kk * 0 + ck_slot) >= 0)[:, None]  # vector mask (interpreter)
        tl.store(state_ptr + (ck_slot * HV + hv) * DK * DV + tile, ck, mask=ck_mask)
    tl.store(out_ptr + (b64 * HV + hv) * DV + vv, o.to(out_ptr.dtype.element_ty), mask=v_ok)


def gdn_recurrent(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    a: Tensor,
    b: Tensor,
    A_log: Tensor,
    dt_bias: Tensor,
    state: Tensor,
    slot_ids: Tensor,
    has_initial_state: Tensor,
    checkpoint_slots: Tensor | None = None,
    checkpoint_offsets: Tensor | None = None,
) -> Tensor:
    """See `reference.gdn.gdn_recurrent`. No host sync: CUDA-graph capturable."""
    batch, hk, dk = q.shape
    hv, dv = v.shape[1], v.shape[2]
    if state.dtype != torch.float32 or state.shape[1:] != (hv, dk, dv):
        raise ValueError(f"state must be fp32 [slots, {hv}, {dk}, {dv}], got {state.dtype} "
                         f"{tuple(state.shape)}")  # fmt: skip
    if hv % hk or not state.is_contiguous():
        raise ValueError("need Hv divisible by Hk and a contiguous state")
    if (checkpoint_slots is None) != (checkpoint_offsets is None):
        raise ValueError("checkpoint_slots and checkpoint_offsets go together")
    for t in (q, k, v, a, b):
        if t.stride(-1) != 1:
            raise ValueError("q, k, v, a, b need a unit stride on their last dim")
    check_device(q, state)
    out = torch.empty((batch, hv, dv), dtype=q.dtype, device=q.device)
    if batch == 0:
        return out
    has_ckpt = checkpoint_slots is not None
    bv = min(32, next_pow2(dv, 16))
    grid = (batch * hv, triton.cdiv(dv, bv))
    gdc = pdl_supported(q)
    _gdn_decode_kernel[grid](
        q, q.stride(0), q.stride(1), k, k.stride(0), k.stride(1), v, v.stride(0), v.stride(1),
        a, a.stride(0), b, b.stride(0), A_log, dt_bias,
        state, slot_ids, has_initial_state,
        checkpoint_slots if has_ckpt else slot_ids, checkpoint_offsets if has_ckpt else slot_ids,
        out, hv, hv // hk, dk, dv, dk**-0.5,
        HAS_CKPT=has_ckpt, BK=next_pow2(dk, 16), BV=bv, GDC=gdc,
        EARLY_STATE=gdc and batch < EARLY_STATE_MAX_BATCH, num_warps=4,
        **pdl_launch(gdc),
    )  # fmt: skip
    return out
