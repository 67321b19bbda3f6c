"""``Executor``: what the Rust engine thread calls each step.

``launch(plan)`` applies the plan's state copies, runs the model on the packed batch (KV and
recurrent state written in place, checkpoint snapshots taken inside the GDN kernels) and
samples, leaving the results on the device; ``collect(step)`` returns a launched step's
results as ``bytes``. The sampled tokens stay on the device as the next step's decode inputs,
so the engine may plan and launch step N+1 before collecting step N (overlap).
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch

from tokenspeed.executor import faults
from tokenspeed.executor.cuda_graphs import DecodeGraphs, DecodeStep
from tokenspeed.executor.host_copy import HostCopy
from tokenspeed.executor.memory import PoolSizes
from tokenspeed.executor.requests import RequestMeta, RequestState
from tokenspeed.executor.step_inputs import (
    build_step_inputs,
    decode_plan,
    page_table_rows,
    to_device,
)
from tokenspeed.models.qwen3_5 import Qwen3_5Model
from tokenspeed.sampling import TOP_K_CAP, SampleBatch, SampleOutput, sample


def use_triton_kernels() -> None:
    """On CUDA every op runs its Triton kernel (ops without one fall back to the reference).
    Process-wide: one engine serves one model on one device."""
    import tokenspeed.kernels.triton  # noqa: F401  (registers the backend)
    from tokenspeed.kernels import set_backend

    set_backend("triton")


class Executor:
    def __init__(self, model: Qwen3_5Model, sizes: PoolSizes, seed: int = 0) -> None:
        self.model = model
        self.device = torch.device(model.device)
        if self.device.type == "cuda":
            use_triton_kernels()
        self.vocab = model.cfg.vocab_size
        self.kv_cache = model.new_kv_cache(sizes.num_pages, sizes.page_size)
        self.state_cache = model.new_state_cache(sizes.num_slots)
        self.requests: dict[int, RequestState] = {}
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        # The last launched step's samples, read on the device as the next step's decode
        # inputs. Every sampled row holds a state slot, so num_slots rows always suffice.
        self.token_buf = torch.zeros(sizes.num_slots, dtype=torch.int64, device=self.device)
        self.has_prev = False
        self.launched: deque[tuple[int, HostCopy]] = deque()
        self.graphs: DecodeGraphs | None = None

    def capture_decode_graphs(
        self, max_num_seqs: int, max_pages: int, emulate: bool = False
    ) -> None:
        """Replay pure decode steps (forward + sampling) from graphs captured per padded batch
        size. CUDA only, unless ``emulate`` (CPU tests: the same static-buffer step, eager)."""
        if self.device.type == "cuda" or emulate:
            with torch.inference_mode():
                self.graphs = DecodeGraphs(
                    self.model, self.kv_cache, self.state_cache, self.token_buf,
                    max_num_seqs, max_pages, emulate=self.device.type != "cuda",
                )  # fmt: skip

    # ---- the engine's contract --------------------------------------------------------------
    @torch.inference_mode()
    def launch(self, plan: dict) -> None:
        a = decode_plan(plan)
        for rid in a["released"].tolist():
            self.requests.pop(rid, None)
        for rid, meta, output in plan["admitted"]:
            if not isinstance(meta, RequestMeta):
                raise TypeError(f"request {rid}: meta must be a RequestMeta, got {type(meta)}")
            out = np.frombuffer(output, dtype=np.uint32).tolist()
            self.requests[rid] = RequestState(meta, out, self.vocab, self.device)
        if faults.ENABLED:  # test-only hook (TOKENSPEED_FAULT_FILE)
            faults.check(int(plan["step"]))
        if len(a["prev_token_dst"]) and not self.has_prev:
            raise ValueError("the plan reads the previous step's samples but there is none")
        if len(a["copy_src"]):  # copy on write
            dev = self.device
            src = to_device(a["copy_src"], torch.int64, dev)
            self.state_cache.copy_slots(src, to_device(a["copy_dst"], torch.int64, dev))
        states = self._row_requests(a)
        step = self._graph_step(a) if self.graphs is not None else None
        if step is not None:
            assert self.graphs is not None
            own = _graph_samples(a, states, self.vocab)
            if not own:
                step.temperature = step.truncation = None  # the graph's logits, sampled below
            logits, tokens = self.graphs.run(step, self.generator)
            out = SampleOutput(tokens, None, None, None)
            if not own:
                out = sample(logits, self._sample_batch(a, states), self.generator)
        else:
            inputs = build_step_inputs(a, self.token_buf, self.device)
            logits = self.model.forward(inputs.batch, self.kv_cache, self.state_cache)
            out = sample(logits, self._sample_batch(a, states), self.generator)
        self._record_penalty_tokens(states, out.tokens)
        self.token_buf[: len(out.tokens)].copy_(out.tokens)
        self.has_prev = True
        self.launched.append((int(plan["step"]), HostCopy(out, self.device)))

    def collect(self, step: int) -> tuple[bytes, bytes, int, bytes, bytes]:
        """``(sampled u32, logprobs f32, top_k, top_ids u32, top_logprobs f32)`` of ``step``.
        Waits only for that step's device-to-host copy (later steps keep running)."""
        if not self.launched or self.launched[0][0] != step:
            have = [s for s, _ in self.launched]
            raise RuntimeError(f"collect({step}): launched and uncollected steps are {have}")
        _, copy = self.launched.popleft()
        return copy.result()

    def reset(self) -> None:
        """After a failed step: forget launched, uncollected steps (the engine fails their
        requests) and the previous step's samples, which no surviving request reads."""
        self.launched.clear()
        self.has_prev = False

    # ---- the graph path ---------------------------------------------------------------------
    def _graph_step(self, a: dict[str, np.ndarray]) -> DecodeStep | None:
        """The plan as a ``DecodeStep`` when it is a pure decode step the graphs hold: one new
        token per sequence, all of them sampled."""
        assert self.graphs is not None
        n = len(a["working_slots"])
        widths = np.diff(a["cu_pages"].astype(np.int64))
        if (
            len(a["input_ids"]) != n
            or len(a["logits_indices"]) != n
            or not np.array_equal(a["sample_seqs"], np.arange(n))
            or not self.graphs.fits(n, int(widths.max(initial=1)))
        ):
            return None
        prev_src = np.full(n, -1, dtype=np.int64)
        prev_src[a["prev_token_dst"]] = a["prev_token_src"]
        temperature = a["temperature"]
        greedy = bool((temperature < 1e-5).all())
        ckpt_slots = a["checkpoint_slots"].astype(np.int64)
        has_ckpt = bool((ckpt_slots >= 0).any())
        ckpt_offsets = np.where(ckpt_slots >= 0, a["checkpoint_offsets"] - a["num_cached"], -1)
        return DecodeStep(
            input_ids=a["input_ids"].astype(np.int64),
            prev_src=prev_src,
            positions=a["positions"].astype(np.int64),
            prefix_lens=a["num_cached"].astype(np.int64),
            slot_ids=a["working_slots"].astype(np.int64),
            has_initial=~np.isin(a["working_slots"], a["zero_slots"]),
            page_table=page_table_rows(a["page_table"], a["cu_pages"]),
            checkpoint_slots=ckpt_slots if has_ckpt else None,
            checkpoint_offsets=ckpt_offsets.astype(np.int64) if has_ckpt else None,
            temperature=None if greedy else temperature.astype(np.float32),
            seeds=a["seed"].tolist(),
            sample_positions=(a["positions"].astype(np.int64) + 1).tolist(),
            truncation=None if greedy else _truncation(a, self.vocab),
        )

    # ---- sampling inputs --------------------------------------------------------------------
    def _row_requests(self, a: dict[str, np.ndarray]) -> list[RequestState | None]:
        ids = a["request_ids"][a["sample_seqs"]].tolist()
        return [self.requests.get(rid) for rid in ids]

    def _sample_batch(
        self, a: dict[str, np.ndarray], states: list[RequestState | None]
    ) -> SampleBatch:
        dev = self.device
        temperature, top_k, top_p = a["temperature"], a["top_k"], a["top_p"]
        positions = (a["positions"][a["logits_indices"]].astype(np.int64) + 1).tolist()
        batch = SampleBatch(
            temperature=to_device(temperature, torch.float32, dev),
            top_p=to_device(top_p, torch.float32, dev),
            top_k=to_device(top_k, torch.int64, dev),
            min_p=to_device(a["min_p"], torch.float32, dev),
            presence=to_device(a["presence_penalty"], torch.float32, dev),
            frequency=to_device(a["frequency_penalty"], torch.float32, dev),
            repetition=to_device(a["repetition_penalty"], torch.float32, dev),
            seeds=a["seed"].tolist(),
            positions=positions,
            num_logprobs=int(a["num_logprobs"].max(initial=-1)),
            all_greedy=bool((temperature < 1e-5).all()),
            use_min_p=bool((a["min_p"] > 0).any()),
            use_top_k_p=bool(((top_k > 0) & (top_k < self.vocab)).any() or (top_p < 1).any()),
        )
        penalty_rows = [r for r, s in enumerate(states) if s and s.output_counts is not None]
        if penalty_rows:
            batch.penalty_rows = torch.tensor(penalty_rows, device=dev)
            batch.prompt_mask = torch.stack([states[r].prompt_mask for r in penalty_rows])  # type: ignore[union-attr,misc]
            batch.output_counts = torch.stack([states[r].output_counts for r in penalty_rows])  # type: ignore[union-attr,misc]
        banned_rows: list[int] = []
        banned_tokens: list[int] = []
        for r, s in enumerate(states):
            if s and s.stop_ids and positions[r] - s.prompt_len < s.min_tokens:
                banned_rows += [r] * len(s.stop_ids)
                banned_tokens += s.stop_ids
        if banned_rows:
            batch.banned_rows = torch.tensor(banned_rows, device=dev)
            batch.banned_tokens = torch.tensor(banned_tokens, device=dev)
        biased = [(r, s) for r, s in enumerate(states) if s and s.bias_ids]
        if biased:
            batch.bias_rows = torch.tensor([r for r, s in biased for _ in s.bias_ids], device=dev)
            batch.bias_tokens = torch.tensor([t for _, s in biased for t in s.bias_ids], device=dev)
            values = [v for _, s in biased for v in s.bias_values]
            batch.bias_values = torch.tensor(values, dtype=torch.float32, device=dev)
        return batch

    def _record_penalty_tokens(
        self, states: list[RequestState | None], tokens: torch.Tensor
    ) -> None:
        for r, s in enumerate(states):
            if s is not None and s.output_counts is not None:
                s.record(tokens[r : r + 1])


