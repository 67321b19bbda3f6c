"""Paged causal attention over a packed varlen batch with cached prefixes (spec §2.4).

KV cache of one attention layer: ``k_cache``, ``v_cache`` ``[num_pages, page_size, nkv, hd]``.
Sequence ``b`` keeps token ``j`` (0-based in the whole sequence) at page
``page_table[b, j // page_size]``, row ``j % page_size``. Page 0 is the dummy page that pads
page-table rows; it is never read for a real token.
"""

from __future__ import annotations

import torch
from torch import Tensor


def write_kv_cache(
    k: Tensor, v: Tensor, k_cache: Tensor, v_cache: Tensor, kv_indices: Tensor
) -> None:
    """Store ``k``, ``v`` ``[T, nkv, hd]`` at flat rows ``kv_indices`` ``[T]``
    (``page * page_size + row``) of the caches."""
    num_rows = k_cache.shape[0] * k_cache.shape[1]
    k_cache.view(num_rows, *k_cache.shape[2:]).index_copy_(0, kv_indices, k.to(k_cache.dtype))
    v_cache.view(num_rows, *v_cache.shape[2:]).index_copy_(0, kv_indices, v.to(v_cache.dtype))


def paged_attention(
    q: Tensor,
    k_cache: Tensor,
    v_cache: Tensor,
    page_table: Tensor,
    cu_seqlens: Tensor,
    prefix_lens: Tensor,
    scale: float,
    gate: Tensor | None = None,
) -> Tensor:
    """Causal attention of the new tokens ``q`` ``[T, nh, hd]`` over each sequence's whole
    cached KV (prefix + new tokens, already written). New token ``i`` of sequence ``b`` sits at
    ``prefix_lens[b] + i`` and sees keys ``0 ..= prefix_lens[b] + i``. Query head ``h`` reads
    KV head ``h // (nh / nkv)``. Softmax in fp32; returns ``[T, nh, hd]`` in ``q.dtype``.
    With ``gate`` ``[T, nh, hd]`` (the gated attention's output gate, possibly a strided view)
    it returns ``o * sigmoid(gate)``: ``o`` and ``sigmoid(gate)`` each in ``q.dtype``, the
    product rounded to ``q.dtype`` (HF's order), so a backend can fuse the gate."""
    num_heads = q.shape[1]
    page_size, num_kv_heads, head_dim = k_cache.shape[1:]
    group = num_heads // num_kv_heads
    out = torch.empty_like(q)
    bounds = cu_seqlens.tolist()
    prefixes = prefix_lens.tolist()
    for b, prefix in enumerate(prefixes):
        start, end = bounds[b], bounds[b + 1]
        n = end - start
        if n == 0:
            continue
        kv_len = prefix + n
        pages = page_table[b, : (kv_len + page_size - 1) // page_size].long()
        keys = k_cache[pages].reshape(-1, num_kv_heads, head_dim)[:kv_len]
        values = v_cache[pages].reshape(-1, num_kv_heads, head_dim)[:kv_len]
        keys = keys.transpose(0, 1).repeat_interleave(group, dim=0).to(q.dtype)  # [nh, L, hd]
        values = values.transpose(0, 1).repeat_interleave(group, dim=0).to(q.dtype)
        scores = (q[start:end].transpose(0, 1) @ keys.transpose(1, 2)) * scale  # [nh, n, L]
        query_pos = torch.arange(prefix, kv_len, device=q.device)[:, None]
        key_pos = torch.arange(kv_len, device=q.device)[None, :]
        scores = scores.masked_fill(key_pos > query_pos, float("-inf"))
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        out[start:end] = (probs @ values).transpose(0, 1)
    if gate is not None:
        out = out * torch.sigmoid(gate.to(q.dtype))
    return out
