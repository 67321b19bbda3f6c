"""Gated delta rule of the GDN layer (spec §2.5 steps 4-7, §6), gating and q/k norm fused in.

Inputs are the conv outputs split into ``q``/``k`` ``[.., Hk, dk]`` and ``v`` ``[.., Hv, dv]``
plus the raw gate projections ``a``, ``b`` ``[.., Hv]``. Inside, in fp32:
``g = -exp(A_log) * softplus(a + dt_bias)``, ``beta = sigmoid(b)``, q/k L2-normalised
(eps 1e-6 inside the rsqrt), q scaled by ``dk^-0.5``, value head ``h`` reading q/k head
``h // (Hv/Hk)``. Per value head the fp32 state ``S`` ``[dk, dv]`` evolves as
``S = exp(g) S;  S += k (beta (v - Sᵀk))ᵀ;  o = Sᵀ q``.

States live in slots: ``state[slot]`` is ``[Hv, dk, dv]`` fp32. A sequence without initial
state starts from zeros. ``checkpoint_slots[b] >= 0`` writes the state after exactly
``checkpoint_offsets[b]`` of this step's new tokens into that slot (see conv.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from tokenspeed.kernels.reference.conv import _check_offset, _checkpoints

L2NORM_EPS = 1e-6


def gdn_gates(a: Tensor, b: Tensor, A_log: Tensor, dt_bias: Tensor) -> tuple[Tensor, Tensor]:
    """fp32 log-decay ``g`` (<= 0) and write strength ``beta``; beta is taken in the input
    dtype first, as HF does."""
    g = -A_log.float().exp() * F.softplus(a.float() + dt_bias.float())
    return g, b.sigmoid().float()


def _prepare_qk(q: Tensor, k: Tensor, num_v_heads: int) -> tuple[Tensor, Tensor]:
    """fp32 L2 norm, q scale, and the grouped-value head expansion (``h // r``)."""
    q, k = q.float(), k.float()
    q = q * torch.rsqrt((q * q).sum(-1, keepdim=True) + L2NORM_EPS)
    k = k * torch.rsqrt((k * k).sum(-1, keepdim=True) + L2NORM_EPS)
    q = q * q.shape[-1] ** -0.5
    r = num_v_heads // q.shape[-2]
    return q.repeat_interleave(r, dim=-2), k.repeat_interleave(r, dim=-2)


def gdn_chunked(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    a: Tensor,
    b: Tensor,
    A_log: Tensor,
    dt_bias: Tensor,
    state: Tensor,
    cu_seqlens: Tensor,
    slot_ids: Tensor,
    has_initial_state: Tensor,
    checkpoint_slots: Tensor | None = None,
    checkpoint_offsets: Tensor | None = None,
    chunk_size: int = 64,
) -> Tensor:
    """Packed varlen prefill in the chunked WY/UT form (spec §6.2). ``q``, ``k`` ``[T, Hk, dk]``,
    ``v`` ``[T, Hv, dv]``, ``a``, ``b`` ``[T, Hv]``. Returns ``o`` ``[T, Hv, dv]`` in ``q.dtype``."""
    num_v_heads = v.shape[1]
    g, beta = gdn_gates(a, b, A_log, dt_bias)
    qf, kf = _prepare_qk(q, k, num_v_heads)
    vf = v.float()
    out = torch.empty(v.shape, dtype=torch.float32, device=v.device)
    bounds = cu_seqlens.tolist()
    slots = slot_ids.tolist()
    has_init = has_initial_state.tolist()
    ckpt_slots, ckpt_offsets = _checkpoints(checkpoint_slots, checkpoint_offsets, len(slots))
    for i, slot in enumerate(slots):
        start, end = bounds[i], bounds[i + 1]
        s = state[slot].clone() if has_init[i] else state.new_zeros(state.shape[1:])
        # A checkpoint splits the sequence in two runs so the state at the offset exists.
        mid = start
        if ckpt_slots[i] >= 0:
            mid = start + _check_offset(ckpt_offsets[i], end - start)
            s = _run(qf, kf, vf, g, beta, s, out, start, mid, chunk_size)
            state[ckpt_slots[i]] = s
        s = _run(qf, kf, vf, g, beta, s, out, mid, end, chunk_size)
        state[slot] = s
    return out.to(q.dtype)


def _run(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    g: Tensor,
    beta: Tensor,
    s: Tensor,
    out: Tensor,
    start: int,
    end: int,
    chunk: int,
) -> Tensor:
    """Rows ``[start, end)`` of one sequence from state ``s``; writes ``out``, returns the state."""
    if end > start:
        seg = slice(start, end)
        out[seg], s = _chunked_one(q[seg], k[seg], v[seg], g[seg], beta[seg], s, chunk)
    return s


def _chunked_one(
    q: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor, s: Tensor, chunk: int
) -> tuple[Tensor, Tensor]:
    """One sequence, heads as the batch dim. q, k ``[n, Hv, dk]``; v ``[n, Hv, dv]``; g, beta
    ``[n, Hv]``; s ``[Hv, dk, dv]``. Returns (o ``[n, Hv, dv]``, final s)."""
    q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)  # [Hv, n, d]
    g, beta = g.t(), beta.t()  # [Hv, n]
    n = q.shape[1]
    out = torch.empty_like(v)
    for c0 in range(0, n, chunk):
        c1 = min(c0 + chunk, n)
        qc, kc, vc, bc = q[:, c0:c1], k[:, c0:c1], v[:, c0:c1], beta[:, c0:c1, None]
        gamma = g[:, c0:c1].cumsum(-1)  # [Hv, L] log-decay since the chunk start
        length = c1 - c0
        causal = torch.ones(length, length, dtype=torch.bool, device=q.device).tril()
        diff = (gamma[:, :, None] - gamma[:, None, :]).masked_fill(~causal, float("-inf"))
        decay = diff.exp()  # Γ_ij = exp(γ_i − γ_j) for i >= j, else 0
        a_mat = ((bc * kc) @ kc.transpose(1, 2) * decay).tril(-1)
        eye = torch.eye(length, dtype=q.dtype, device=q.device)
        system = eye + a_mat  # T = (I + A)^-1, applied by a unit-lower-triangular solve
        u = torch.linalg.solve_triangular(system, bc * vc, upper=False, unitriangular=True)
        w = torch.linalg.solve_triangular(
            system, bc * kc * gamma.exp()[..., None], upper=False, unitriangular=True
        )
        v_new = u - w @ s
        out[:, c0:c1] = (qc * gamma.exp()[..., None]) @ s + (
            qc @ kc.transpose(1, 2) * decay
        ) @ v_new
        last = gamma[:, -1:]  # [Hv, 1]
        s = (
            last.exp()[..., None] * s
            + (kc * (last - gamma).exp()[..., None]).transpose(1, 2) @ v_new
        )
    return out.transpose(0, 1), s


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
    """Decode: one token per sequence, ``q``, ``k`` ``[B, Hk, dk]``, ``v`` ``[B, Hv, dv]``,
    ``a``, ``b`` ``[B, Hv]``; one recurrent step per sequence (checkpoint offsets 0 or 1)."""
    g, beta = gdn_gates(a, b, A_log, dt_bias)
    qf, kf = _prepare_qk(q, k, v.shape[1])
    s = state[slot_ids]  # [B, Hv, dk, dv] (a copy)
    s = torch.where(has_initial_state[:, None, None, None], s, torch.zeros_like(s))
    before = s
    s = s * g.exp()[..., None, None]
    kv = (s * kf[..., None]).sum(-2)  # Sᵀk: [B, Hv, dv]
    u = beta[..., None] * (v.float() - kv)
    s = s + kf[..., None] * u[..., None, :]
    o = (s * qf[..., None]).sum(-2)
    if checkpoint_slots is not None:
        assert checkpoint_offsets is not None
        chosen = (checkpoint_slots >= 0).nonzero().squeeze(1)
        if chosen.numel():
            after = (checkpoint_offsets[chosen] == 1)[:, None, None, None]
            state[checkpoint_slots[chosen]] = torch.where(after, s[chosen], before[chosen])
    state[slot_ids] = s
    return o.to(q.dtype)
