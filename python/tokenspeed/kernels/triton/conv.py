"""Causal depthwise conv1d + SiLU of the GDN q/k/v channels, through state slots (Triton).

Semantics: `reference/conv.py`. A slot's window ``conv_state[slot]`` is ``[C, K-1]`` pre-conv
rows, oldest first. Prefill reads the window for the first ``K-1`` taps of a sequence (zeros
without initial state), then a second launch writes the new window (and an optional
checkpoint window) back: two launches so no program overwrites a window another still reads.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from tokenspeed.kernels.triton.common import check_device, next_pow2, pdl_launch, pdl_supported


@triton.jit
def _tap(x_ptr, x_st, state_ptr, s_s0, s_s1, slot, start, has_init, pos, c, mask, W: tl.constexpr):
    """Pre-conv value of channels ``c`` at packed row ``pos``; rows before ``start`` (the
    sequence start) come from the slot's window (column ``W + pos - start``)."""
    in_seq = pos >= start
    xv = tl.load(x_ptr + pos.to(tl.int64)[:, None] * x_st + c[None, :],
                 mask=mask & in_seq[:, None], other=0.0).to(tl.float32)  # fmt: skip
    col = W + pos - start
    s_off = slot.to(tl.int64)[:, None] * s_s0 + c[None, :].to(tl.int64) * s_s1 + col[:, None]
    old_mask = mask & (~in_seq & (has_init != 0) & (col >= 0))[:, None]
    sv = tl.load(state_ptr + s_off, mask=old_mask, other=0.0).to(tl.float32)
    return xv + sv


