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
from tokenspeed.executor.cuda_graphs import DecodeGraphs
from tokenspeed.executor.memory import PoolSizes
from tokenspeed.executor.requests import RequestMeta, RequestState
from tokenspeed.executor.step_inputs import build_step_inputs, decode_plan, to_device
from tokenspeed.models.qwen3_5 import Qwen3_5Model
from tokenspeed.sampling import SampleBatch, SampleOutput, sample


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
        self.prev_tokens: torch.Tensor | None = None  # last launched step's samples
        self.launched: deque[tuple[int, SampleOutput]] = deque()
        self.graphs: DecodeGraphs | None = None

    def capture_decode_graphs(self, max_num_seqs: int, max_pages: int) -> None:
        """CUDA only: replay pure decode steps from graphs captured per padded batch size."""
        if self.device.type == "cuda":
            with torch.inference_mode():
                self.graphs = DecodeGraphs(
                    self.model, self.kv_cache, self.state_cache, max_num_seqs, max_pages
                )

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
        inputs = build_step_inputs(a, self.prev_tokens, self.device)
        if len(a["copy_src"]):
            self.state_cache.copy_slots(inputs.copy_src, inputs.copy_dst)  # copy on write
        logits = self.graphs.run(inputs.batch) if self.graphs is not None else None
        if logits is None:
            logits = self.model.forward(inputs.batch, self.kv_cache, self.state_cache)
        out = sample(logits, self._sample_batch(a), self.generator)
        self._record_penalty_tokens(a, out.tokens)
        self.prev_tokens = out.tokens
        self.launched.append((int(plan["step"]), out))

    def collect(self, step: int) -> tuple[bytes, bytes, int, bytes, bytes]:
        """``(sampled u32, logprobs f32, top_k, top_ids u32, top_logprobs f32)`` of ``step``."""
        if not self.launched or self.launched[0][0] != step:
            have = [s for s, _ in self.launched]
            raise RuntimeError(f"collect({step}): launched and uncollected steps are {have}")
        _, out = self.launched.popleft()
        tokens = out.tokens.cpu().numpy().astype(np.uint32).tobytes()
        if out.logprobs is None or out.top_ids is None or out.top_logprobs is None:
            return tokens, b"", 0, b"", b""
        return (
            tokens,
            out.logprobs.cpu().numpy().astype(np.float32).tobytes(),
            out.top_ids.shape[1],
            out.top_ids.cpu().numpy().astype(np.uint32).tobytes(),
            out.top_logprobs.cpu().numpy().astype(np.float32).tobytes(),
        )

    def reset(self) -> None:
        """After a failed step: forget launched, uncollected steps (the engine fails their
        requests) and the previous step's samples, which no surviving request reads."""
        self.launched.clear()
        self.prev_tokens = None

    # ---- sampling inputs --------------------------------------------------------------------
    def _row_requests(self, a: dict[str, np.ndarray]) -> list[RequestState | None]:
        ids = a["request_ids"][a["sample_seqs"]].tolist()
        return [self.requests.get(rid) for rid in ids]

    def _sample_batch(self, a: dict[str, np.ndarray]) -> SampleBatch:
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
        states = self._row_requests(a)
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
        return batch

    def _record_penalty_tokens(self, a: dict[str, np.ndarray], tokens: torch.Tensor) -> None:
        for r, s in enumerate(self._row_requests(a)):
            if s is not None and s.output_counts is not None:
                s.record(tokens[r : r + 1])
