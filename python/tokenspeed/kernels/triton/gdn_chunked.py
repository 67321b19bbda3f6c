"""GDN chunked prefill in Triton: the WY/UT form of the gated delta rule over a varlen batch.

Semantics and math: `reference/gdn.py::gdn_chunked`, spec §6.2. Four launches, the layout
flash-linear-attention uses (written anew here):

1. `gdn_chunked_solve.solve_kernel`, parallel over (chunk, value head): ``γ``, the normalised
   q/k (once per key head) and the blockwise inverse ``T = (I + A)^-1`` (fp32, per chunk);
   `gdn_chunked_wy.wu_kernel`, same grid: ``W = T diag(β)(K ⊙ e^γ)`` and ``U = T diag(β) V``.
2. `gdn_chunked_state.state_kernel`, parallel over (sequence, value head, value block),
   sequential over chunks: per-chunk entry states ``h_c`` and ``Vn = U - W h_c``; reads the
   initial state from the slot, writes the final (and checkpoint) state, fp32. CONFIG
   state_impl "split64" takes `gdn_chunked_state64.state64_kernel` (fla's layout) instead.
3. `gdn_chunked_state.output_kernel`, parallel over (chunk, value head, value block):
   ``O = (Q h_c) ⊙ e^γ + (Q Kᵀ ⊙ Γ) Vn``.

Gating, the q/k L2 norm and the q scale are fused into the first kernel. With bf16
activations the dot operands (and ``W``, ``U``, ``Vn``, ``h_c`` between kernels) are bf16 with
fp32 accumulation, like FLA; with fp32 activations everything is fp32 (3xTF32 dots on GPU).
Chunks never straddle a sequence end or a checkpoint offset: a sequence with a checkpoint is
cut there, so the state at the cut exists and is stored to the checkpoint slot. The chunk
table is built on the host (one sync on ``cu_seqlens``, like every prefill step's planning).
"""

from __future__ import annotations

import itertools

import torch
import triton
from torch import Tensor

from tokenspeed.kernels.host import host_list
from tokenspeed.kernels.triton.common import INTERPRETED, align4, check_device, next_pow2
from tokenspeed.kernels.triton.gdn_chunked_solve import solve_kernel
from tokenspeed.kernels.triton.gdn_chunked_state import output_kernel, state_kernel
from tokenspeed.kernels.triton.gdn_chunked_state64 import state64_kernel
from tokenspeed.kernels.triton.gdn_chunked_wy import wu_kernel

CHUNK = 64
# Launch settings (benches/kernels.py sweeps them).
# Launch settings: the best of the coordinate-descent sweep at 8k tokens in benches/kernels.py
# (H200, 2026-12-02, benches/results/kernels-2026-12-02-gdn_chunked-moe-attention-h200.md):
# 32k tokens 2.452 ms vs fla's 2.231 (1.10x), 8k 0.617 vs 1.317, 2k 0.330 vs 1.366; the
# previous defaults ("tile" state, 4-warp solve, 64-column output) took 3.03 ms at 32k.
CONFIG = {
    "bf16_dots": True,  # bf16 activations: bf16 dot operands (False: fp32 operands, TF32 dots)
    # State pass: "tile" (gdn_chunked_state, one [dk, BV] tile) or "split64"
    # (gdn_chunked_state64, 64-row halves, fla's layout; dk <= 128, else "tile").
    "state_impl": "split64",
    "state_bv": 32,
    "state_warps": 4,
    "state_stages": 3,
    "state_kt": False,  # the state kernel loads Kᵀ directly (else transposes the k tile)
    "out_bv": 128,
    "out_warps": 4,
    "solve_warps": 2,
    "solve_merge64": False,  # T's lower blocks by four 64x64 dots (else ten 16x16 ones)
    "wu_warps": 4,
    "wu_bc": 64,  # K/V columns per W/U dot
}


