"""Device caches the model reads and writes: paged KV (attention) and state slots (GDN).

The executor sizes them from a memory budget; the model only indexes them. Page 0 and slot 0
are dummies that padded batch rows may point at.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tokenspeed.config import ModelConfig


class PagedKVCache:
    """Per attention layer (in layer order) ``k[i]``, ``v[i]``: ``[num_pages, page_size, nkv, hd]``."""

    def __init__(
        self,
        cfg: ModelConfig,
        num_pages: int,
        page_size: int,
        dtype: torch.dtype,
        device: str | torch.device,
    ) -> None:
        if num_pages < 2:
            raise ValueError(f"num_pages={num_pages}: need page 0 (dummy) and at least one more")
        shape = (num_pages, page_size, cfg.num_key_value_heads, cfg.head_dim)
        self.page_size = page_size
        self.num_pages = num_pages
        self.k: list[Tensor] = [
            torch.zeros(shape, dtype=dtype, device=device) for _ in cfg.attention_layer_ids
        ]
        self.v: list[Tensor] = [
            torch.zeros(shape, dtype=dtype, device=device) for _ in cfg.attention_layer_ids
        ]

    @staticmethod
    def bytes_per_page(cfg: ModelConfig, page_size: int, dtype: torch.dtype) -> int:
        per_layer = 2 * page_size * cfg.num_key_value_heads * cfg.head_dim * dtype.itemsize
        return per_layer * cfg.num_attention_layers


class StateCache:
    """Per GDN layer (in layer order) ``conv[i]`` ``[num_slots, conv_dim, K-1]`` (model dtype,
    pre-conv rows, oldest first) and ``ssm[i]`` ``[num_slots, Hv, dk, dv]`` (fp32)."""

    def __init__(
        self,
        cfg: ModelConfig,
        num_slots: int,
        dtype: torch.dtype,
        device: str | torch.device,
    ) -> None:
        if num_slots < 2:
            raise ValueError(f"num_slots={num_slots}: need slot 0 (dummy) and at least one more")
        conv_shape = (num_slots, cfg.conv_dim, cfg.linear_conv_kernel_dim - 1)
        ssm_shape = (
            num_slots,
            cfg.linear_num_value_heads,
            cfg.linear_key_head_dim,
            cfg.linear_value_head_dim,
        )
        self.num_slots = num_slots
        layers = cfg.linear_layer_ids
        self.conv: list[Tensor] = [
            torch.zeros(conv_shape, dtype=dtype, device=device) for _ in layers
        ]
        self.ssm: list[Tensor] = [
            torch.zeros(ssm_shape, dtype=torch.float32, device=device) for _ in layers
        ]

    def copy_slots(self, src: Tensor, dst: Tensor) -> None:
        """``slot dst[i] <- slot src[i]`` in every layer (copy-on-write / checkpoint restore)."""
        for conv, ssm in zip(self.conv, self.ssm, strict=True):
            conv[dst] = conv[src]
            ssm[dst] = ssm[src]

    @staticmethod
    def bytes_per_slot(cfg: ModelConfig, dtype: torch.dtype) -> int:
        conv = cfg.conv_dim * (cfg.linear_conv_kernel_dim - 1) * dtype.itemsize
        ssm = cfg.linear_num_value_heads * cfg.linear_key_head_dim * cfg.linear_value_head_dim * 4
        return (conv + ssm) * cfg.num_linear_layers
