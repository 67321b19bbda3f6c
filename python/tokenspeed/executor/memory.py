"""How many KV pages and state slots to allocate: explicit counts, or a memory budget."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenspeed.config import ModelConfig
from tokenspeed.models.cache import PagedKVCache, StateCache

CPU_CACHE_BYTES = 512 << 20  # CPU has no "free device memory" to fill: a fixed default budget
STATE_FRACTION = 0.25  # share of the budget the recurrent-state slots may take
SLOTS_PER_SEQ = 3  # working slot + up to two in-flight snapshot slots


@dataclass(frozen=True)
class PoolSizes:
    """Sizes including the reserved page 0 / slot 0."""

    num_pages: int
    num_slots: int
    page_size: int


def size_pools(
    cfg: ModelConfig,
    dtype: torch.dtype,
    device: torch.device,
    *,
    page_size: int,
    max_num_seqs: int,
    max_model_len: int,
    kv_cache_pages: int | None = None,
    state_slots: int | None = None,
    gpu_memory_utilization: float = 0.9,
) -> PoolSizes:
    """Pool sizes. ``kv_cache_pages`` / ``state_slots`` are usable counts (the reserved one is
    added). Otherwise slots get up to ``STATE_FRACTION`` of the budget (enough for
    ``SLOTS_PER_SEQ`` per sequence plus cached checkpoints) and pages the rest, capped at what
    ``max_num_seqs`` full-length sequences need. The budget is the free device memory above
    ``1 - gpu_memory_utilization`` of the GPU, or ``CPU_CACHE_BYTES`` on CPU."""
    if page_size < 1:
        raise ValueError(f"page_size={page_size}: must be >= 1")
    if kv_cache_pages is not None and kv_cache_pages < 1:
        raise ValueError(f"kv_cache_pages={kv_cache_pages}: must be >= 1")
    if state_slots is not None and state_slots < 2:
        raise ValueError(f"state_slots={state_slots}: need >= 2 (a working slot and a snapshot)")
    budget = _budget_bytes(device, gpu_memory_utilization)
    slot_bytes = StateCache.bytes_per_slot(cfg, dtype)
    page_bytes = PagedKVCache.bytes_per_page(cfg, page_size, dtype)
    if state_slots is None:
        wanted = SLOTS_PER_SEQ * max_num_seqs + 2 * max_num_seqs
        affordable = int(budget * STATE_FRACTION) // max(slot_bytes, 1)
        state_slots = min(wanted, affordable)
        if state_slots < 2:
            raise ValueError(
                f"a state slot takes {slot_bytes} bytes: the memory budget ({budget} bytes) "
                "cannot hold 2; lower max_num_seqs or pass state_slots"
            )
    if kv_cache_pages is None:
        left = budget - state_slots * slot_bytes
        pages_per_seq = -(-max_model_len // page_size)
        kv_cache_pages = min(left // max(page_bytes, 1), max_num_seqs * pages_per_seq)
        if kv_cache_pages < pages_per_seq:
            raise ValueError(
                f"the memory budget left for KV ({left} bytes, {page_bytes} per page) holds "
                f"{kv_cache_pages} pages, fewer than one max_model_len={max_model_len} sequence "
                f"needs ({pages_per_seq}); lower max_model_len or pass kv_cache_pages"
            )
    return PoolSizes(num_pages=kv_cache_pages + 1, num_slots=state_slots + 1, page_size=page_size)


def _budget_bytes(device: torch.device, utilization: float) -> int:
    if device.type != "cuda":
        return CPU_CACHE_BYTES
    free, total = torch.cuda.mem_get_info(device)
    return max(0, int(free - (1 - utilization) * total))