def chunk_table(
    bounds: list[int], ckpt_slots: list[int], ckpt_offsets: list[int]
) -> tuple[list[int], list[int], list[int], list[int], list[int]]:
    """Chunks of at most CHUNK tokens, cut at sequence ends and checkpoint offsets. Returns
    (chunk starts, chunk lengths, first chunk / number of chunks / checkpoint chunk per seq);
    the checkpoint chunk ``c`` means "the state before the sequence's chunk c" (-1: none)."""
    starts: list[int] = []
    lengths: list[int] = []
    first, count, ckpt = [], [], []
    for b in range(len(bounds) - 1):
        start, end = bounds[b], bounds[b + 1]
        first.append(len(starts))
        cuts = [start, end]
        if ckpt_slots[b] >= 0:
            off = ckpt_offsets[b]
            if not 0 <= off <= end - start:
                raise ValueError(f"checkpoint offset {off} outside [0, {end - start}] new tokens")
            cuts = [start, start + off, end]
        ck = -1
        for lo, hi in itertools.pairwise(cuts):
            if ckpt_slots[b] >= 0 and lo == start + ckpt_offsets[b] and ck < 0:
                ck = len(starts) - first[-1]
            for c0 in range(lo, hi, CHUNK):
                starts.append(c0)
                lengths.append(min(CHUNK, hi - c0))
        if ckpt_slots[b] >= 0 and ck < 0:  # offset == length: the final state
            ck = len(starts) - first[-1]
        count.append(len(starts) - first[-1])
        ckpt.append(ck)
    return starts, lengths, first, count, ckpt


