"""The GDN state pass (``gdn_chunked_state64``) finds chunk ``c`` of a sequence by arithmetic on
``c`` from ``checkpoint_cuts`` instead of loading it from ``chunk_table``: both must give the same
chunks, and the checkpoint chunk must be the first one after the cut, for any lengths and
checkpoint offsets (pure host code: no kernel runs here)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from tokenspeed.kernels.triton.gdn_chunked import CHUNK, checkpoint_cuts, chunk_table


@st.composite
def batches(draw) -> tuple[list[int], list[int], list[int]]:
    lens = draw(st.lists(st.integers(0, 5 * CHUNK + 3), min_size=1, max_size=6))
    slots, offsets = [], []
    for n in lens:
        has = draw(st.booleans())
        slots.append(draw(st.integers(0, 9)) if has else -1)
        offsets.append(draw(st.integers(0, n)) if has else 0)
    bounds = [0]
    for n in lens:
        bounds.append(bounds[-1] + n)
    return bounds, slots, offsets


@settings(max_examples=300, deadline=None)
@given(batches())
def test_arithmetic_chunks_are_the_table_chunks(batch) -> None:
    bounds, slots, offsets = batch
    starts, lengths, first, count, ckpt = chunk_table(bounds, slots, offsets)
    cuts, before = checkpoint_cuts(bounds, slots, offsets)
    for b in range(len(bounds) - 1):
        lo, hi = bounds[b], bounds[b + 1]
        for c in range(count[b]):  # the kernel's formula
            after = c >= before[b]
            start = cuts[b] + (c - before[b]) * CHUNK if after else lo + c * CHUNK
            length = min((hi if after else cuts[b]) - start, CHUNK)
            assert (start, length) == (starts[first[b] + c], lengths[first[b] + c])
            assert length > 0
        assert ckpt[b] == (before[b] if slots[b] >= 0 else -1)
