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
    added). Otherwise pages get what ``max_num_seqs`` full-length sequences need (or all the
    budget left) and slots ``STATE_FRACTION`` of the budget, but never so many that the pages
    fall short of that need and never fewer than the running sequences use (``SLOTS_PER_SEQ``
    each plus two cached checkpoints per sequence). The budget is the free device memory above
    ``1 - gpu_memory_utilization`` of the GPU, or ``CPU_CACHE_BYTES`` on CPU.

    Why slots beyond the running sequences: every cached conversation needs its newest
    checkpoints (end of its last prompt, end of its last reply) to hit on its next turn, and
    every turn publishes at least two. Capped at a few per sequence, N concurrent agent
    conversations cycle more checkpoints through the LRU than it holds and each one's are
    evicted before it comes back (16 users: 3% hits instead of 97%). A slot is far smaller
    than a full-length sequence's KV, so a share of the budget holds hundreds."""
    if page_size < 1:
        raise ValueError(f"page_size={page_size}: must be >= 1")
    if kv_cache_pages is not None and kv_cache_pages < 1:
        raise ValueError(f"kv_cache_pages={kv_cache_pages}: must be >= 1")
    if state_slots is not None and state_slots < 2:
        raise ValueError(f"state_slots={state_slots}: need >= 2 (a working slot and a snapshot)")
    budget = _budget_bytes(device, gpu_memory_utilization)
    slot_bytes = StateCache.bytes_per_slot(cfg, dtype)
    page_bytes = PagedKVCache.bytes_per_page(cfg, page_size, dtype)
    pages_per_seq = -(-max_model_len // page_size)
    if state_slots is None:
        affordable = int(budget * STATE_FRACTION) // max(slot_bytes, 1)
        running = min(SLOTS_PER_SEQ * max_num_seqs + 2 * max_num_seqs, affordable)
        # Memory the pages do not need once they hold max_num_seqs full-length sequences.
        kv_need = max_num_seqs * pages_per_seq * page_bytes
        spare = max(0, budget - kv_need) // max(slot_bytes, 1)
        state_slots = max(running, min(affordable, spare))
        if state_slots < 2:
            raise ValueError(
                f"a state slot takes {slot_bytes} bytes: the memory budget ({budget} bytes) "
                "cannot hold 2; lower max_num_seqs or pass state_slots"
            )
    if kv_cache_pages is None:
        left = budget - state_slots * slot_bytes
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