def checkpoint_cuts(
    bounds: list[int], ckpt_slots: list[int], ckpt_offsets: list[int]
) -> tuple[list[int], list[int]]:
    """Per sequence, where ``chunk_table`` cuts it (the checkpoint offset, else its end) and
    how many chunks lie before the cut: chunk c starts at ``start + 64 c`` before the cut and
    at ``cut + 64 (c - before)`` after it."""
    cuts, before = [], []
    for b in range(len(bounds) - 1):
        start, end = bounds[b], bounds[b + 1]
        cut = start + ckpt_offsets[b] if ckpt_slots[b] >= 0 else end
        cuts.append(cut)
        before.append(-(-(cut - start) // CHUNK))
    return cuts, before


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
) -> Tensor:
    """See `reference.gdn.gdn_chunked` (chunk size 64)."""
    tokens, hk, dk = q.shape
    hv, dv = v.shape[1], v.shape[2]
    if state.dtype != torch.float32 or state.shape[1:] != (hv, dk, dv):
        raise ValueError(f"state must be fp32 [slots, {hv}, {dk}, {dv}], got {state.dtype} "
                         f"{tuple(state.shape)}")  # fmt: skip
    if hv % hk or not state.is_contiguous():
        raise ValueError("need Hv divisible by Hk and a contiguous state")
    if q.stride(2) != 1 or k.stride(2) != 1 or v.stride(2) != 1:
        raise ValueError("q, k and v need unit stride along the head dim")
    if (checkpoint_slots is None) != (checkpoint_offsets is None):
        raise ValueError("checkpoint_slots and checkpoint_offsets go together")
    check_device(q, state)
    num_seqs = slot_ids.shape[0]
    ck_slots = host_list(checkpoint_slots) if checkpoint_slots is not None else [-1] * num_seqs
    ck_offs = host_list(checkpoint_offsets) if checkpoint_offsets is not None else [0] * num_seqs
    bounds = host_list(cu_seqlens)
    table = chunk_table(bounds, ck_slots, ck_offs)
    starts, lengths, first, count, ckpt = table
    device = q.device
    # Between kernels: the activation dtype (bf16) or fp32; the interpreter multiplies bf16
    # dots wrongly (Triton 3.9), so there the dot operands are fp32 whatever is stored.
    low = q.dtype in (torch.bfloat16, torch.float16)
    half = low and CONFIG["bf16_dots"]
    store = q.dtype if half else torch.float32
    dt = triton.language.float32 if INTERPRETED or not half else _tl_dtype(q.dtype)
    prec = "ieee" if INTERPRETED else ("tf32" if low else "tf32x3")
    out = torch.empty((tokens, hv, dv), dtype=q.dtype, device=device)
    w = torch.empty((tokens, hv, dk), dtype=store, device=device)
    u = torch.empty((tokens, hv, dv), dtype=store, device=device)
    v_new = torch.empty((tokens, hv, dv), dtype=store, device=device)
    qn = torch.empty((tokens, hk, dk), dtype=store, device=device)
    kn = torch.empty((tokens, hk, dk), dtype=store, device=device)
    gamma = torch.empty((tokens, hv), dtype=torch.float32, device=device)
    h = torch.empty((max(len(starts), 1), hv, dk, dv), dtype=store, device=device)
    bk, bvf = next_pow2(dk, 16), next_pow2(dv, 16)
    cuts, before = checkpoint_cuts(bounds, ck_slots, ck_offs)  # the split64 state pass's
    starts_t, lengths_t, first_t, count_t, ckpt_t, ck_slots_t, cuts_t, before_t = upload_tables(
        device, starts or [0], lengths or [0], first, count, ckpt, ck_slots, cuts, before
    )
    c = CONFIG
    if starts:
        # T is fp32: the solve reads A rows back from it, and W/U round it once, in the dot.
        t = torch.empty((len(starts), hv, CHUNK, CHUNK), dtype=torch.float32, device=device)
        solve_kernel[(len(starts), hv)](
            q, q.stride(0), q.stride(1), k, k.stride(0), k.stride(1), a, a.stride(0),
            b, b.stride(0), A_log, dt_bias, starts_t, lengths_t, qn, kn, gamma, t,
            hv, hk, hv // hk, dk, dk**-0.5,
            BK=bk, DT=dt, PREC=prec, PREC_INV=prec, MERGE64=c["solve_merge64"],
            num_warps=c["solve_warps"],
        )  # fmt: skip
        wu_kernel[(len(starts), hv)](
            kn, v, v.stride(0), v.stride(1), b, b.stride(0), gamma, t, starts_t, lengths_t,
            w, u, hv, hk, hv // hk, dk, dv,
            BK=bk, BV=bvf, BKC=min(c["wu_bc"], bk), BVC=min(c["wu_bc"], bvf), DT=dt, PREC=prec,
            num_warps=c["wu_warps"],
        )  # fmt: skip
    bv = min(c["state_bv"], bvf)
    per_seq = (first_t, count_t, ckpt_t, state, slot_ids, has_initial_state, ck_slots_t)
    grid = (num_seqs, hv, triton.cdiv(dv, bv))
    launch = {"num_warps": c["state_warps"], "num_stages": c["state_stages"]}
    if c["state_impl"] == "split64" and dk <= 2 * CHUNK:
        state64_kernel[grid](
            kn, w, u, v_new, h, gamma, cu_seqlens, cuts_t, before_t, *per_seq,
            hv, hk, hv // hk, dk, dv,
            BC=CHUNK, BV=bv, DT=dt, PREC=prec, HALF2=dk > CHUNK, **launch,
        )  # fmt: skip
    elif c["state_impl"] in ("tile", "split64"):
        state_kernel[grid](
            kn, w, u, v_new, h, gamma, starts_t, lengths_t, *per_seq, hv, hk, hv // hk, dk, dv,
            BC=CHUNK, BK=bk, BV=bv, DT=dt, PREC=prec, KT=c["state_kt"], **launch,
        )  # fmt: skip
    else:
        raise ValueError(f"unknown state_impl {c['state_impl']!r}")
    if starts:
        bo = min(c["out_bv"], bvf)
        output_kernel[(len(starts), hv, triton.cdiv(dv, bo))](
            qn, kn, v_new, h, gamma, starts_t, lengths_t, out, hv, hk, hv // hk, dk, dv,
            BC=CHUNK, BK=bk, BV=bo, DT=dt, PREC=prec, num_warps=c["out_warps"],
        )  # fmt: skip
    return out


def upload_tables(device: torch.device, *tables: list[int]) -> list[Tensor]:
    """The chunk tables as int32 device tensors through one pinned, asynchronous copy: six
    pageable copies each waited for the GPU's queue to drain, which left it idle while the
    host launched the kernels (0.3-0.4 ms per call on the H100). Every table starts 16-byte
    aligned whatever the lengths before it (common.NO_RECOMPILE)."""
    sizes = [len(t) for t in tables]
    padded = [align4(n) for n in sizes]
    flat: list[int] = []
    for t, p in zip(tables, padded, strict=True):
        flat += t
        flat += [0] * (p - len(t))
    host = torch.tensor(flat, dtype=torch.int32)
    if device.type == "cuda":
        host = host.pin_memory().to(device, non_blocking=True)
    return [part[:n] for part, n in zip(host.split(padded), sizes, strict=True)]


def _tl_dtype(dtype: torch.dtype) -> object:
    return triton.language.bfloat16 if dtype == torch.bfloat16 else triton.language.float16
