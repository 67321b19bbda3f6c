"""Requests of different lengths reuse the same compiled Triton kernels.

Triton compiles a kernel once per specialisation key: constexpr values, and for plain
arguments the dtype plus ``== 1`` / ``% 16 == 0`` of ints and 16-byte alignment of pointers.
A key that follows the request's token count, prefix or page-table width recompiles on the GPU
(hundreds of ms in that request's TTFT). Under the interpreter nothing is compiled, so this
records, for every launch of a model forward, the key Triton would compute (its own
``native_specialize_impl`` honouring each kernel's ``do_not_specialize``), and checks that
prefills of different lengths after cached prefixes of different lengths produce the same keys.

Runs on CPU inside the ``TRITON_INTERPRET=1`` subprocess of `test_kernels_triton.py`.
"""

from __future__ import annotations

import inspect
import os
from collections import defaultdict
from collections.abc import Iterator

import pytest
import torch

if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("runs under the interpreter (test_kernels_triton.py)", allow_module_level=True)

import hf_fixtures as fx
import tokenspeed.kernels.triton  # noqa: F401  (registers the backend)
import triton.language as tl
from tokenspeed.config import ModelConfig
from tokenspeed.kernels import get_backend, set_backend
from tokenspeed.models import Qwen3_5Model, SequenceChunk, build_batch
from tokenspeed.weights import dummy_weights
from triton._C.libtriton import native_specialize_impl
from triton.backends.compiler import BaseBackend
from triton.runtime.interpreter import InterpretedFunction

PAGE = 16


def _key(kernel: InterpretedFunction, args: tuple, kwargs: dict) -> tuple:
    sig = inspect.signature(kernel.fn)
    names = set(sig.parameters)
    bound = sig.bind(*args, **{k: v for k, v in kwargs.items() if k in names})
    dns = set(kernel.kwargs.get("do_not_specialize") or ())
    key = []
    for i, (name, value) in enumerate(bound.arguments.items()):
        if sig.parameters[name].annotation in (tl.constexpr, "tl.constexpr"):
            key.append((name, "constexpr", value))
        elif isinstance(value, (int, torch.Tensor)) and not isinstance(value, bool):
            specialize = name not in dns and i not in dns
            key.append((name, native_specialize_impl(BaseBackend, value, False, specialize, True)))
    return tuple(key)


@pytest.fixture
def launches(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, tuple]]]:
    seen: list[tuple[str, tuple]] = []
    run = InterpretedFunction.run

    def recording(self: InterpretedFunction, *args, grid, warmup, **kwargs):  # type: ignore[no-untyped-def]
        seen.append((self.fn.__name__, _key(self, args, kwargs)))
        return run(self, *args, grid=grid, warmup=warmup, **kwargs)

    monkeypatch.setattr(InterpretedFunction, "run", recording)
    before = get_backend()
    set_backend("triton")
    try:
        yield seen
    finally:
        set_backend(before)


def test_prefill_lengths_share_compiled_kernels(launches: list[tuple[str, tuple]]) -> None:
    config = fx.build("moe").config.to_dict()  # MoE: every prefill kernel with a length argument
    config.update(num_hidden_layers=2, layer_types=config["layer_types"][:2])
    cfg = ModelConfig.from_hf_dict(config)
    model = Qwen3_5Model(cfg, dummy_weights(cfg, torch.float32, "cpu", seed=0))
    kv, state = model.new_kv_cache(24, PAGE), model.new_state_cache(4)
    # (cached prefix, new tokens, checkpoint): the first two compile every variant (with and
    # without a checkpoint); the others differ in what Triton would specialise on if the
    # lengths were not excluded: token counts (odd or multiples of 16, all above the MoE GEMV
    # limit), page-table widths, GDN chunk counts and so the offsets of the packed tables.
    shapes = [(0, 33, False), (16, 48, True), (40, 64, False), (80, 37, True)]
    seen: dict[str, set[tuple]] = defaultdict(set)
    for i, (prefix, n, ckpt) in enumerate(shapes):
        chunk = SequenceChunk(
            tokens=[(7 * t + i) % cfg.vocab_size for t in range(n)],
            prefix_len=prefix,
            pages=list(range(1, -(-(prefix + n) // PAGE) + 1)),
            slot=1,
            has_initial_state=prefix > 0,
            checkpoint_slot=2 if ckpt else -1,
            checkpoint_offset=(n // PAGE) * PAGE if ckpt else -1,
        )
        launches.clear()
        model.forward(build_batch([chunk], PAGE, "cpu"), kv, state)
        assert launches, "no Triton kernel ran"
        for name, key in launches:
            assert i < 2 or key in seen[name], (
                f"prefix {prefix} + {n} tokens: {name} would compile a new variant {key}"
            )
            seen[name].add(key)
