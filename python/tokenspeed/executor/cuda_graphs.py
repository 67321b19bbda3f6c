"""``DecodeGraphs``: the whole decode step captured as CUDA graphs, one per padded batch size.

A pure decode step (one new token per sequence) is replayed from a graph that
holds everything between the host's one H2D copy and the sampled tokens:

  gather the previous step's samples (``token_buf``) as input ids -> forward -> sampling

The host packs the step's per-row integers into one pinned buffer and copies it (plus the page
table) into static device buffers; padding rows point at the dummy page 0 and the dummy slot 0,
which no real sequence owns. Sampling in the graph covers greedy, plain temperature and
top-k rows (``top_k <= TOP_K_CAP``, with top-p / min-p on top), seeded or not: the noise
buffer is filled outside the graph with the eager path's draws. Steps that need penalties,
logit bias, logprobs, a larger top-k or top-p / min-p without top-k replay the forward and
sample eagerly from the graph's logits.

On CPU (``emulate``) nothing is captured: the same static-buffer step runs eagerly, so the
padding, gathering and sampling logic is tested without a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from tokenspeed.models.batch import ForwardBatch
from tokenspeed.sampling import fill_exponential_noise, greedy_or_temperature

# How a graph samples: every row greedy / temperature rows race over the whole vocabulary /
# top-k rows race over the TOP_K_CAP candidates too.
GREEDY, TEMPERATURE, TRUNCATED = 0, 1, 2

# Per row: input id, previous-step row (-1: none), position, prefix length, slot, initial?,
# checkpoint slot (-1: none), checkpoint offset (0 or 1 new tokens).
_FIELDS = 8


def graph_batch_sizes(max_num_seqs: int, cap: int = 256) -> list[int]:
    """1, 2, 4, 8, then steps of 16 up to ``max_num_seqs`` (capped)."""
    top = max(1, min(max_num_seqs, cap))
    sizes = [s for s in (1, 2, 4, 8) if s <= top] + list(range(16, top + 1, 16))
    if sizes[-1] < top:
        sizes.append(top)
    return sizes


@dataclass
class DecodeStep:
    """Host description of a pure decode step (``n`` sequences, one new token each).

    prev_src: row of the previous step's samples that is this row's input (-1: use
    ``input_ids``). temperature None: every row is greedy. truncation: per-row ``(top_k,
    top_p, min_p)`` when some sampled row has a top-k (None: none has). seeds / positions: the
    sampler's per-row seed and position of the sampled token (for the noise)."""

    input_ids: np.ndarray
    prev_src: np.ndarray
    positions: np.ndarray
    prefix_lens: np.ndarray
    slot_ids: np.ndarray
    has_initial: np.ndarray
    page_table: np.ndarray  # [n, width]
    checkpoint_slots: np.ndarray | None  # None: no row snapshots its GDN state this step
    checkpoint_offsets: np.ndarray | None
    temperature: np.ndarray | None
    seeds: list[int]
    sample_positions: list[int]
    truncation: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def mode(self) -> int:
        if self.temperature is None:
            return GREEDY
        return TEMPERATURE if self.truncation is None else TRUNCATED

    @property
    def num_seqs(self) -> int:
        return len(self.input_ids)


