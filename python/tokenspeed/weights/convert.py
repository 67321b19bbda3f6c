"""Layout conversions applied while loading (pure tensor functions, device-agnostic)."""

from __future__ import annotations

import torch

from tokenspeed.config import ModelConfig


def split_qwen3_next_qkvz(w: torch.Tensor, cfg: ModelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Qwen3-Next ``in_proj_qkvz`` -> flat ``in_proj_qkv`` [q|k|v] and ``in_proj_z`` (spec §2.5 1').

    On disk the rows are grouped by key head g: [q_g | k_g | v_{g*r..g*r+r-1} | z_{g*r..}].
    """
    Hk, dk, dv = cfg.linear_num_key_heads, cfg.linear_key_head_dim, cfg.linear_value_head_dim
    r = cfg.linear_num_value_heads // Hk
    H = w.shape[-1]
    wq, wk, wv, wz = w.view(Hk, 2 * dk + 2 * r * dv, H).split([dk, dk, r * dv, r * dv], dim=1)
    qkv = torch.cat([wq.reshape(-1, H), wk.reshape(-1, H), wv.reshape(-1, H)])
    return qkv, wz.reshape(-1, H).contiguous()


def split_qwen3_next_ba(w: torch.Tensor, cfg: ModelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Qwen3-Next ``in_proj_ba`` (grouped by key head: [b_{g*r..} | a_{g*r..}]) -> b, a."""
    Hk = cfg.linear_num_key_heads
    r = cfg.linear_num_value_heads // Hk
    H = w.shape[-1]
    wb, wa = w.view(Hk, 2 * r, H).split([r, r], dim=1)
    return wb.reshape(-1, H).contiguous(), wa.reshape(-1, H).contiguous()


def put_expert_slice(fused: torch.Tensor, w: torch.Tensor, expert: int, part: str) -> None:
    """Copy one per-expert projection into the fused tensor ([E,2Im,H] gate rows first, or
    [E,H,Im] for down)."""
    if part == "down":
        fused[expert].copy_(w)
        return
    im = fused.shape[1] // 2
    rows = slice(0, im) if part == "gate" else slice(im, 2 * im)
    fused[expert, rows].copy_(w)
