"""``DecodeGraphs``: the decode forward captured as CUDA graphs, one per padded batch size.

A pure decode step (one new token per sequence, no checkpoint) is copied into static input
buffers, padded to the next captured size, and replayed. Padding rows read and write the
dummy page 0 and the dummy slot 0, which no real sequence owns. Sampling stays eager.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tokenspeed.models.batch import ForwardBatch


def graph_batch_sizes(max_num_seqs: int, cap: int = 256) -> list[int]:
    """1, 2, 4, 8, then steps of 16 up to ``max_num_seqs`` (capped)."""
    top = max(1, min(max_num_seqs, cap))
    sizes = [s for s in (1, 2, 4, 8) if s <= top] + list(range(16, top + 1, 16))
    if sizes[-1] < top:
        sizes.append(top)
    return sizes


class DecodeGraphs:
    def __init__(self, model, kv_cache, state_cache, max_num_seqs: int, max_pages: int) -> None:
        self.model, self.kv_cache, self.state_cache = model, kv_cache, state_cache
        self.sizes = graph_batch_sizes(max_num_seqs)
        n, dev = self.sizes[-1], torch.device(model.device)
        self.max_pages = max_pages
        i64 = dict(dtype=torch.int64, device=dev)
        i32 = dict(dtype=torch.int32, device=dev)
        self.batch = ForwardBatch(
            input_ids=torch.zeros(n, **i64),
            positions=torch.zeros(n, **i64),
            cu_seqlens=torch.arange(n + 1, **i32),
            prefix_lens=torch.zeros(n, **i32),
            page_table=torch.zeros(n, max_pages, **i32),
            slot_ids=torch.zeros(n, **i64),
            has_initial_state=torch.ones(n, dtype=torch.bool, device=dev),
            logits_indices=torch.arange(n, **i64),
            max_seqlen=1,
        )
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.outputs: dict[int, Tensor] = {}
        self._capture()

    def _view(self, bs: int) -> ForwardBatch:
        b = self.batch
        return ForwardBatch(
            input_ids=b.input_ids[:bs], positions=b.positions[:bs],
            cu_seqlens=b.cu_seqlens[: bs + 1], prefix_lens=b.prefix_lens[:bs],
            page_table=b.page_table[:bs], slot_ids=b.slot_ids[:bs],
            has_initial_state=b.has_initial_state[:bs], logits_indices=b.logits_indices[:bs],
            max_seqlen=1,
        )  # fmt: skip

    def _forward(self, bs: int) -> Tensor:
        return self.model.forward(self._view(bs), self.kv_cache, self.state_cache)

    def _capture(self) -> None:
        pool = torch.cuda.graph_pool_handle()  # shared across sizes: largest captured first
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for bs in self.sizes:  # warm up: Triton compiles / autotunes outside capture
                self._forward(bs)
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        for bs in reversed(self.sizes):
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g, pool=pool):
                self.outputs[bs] = self._forward(bs)
            self.graphs[bs] = g
        torch.cuda.synchronize()

    def run(self, batch: ForwardBatch) -> Tensor | None:
        """Logits of ``batch`` by graph replay, or None when it needs the eager path."""
        n = batch.num_seqs
        if (
            batch.max_seqlen != 1
            or batch.checkpoint_slots is not None
            or batch.input_ids.shape[0] != n
            or batch.logits_indices.shape[0] != n
            or n > self.sizes[-1]
            or batch.page_table.shape[1] > self.max_pages
        ):
            return None
        bs = next(s for s in self.sizes if s >= n)
        b, width = self.batch, batch.page_table.shape[1]
        b.input_ids[:n].copy_(batch.input_ids)
        b.positions[:n].copy_(batch.positions)
        b.prefix_lens[:n].copy_(batch.prefix_lens)
        b.page_table[:n, :width].copy_(batch.page_table)
        b.page_table[:n, width:].zero_()
        b.slot_ids[:n].copy_(batch.slot_ids)
        b.has_initial_state[:n].copy_(batch.has_initial_state)
        b.logits_indices[:n].copy_(batch.logits_indices)
        if bs > n:  # padding rows: dummy page 0, dummy slot 0, token 0 at position 0
            for t in (b.input_ids, b.positions, b.prefix_lens, b.page_table, b.slot_ids):
                t[n:bs].zero_()
            b.logits_indices[n:bs].copy_(torch.arange(n, bs, device=b.logits_indices.device))
        self.graphs[bs].replay()
        return self.outputs[bs][:n]