class DecodeGraphs:
    def __init__(
        self,
        model,
        kv_cache,
        state_cache,
        token_buf: Tensor,
        max_num_seqs: int,
        max_pages: int,
        emulate: bool = False,
    ) -> None:
        self.model, self.kv_cache, self.state_cache = model, kv_cache, state_cache
        self.token_buf = token_buf  # every step's samples (read here as the next inputs)
        self.emulate = emulate
        self.sizes = graph_batch_sizes(max_num_seqs)
        n, dev = self.sizes[-1], torch.device(model.device)
        self.device, self.max_pages, self.vocab = dev, max_pages, model.cfg.vocab_size
        self.inputs = torch.zeros(_FIELDS * n, dtype=torch.int64, device=dev)
        self.page_table = torch.zeros(n, max_pages, dtype=torch.int32, device=dev)
        self.temperature = torch.ones(n, dtype=torch.float32, device=dev)
        self.top_k = torch.zeros(n, dtype=torch.int64, device=dev)
        self.top_p = torch.ones(n, dtype=torch.float32, device=dev)
        self.min_p = torch.zeros(n, dtype=torch.float32, device=dev)
        self.noise: Tensor | None = None  # [n, V]: the sampling graphs read it
        self.cu_seqlens = torch.arange(n + 1, dtype=torch.int32, device=dev)
        self.rows = torch.arange(n, dtype=torch.int64, device=dev)
        # Keyed by (batch size, sampling mode, snapshots GDN state), every kind captured
        # up front: capturing one on first use stalls that step for a capture (and the first
        # time for Triton compiles too, ~0.9 s for 35B-A3B on an H200), and a decode step
        # snapshots its state whenever a sequence ends a page, so every size meets it.
        self.graphs: dict[tuple[int, int, bool], torch.cuda.CUDAGraph] = {}
        self.outputs: dict[tuple[int, int, bool], tuple[Tensor, Tensor]] = {}
        self.pool = None if emulate else torch.cuda.graph_pool_handle()
        self.steps_run = 0  # decode steps that took this path (tests, benchmarks)
        self.steps_by_mode = [0, 0, 0]  # of those, sampled GREEDY / TEMPERATURE / TRUNCATED
        self._reset_inputs()
        if not emulate:
            self.noise = torch.ones(n, self.vocab, device=dev)
            self._capture(
                [
                    (bs, mode, c)
                    for bs in reversed(self.sizes)
                    for mode in (GREEDY, TEMPERATURE, TRUNCATED)
                    for c in (False, True)
                ]
            )

    # ---- the captured step -----------------------------------------------------------------
    def _step(self, bs: int, mode: int, ckpt: bool) -> tuple[Tensor, Tensor]:
        fields = self.inputs[: _FIELDS * bs].view(_FIELDS, bs)
        plan_ids, prev_src = fields[0], fields[1]
        ids = torch.where(prev_src >= 0, self.token_buf[prev_src.clamp(min=0)], plan_ids)
        batch = ForwardBatch(
            input_ids=ids, positions=fields[2], cu_seqlens=self.cu_seqlens[: bs + 1],
            prefix_lens=fields[3].to(torch.int32), page_table=self.page_table[:bs],
            slot_ids=fields[4], has_initial_state=fields[5] != 0,
            logits_indices=self.rows[:bs], max_seqlen=1,
            checkpoint_slots=fields[6] if ckpt else None,
            checkpoint_offsets=fields[7] if ckpt else None,
        )  # fmt: skip
        logits = self.model.forward(batch, self.kv_cache, self.state_cache)
        noise = self.noise[:bs] if mode != GREEDY and self.noise is not None else None
        cut = (self.top_k[:bs], self.top_p[:bs], self.min_p[:bs]) if mode == TRUNCATED else None
        return logits, greedy_or_temperature(logits, self.temperature[:bs], noise, cut)

    def _reset_inputs(self, bs: int | None = None) -> None:
        """Dummy inputs (page 0, slot 0, no previous row) in the layout of size ``bs`` (the
        sizes' layouts overlap: each warm-up sets its own)."""
        self.inputs.zero_()
        if bs is not None:
            fields = self.inputs[: _FIELDS * bs].view(_FIELDS, bs)
            for row in (1, 6, 7):
                fields[row].fill_(-1)
        self.page_table.zero_()

    def _capture(self, keys: list[tuple[int, int, bool]]) -> None:
        """Warm up (Triton compiles and autotunes outside capture), then capture; the largest
        size first so the smaller ones reuse its memory from the shared pool."""
        torch.cuda.synchronize()
        self._reset_inputs()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for bs, mode, ckpt in keys:
                self._reset_inputs(bs)
                self._step(bs, mode, ckpt)
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        for key in keys:
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g, pool=self.pool):
                self.outputs[key] = self._step(*key)
            self.graphs[key] = g
        torch.cuda.synchronize()

    # ---- per step ------------------------------------------------------------------------------
    def fits(self, num_seqs: int, width: int) -> bool:
        return num_seqs <= self.sizes[-1] and width <= self.max_pages

    def run(self, step: DecodeStep, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """``(logits [n, V], tokens [n])`` of ``step`` (the caches are updated in place)."""
        n = step.num_seqs
        self.steps_run += 1
        bs = next(s for s in self.sizes if s >= n)
        sampled = step.temperature is not None
        ckpt = step.checkpoint_slots is not None
        key = (bs, step.mode, ckpt)
        self.steps_by_mode[step.mode] += 1
        if sampled and self.noise is None:  # emulated (CPU): no graphs, allocated on demand
            self.noise = torch.ones(self.sizes[-1], self.vocab, device=self.device)
        host = np.zeros((_FIELDS, bs), dtype=np.int64)
        host[[1, 6, 7], n:] = -1  # padding rows: token 0 at position 0 on page 0 / slot 0
        host[6:, :n] = -1
        for row, values in enumerate(
            (step.input_ids, step.prev_src, step.positions, step.prefix_lens, step.slot_ids,
             step.has_initial, step.checkpoint_slots, step.checkpoint_offsets)
        ):  # fmt: skip
            if values is not None:
                host[row, :n] = values
        table = np.zeros((bs, step.page_table.shape[1]), dtype=np.int32)
        table[:n] = step.page_table
        self.inputs[: _FIELDS * bs].copy_(_pinned(host.reshape(-1), self.device), True)
        # Columns past the width keep older pages: no row reads past its own length.
        self.page_table[:bs, : table.shape[1]].copy_(_pinned(table, self.device), True)
        if sampled:
            assert step.temperature is not None and self.noise is not None
            self.temperature[:n].copy_(_pinned(step.temperature, self.device), True)
            if step.truncation is not None:
                for buf, values in zip(
                    (self.top_k, self.top_p, self.min_p), step.truncation, strict=True
                ):
                    buf[:n].copy_(_pinned(values, self.device), True)
            fill_exponential_noise(self.noise[:n], step.seeds, step.sample_positions, generator)
        if self.emulate:
            logits, tokens = self._step(*key)
        else:
            self.graphs[key].replay()  # every key was captured up front
            logits, tokens = self.outputs[key]
        return logits[:n], tokens[:n]


def _pinned(values: np.ndarray, device: torch.device) -> Tensor:
    host = torch.from_numpy(np.ascontiguousarray(values))
    return host.pin_memory() if device.type == "cuda" else host