# Length arguments are not specialised: see common.NO_RECOMPILE.
@triton.jit(do_not_specialize=["T"])
def _conv_varlen_kernel(
    x_ptr, x_st, w_ptr, state_ptr, s_s0, s_s1, out_ptr,
    seq_of_row_ptr, cu_ptr, slot_ptr, init_ptr, T, C,
    K: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    t_ok = t < T
    mask = t_ok[:, None] & (c < C)[None, :]
    seq = tl.load(seq_of_row_ptr + t, mask=t_ok, other=0)
    start = tl.load(cu_ptr + seq, mask=t_ok, other=0)
    slot = tl.load(slot_ptr + seq, mask=t_ok, other=0)
    has_init = tl.load(init_ptr + seq, mask=t_ok, other=0).to(tl.int32)
    acc = tl.zeros((BLOCK_T, BLOCK_C), dtype=tl.float32)
    for i in tl.static_range(K):
        w = tl.load(w_ptr + c * K + i, mask=c < C, other=0.0).to(tl.float32)
        val = _tap(x_ptr, x_st, state_ptr, s_s0, s_s1, slot, start, has_init,
                   t - (K - 1) + i, c, mask, K - 1)  # fmt: skip
        # The reference convolves in the weight dtype: round the inputs like it does.
        acc += w[None, :] * val.to(w_ptr.dtype.element_ty).to(tl.float32)
    acc = acc.to(w_ptr.dtype.element_ty).to(tl.float32)
    y = acc * tl.sigmoid(acc)
    tl.store(out_ptr + t.to(tl.int64)[:, None] * C + c[None, :], y.to(out_ptr.dtype.element_ty),
             mask=mask)  # fmt: skip


@triton.jit
def _window_kernel(
    x_ptr, x_st, state_ptr, s_s0, s_s1, cu_ptr, slot_ptr, init_ptr,
    ckpt_slot_ptr, ckpt_off_ptr, C,
    HAS_CKPT: tl.constexpr, W: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    """New window of sequence ``b`` (and its checkpoint window): the last ``W`` rows of
    ``[old window, new rows]`` ending at the sequence end (resp. at the checkpoint offset)."""
    b = tl.program_id(0)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    j = tl.arange(0, BLOCK_W)
    start = tl.load(cu_ptr + b)
    end = tl.load(cu_ptr + b + 1)
    slot = tl.load(slot_ptr + b)
    has_init = tl.load(init_ptr + b).to(tl.int32)
    mask = (j < W)[:, None] & (c < C)[None, :]
    # The tap helper takes per-row sequence fields.
    jj = tl.zeros((BLOCK_W,), dtype=tl.int64) + slot
    hi = tl.zeros((BLOCK_W,), dtype=tl.int32) + has_init
    new = _tap(x_ptr, x_st, state_ptr, s_s0, s_s1, jj, start, hi, end - W + j, c, mask, W)
    if HAS_CKPT:
        ck_slot = tl.load(ckpt_slot_ptr + b)
        ck_pos = start + tl.load(ckpt_off_ptr + b) - W + j
        ck = _tap(x_ptr, x_st, state_ptr, s_s0, s_s1, jj, start, hi, ck_pos, c, mask, W)
    tl.debug_barrier()  # every read of the old window happens before any write
    col = c[None, :].to(tl.int64) * s_s1 + j[:, None]
    tl.store(state_ptr + slot.to(tl.int64) * s_s0 + col, new.to(state_ptr.dtype.element_ty),
             mask=mask)  # fmt: skip
    if HAS_CKPT:
        ck_mask = mask & ((j * 0 + ck_slot) >= 0)[:, None]  # vector: the interpreter needs it
        tl.store(state_ptr + ck_slot.to(tl.int64) * s_s0 + col,
                 ck.to(state_ptr.dtype.element_ty), mask=ck_mask)  # fmt: skip


@triton.jit
def _conv_decode_kernel(
    x_ptr, x_st, w_ptr, state_ptr, s_s0, s_s1, out_ptr, slot_ptr, init_ptr,
    ckpt_slot_ptr, ckpt_off_ptr, C,
    HAS_CKPT: tl.constexpr, K: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_C: tl.constexpr,
    GDC: tl.constexpr = False,
):  # fmt: skip
    """One token per sequence, one launch: a program owns (sequence, channel block), so it can
    read its slot's window and overwrite it without racing anyone. Under ``GDC`` (PDL) the
    weights and the window (an earlier step's) load before the wait, ``x`` after it."""
    if GDC:
        tl.extra.cuda.gdc_launch_dependents()
    b = tl.program_id(0)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    j = tl.arange(0, BLOCK_W)
    c_ok = c < C
    slot = tl.load(slot_ptr + b).to(tl.int64)
    has_init = tl.load(init_ptr + b).to(tl.int32)
    win_mask = (j < K - 1)[:, None] & c_ok[None, :] & ((j * 0 + has_init) != 0)[:, None]
    col = c[None, :].to(tl.int64) * s_s1 + j[:, None]
    old = tl.load(state_ptr + slot * s_s0 + col, mask=win_mask, other=0.0)  # [W, C] oldest first
    w_old = tl.load(w_ptr + c[None, :] * K + j[:, None], mask=(j < K - 1)[:, None] & c_ok[None, :],
                    other=0.0).to(tl.float32)  # fmt: skip
    w_new = tl.load(w_ptr + c * K + (K - 1), mask=c_ok, other=0.0).to(tl.float32)
    shifted = tl.load(state_ptr + slot * s_s0 + col + 1,
                      mask=win_mask & (j < K - 2)[:, None], other=0.0)  # fmt: skip
    if GDC:
        tl.extra.cuda.gdc_wait()
    x = tl.load(x_ptr + b.to(tl.int64) * x_st + c, mask=c_ok, other=0.0)
    wdt = w_ptr.dtype.element_ty
    acc = tl.sum(w_old * old.to(wdt).to(tl.float32), axis=0)
    acc += w_new * x.to(wdt).to(tl.float32)
    acc = acc.to(wdt).to(tl.float32)
    tl.store(out_ptr + b.to(tl.int64) * C + c, (acc * tl.sigmoid(acc)).to(out_ptr.dtype.element_ty),
             mask=c_ok)  # fmt: skip
    # New window: old columns 1.. (``shifted``) then x.
    new = tl.where((j == K - 2)[:, None], x[None, :].to(state_ptr.dtype.element_ty), shifted)
    st_mask = (j < K - 1)[:, None] & c_ok[None, :]
    if HAS_CKPT:
        ck_slot = tl.load(ckpt_slot_ptr + b).to(tl.int64)
        after = (j * 0 + tl.load(ckpt_off_ptr + b)) == 1
        ck = tl.where(after[:, None], new, old)
        ck_mask = st_mask & ((j * 0 + ck_slot) >= 0)[:, None]
    tl.debug_barrier()  # all reads of the old window before the in-place write
    tl.store(state_ptr + slot * s_s0 + col, new, mask=st_mask)
    if HAS_CKPT:
        tl.store(state_ptr + ck_slot * s_s0 + col, ck, mask=ck_mask)


def _checked(x: Tensor, weight: Tensor, conv_state: Tensor) -> int:
    channels, width = weight.shape
    if x.shape[-1] != channels or conv_state.shape[1:] != (channels, width - 1):
        raise ValueError(
            f"conv shapes disagree: x {tuple(x.shape)}, weight {tuple(weight.shape)}, "
            f"conv_state {tuple(conv_state.shape)}"
        )
    if x.stride(-1) != 1 or conv_state.stride(2) != 1 or not weight.is_contiguous():
        raise ValueError("conv1d needs unit-stride channels, a [C, K-1] window and a [C, K] weight")
    check_device(x, weight, conv_state)
    return width


def conv1d_varlen(
    x: Tensor,
    weight: Tensor,
    conv_state: Tensor,
    cu_seqlens: Tensor,
    slot_ids: Tensor,
    has_initial_state: Tensor,
    checkpoint_slots: Tensor | None = None,
    checkpoint_offsets: Tensor | None = None,
) -> Tensor:
    """See `reference.conv.conv1d_varlen`. Offsets are not range-checked on the device."""
    width = _checked(x, weight, conv_state)
    if (checkpoint_slots is None) != (checkpoint_offsets is None):
        raise ValueError("checkpoint_slots and checkpoint_offsets go together")
    tokens, channels = x.shape
    num_seqs = slot_ids.shape[0]
    out = torch.empty((tokens, channels), dtype=x.dtype, device=x.device)
    cu = cu_seqlens.to(torch.int32)
    if tokens:
        rows = torch.arange(tokens, device=x.device, dtype=torch.int32)
        seq_of_row = torch.searchsorted(cu[1:], rows, right=True).to(torch.int32)
        block_t, block_c = 16, min(256, next_pow2(channels, 16))
        grid = (triton.cdiv(tokens, block_t), triton.cdiv(channels, block_c))
        _conv_varlen_kernel[grid](
            x, x.stride(0), weight, conv_state, conv_state.stride(0), conv_state.stride(1), out,
            seq_of_row, cu, slot_ids, has_initial_state, tokens, channels,
            K=width, BLOCK_T=block_t, BLOCK_C=block_c,
        )  # fmt: skip
    has_ckpt = checkpoint_slots is not None
    block_c = min(256, next_pow2(channels, 16))
    _window_kernel[(num_seqs, triton.cdiv(channels, block_c))](
        x, x.stride(0), conv_state, conv_state.stride(0), conv_state.stride(1), cu, slot_ids,
        has_initial_state, checkpoint_slots if has_ckpt else slot_ids,
        checkpoint_offsets if has_ckpt else slot_ids, channels,
        HAS_CKPT=has_ckpt, W=width - 1, BLOCK_W=next_pow2(width - 1), BLOCK_C=block_c,
    )  # fmt: skip
    return out


def conv1d_decode(
    x: Tensor,
    weight: Tensor,
    conv_state: Tensor,
    slot_ids: Tensor,
    has_initial_state: Tensor,
    checkpoint_slots: Tensor | None = None,
    checkpoint_offsets: Tensor | None = None,
) -> Tensor:
    """See `reference.conv.conv1d_decode`; one launch, no host sync (CUDA-graph capturable)."""
    width = _checked(x, weight, conv_state)
    if (checkpoint_slots is None) != (checkpoint_offsets is None):
        raise ValueError("checkpoint_slots and checkpoint_offsets go together")
    num_seqs, channels = x.shape
    out = torch.empty((num_seqs, channels), dtype=x.dtype, device=x.device)
    if num_seqs == 0:
        return out
    has_ckpt = checkpoint_slots is not None
    block_c = min(256, next_pow2(channels, 16))
    gdc = pdl_supported(x)
    _conv_decode_kernel[(num_seqs, triton.cdiv(channels, block_c))](
        x, x.stride(0), weight, conv_state, conv_state.stride(0), conv_state.stride(1), out,
        slot_ids, has_initial_state, checkpoint_slots if has_ckpt else slot_ids,
        checkpoint_offsets if has_ckpt else slot_ids, channels,
        HAS_CKPT=has_ckpt, K=width, BLOCK_W=next_pow2(width - 1), BLOCK_C=block_c, GDC=gdc,
        **pdl_launch(gdc),
    )  # fmt: skip
    return out
