"""Default pool sizing: state slots beyond the running sequences, from the memory budget.

Why: N concurrent agent conversations each need their newest checkpoints (end of the last
prompt, end of the last reply) cached until their next turn. Capped at 5 slots per sequence
(80 at max_num_seqs=16), 16 users cycled more checkpoints through the LRU than it held and
the H100 agentic bench got 3% hits instead of 97%. Reference: the old rule, which the new one
must never undercut on KV, and the memory budget, which both must fit.
"""

from __future__ import annotations

from unittest import mock

import torch
from tokenspeed.executor import memory
from tokenspeed.models.cache import PagedKVCache, StateCache
from tokenspeed.presets import preset_config


def test_budget_sizing_never_shrinks_kv_and_fits_the_budget() -> None:
    """Slots beyond the running sequences come only from memory the pages would not use:
    against the old rule (5 slots per sequence, pages the rest capped at max_num_seqs full
    sequences), pages never shrink, slots never shrink, and everything fits the budget."""
    cfg = preset_config("qwen3.5-35b-a3b", 20)  # the agentic bench's 20-layer slice
    dtype, page = torch.bfloat16, 64
    slot_bytes = StateCache.bytes_per_slot(cfg, dtype)
    page_bytes = PagedKVCache.bytes_per_page(cfg, page, dtype)
    for budget_gib in (3, 6, 12, 20, 35, 60):
        budget = budget_gib << 30
        for seqs, model_len in ((1, 65536), (16, 65536), (16, 8192), (64, 32768), (256, 65536)):
            per_seq = -(-model_len // page)
            old_slots = min(5 * seqs, int(budget * memory.STATE_FRACTION) // slot_bytes)
            old_pages = min((budget - old_slots * slot_bytes) // page_bytes, seqs * per_seq)
            with mock.patch.object(memory, "_budget_bytes", lambda _d, _u, b=budget: b):
                try:
                    got = memory.size_pools(
                        cfg, dtype, torch.device("cuda"), page_size=page,
                        max_num_seqs=seqs, max_model_len=model_len,
                    )  # fmt: skip
                except ValueError:
                    assert old_pages < per_seq  # refused only where the old rule refused too
                    continue
            slots, pages = got.num_slots - 1, got.num_pages - 1
            where = (budget_gib, seqs, model_len)
            assert pages >= min(old_pages, seqs * per_seq) and pages >= per_seq, where
            assert slots >= old_slots, where
            assert slots * slot_bytes + pages * page_bytes <= budget, where
            assert slots * slot_bytes <= budget * memory.STATE_FRACTION or slots == old_slots
    # The bench's setting (~35 GiB left beside the weights, 16 users of 64k): hundreds of slots.
    with mock.patch.object(memory, "_budget_bytes", lambda _d, _u: 35 << 30):
        got = memory.size_pools(
            cfg, dtype, torch.device("cuda"), page_size=page, max_num_seqs=16, max_model_len=65536
        )
    assert got.num_slots > 200 and got.num_pages - 1 == 16 * 1024
