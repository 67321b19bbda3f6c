"""``ForwardBatch``: one step's packed varlen batch, as flat tensors the kernels consume."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class ForwardBatch:
    """Several sequences' new tokens concatenated (``T`` tokens, ``B`` sequences).

    input_ids [T] int64, positions [T] int64 (RoPE positions, normally prefix_len + i)
    cu_seqlens [B+1] int32: new tokens of sequence b are rows cu_seqlens[b]:cu_seqlens[b+1]
    prefix_lens [B] int32: tokens of sequence b already in the caches before this step
    page_table [B, max_pages] int32: KV pages of each sequence (prefix and new tokens), 0-padded
    slot_ids [B] int64: state slot (conv window + recurrent state) of each sequence
    has_initial_state [B] bool: False -> the GDN layers start from zeros, slot content ignored
    logits_indices [N] int64: packed rows whose logits forward() returns, in this order
    checkpoint_slots / checkpoint_offsets [B] int64 (optional; slot -1 = none): also write
      every GDN layer's state after exactly `offset` new tokens of sequence b into that slot
    max_seqlen: host-side longest new-token run; 1 means a pure decode step
    """

    input_ids: Tensor
    positions: Tensor
    cu_seqlens: Tensor
    prefix_lens: Tensor
    page_table: Tensor
    slot_ids: Tensor
    has_initial_state: Tensor
    logits_indices: Tensor
    max_seqlen: int
    checkpoint_slots: Tensor | None = None
    checkpoint_offsets: Tensor | None = None

    @property
    def num_seqs(self) -> int:
        return self.slot_ids.shape[0]

    @property
    def is_decode(self) -> bool:
        """Every sequence has exactly one new token: the GDN layers take the recurrent path."""
        return self.max_seqlen == 1

    def validate(self, page_size: int) -> None:
        """Host-side consistency checks (syncs with the device: for tests and debugging).
        Raises ValueError naming the offending field."""
        num_tokens, num_seqs = self.input_ids.shape[0], self.num_seqs
        _expect(self.input_ids.dim() == 1, "input_ids", "must be 1-D [T]")
        _expect(self.positions.shape == (num_tokens,), "positions", f"must be [T={num_tokens}]")
        for name in ("prefix_lens", "has_initial_state"):
            _expect(getattr(self, name).shape == (num_seqs,), name, f"must be [B={num_seqs}]")
        _expect(self.cu_seqlens.shape == (num_seqs + 1,), "cu_seqlens", "must be [B+1]")
        cu = self.cu_seqlens.tolist()
        lens = [end - start for start, end in itertools.pairwise(cu)]
        _expect(
            cu[0] == 0 and cu[-1] == num_tokens, "cu_seqlens", f"must run from 0 to T={num_tokens}"
        )
        _expect(all(n >= 1 for n in lens), "cu_seqlens", "every sequence needs >= 1 new token")
        _expect(
            self.max_seqlen == max(lens), "max_seqlen", f"is {self.max_seqlen}, not {max(lens)}"
        )
        _expect(
            self.page_table.dim() == 2 and self.page_table.shape[0] == num_seqs,
            "page_table",
            f"must be [B={num_seqs}, max_pages]",
        )
        for b, (prefix, n) in enumerate(zip(self.prefix_lens.tolist(), lens, strict=True)):
            needed = -(-(prefix + n) // page_size)
            row = self.page_table[b, :needed].tolist()
            _expect(
                len(row) == needed and 0 not in row,
                "page_table",
                f"sequence {b} holds {prefix}+{n} tokens and needs {needed} real pages: {row}",
            )
        rows = self.logits_indices
        _expect(
            rows.numel() == 0 or (int(rows.min()) >= 0 and int(rows.max()) < num_tokens),
            "logits_indices",
            f"must index rows in [0, {num_tokens})",
        )
        if (self.checkpoint_slots is None) != (self.checkpoint_offsets is None):
            raise ValueError("checkpoint_slots and checkpoint_offsets must be given together")
        if self.checkpoint_slots is not None and self.checkpoint_offsets is not None:
            pairs = zip(
                self.checkpoint_slots.tolist(), self.checkpoint_offsets.tolist(), lens, strict=True
            )
            for b, (slot, offset, n) in enumerate(pairs):
                _expect(
                    slot < 0 or 0 <= offset <= n,
                    "checkpoint_offsets",
                    f"sequence {b}: offset {offset} outside [0, {n}]",
                )

    def kv_indices(self, page_size: int) -> Tensor:
        """Flat KV-cache row (``page * page_size + row``) of every new token, ``[T]`` int64."""
        num_tokens = self.input_ids.shape[0]
        seq_lens = self.cu_seqlens[1:] - self.cu_seqlens[:-1]
        seq = torch.repeat_interleave(
            torch.arange(self.num_seqs, device=seq_lens.device), seq_lens, output_size=num_tokens
        )
        token = torch.arange(num_tokens, device=seq.device)
        pos = token - self.cu_seqlens[seq] + self.prefix_lens[seq]  # index in the whole sequence
        pages = self.page_table[seq, pos // page_size].long()
        return pages * page_size + pos % page_size


@dataclass
class SequenceChunk:
    """Host-side description of one sequence's part of a step (used to build batches)."""

    tokens: list[int]
    prefix_len: int
    pages: list[int]
    slot: int
    has_initial_state: bool
    all_logits: bool = False  # else only the last token's logits
    checkpoint_slot: int = -1
    checkpoint_offset: int = -1


def build_batch(
    chunks: list[SequenceChunk], page_size: int, device: str | torch.device
) -> ForwardBatch:
    """Pack host-side chunks into a validated ``ForwardBatch``."""
    if not chunks:
        raise ValueError("empty batch")
    ids: list[int] = []
    positions: list[int] = []
    cu = [0]
    logits_rows: list[int] = []
    for c in chunks:
        if not c.tokens:
            raise ValueError("a sequence in the batch has no new tokens")
        start = cu[-1]
        ids += c.tokens
        positions += range(c.prefix_len, c.prefix_len + len(c.tokens))
        cu.append(start + len(c.tokens))
        logits_rows += range(start, cu[-1]) if c.all_logits else [cu[-1] - 1]
    max_pages = max(len(c.pages) for c in chunks)
    table = [c.pages + [0] * (max_pages - len(c.pages)) for c in chunks]
    has_ckpt = any(c.checkpoint_slot >= 0 for c in chunks)

    def t(values: list, dtype: torch.dtype) -> Tensor:
        return torch.tensor(values, dtype=dtype, device=device)

    batch = ForwardBatch(
        input_ids=t(ids, torch.int64),
        positions=t(positions, torch.int64),
        cu_seqlens=t(cu, torch.int32),
        prefix_lens=t([c.prefix_len for c in chunks], torch.int32),
        page_table=t(table, torch.int32),
        slot_ids=t([c.slot for c in chunks], torch.int64),
        has_initial_state=t([c.has_initial_state for c in chunks], torch.bool),
        logits_indices=t(logits_rows, torch.int64),
        max_seqlen=max(len(c.tokens) for c in chunks),
        checkpoint_slots=t([c.checkpoint_slot for c in chunks], torch.int64) if has_ckpt else None,
        checkpoint_offsets=(
            t([c.checkpoint_offset for c in chunks], torch.int64) if has_ckpt else None
        ),
    )
    batch.validate(page_size)
    return batch


def _expect(ok: bool, field: str, problem: str) -> None:
    if not ok:
        raise ValueError(f"ForwardBatch.{field}: {problem}")