def _top_k(a: dict[str, np.ndarray], vocab: int) -> np.ndarray:
    """Per-row top-k with "keep everything" as 0 (0, -1 and k >= vocab all mean it)."""
    top_k = a["top_k"].astype(np.int64)
    return np.where((top_k <= 0) | (top_k >= vocab), 0, top_k)


def _truncation(
    a: dict[str, np.ndarray], vocab: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The graph's per-row ``(top_k, top_p, min_p)`` when some sampled row has a top-k."""
    top_k = _top_k(a, vocab)
    sampled = a["temperature"] >= 1e-5
    if not (sampled & (top_k > 0)).any():
        return None
    return top_k, a["top_p"].astype(np.float32), a["min_p"].astype(np.float32)


def _graph_samples(a: dict[str, np.ndarray], states: list[RequestState | None], vocab: int) -> bool:
    """Whether the graph's own sampling is this step's ``sample``: no logprobs, penalties,
    logit bias or min_tokens-banned stop tokens, and every sampled row either untruncated or
    with a top-k of at most TOP_K_CAP (top-p / min-p on top of it)."""
    if int(a["num_logprobs"].max(initial=-1)) >= 0:
        return False
    top_k, sampled = _top_k(a, vocab), a["temperature"] >= 1e-5
    untruncated = (top_k == 0) & (a["top_p"] >= 1) & (a["min_p"] <= 0)
    if (sampled & ~untruncated & ((top_k == 0) | (top_k > TOP_K_CAP))).any():
        return False
    positions = a["positions"][a["logits_indices"]].astype(np.int64) + 1
    for s, pos in zip(states, positions.tolist(), strict=True):
        if s is not None and (
            s.output_counts is not None
            or s.bias_ids
            or (s.stop_ids and pos - s.prompt_len < s.min_tokens)
        ):
            return False
    return True
