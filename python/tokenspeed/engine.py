"""``EngineCore``: the model, the Python executor and the Rust engine thread, wired together.
``LLM`` (offline) builds on it; a server would too."""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from tokenspeed import _core
from tokenspeed.config import ModelConfig
from tokenspeed.executor import Executor, PoolSizes, RequestMeta, size_pools
from tokenspeed.models import Qwen3_5Model, load_model
from tokenspeed.presets import is_preset, preset_config, slice_layers
from tokenspeed.sampling_params import SamplingParams
from tokenspeed.weights import dummy_weights

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class EngineArgs:
    """Engine construction options (``LLM``'s keyword arguments)."""

    model: str
    dtype: str | torch.dtype = "auto"
    device: str = "auto"
    enable_prefix_caching: bool = True
    page_size: int = 64
    chunked_prefill_size: int | None = 8192
    max_num_seqs: int = 256
    max_model_len: int | None = None
    kv_cache_pages: int | None = None
    state_slots: int | None = None
    overlap: bool = True
    load_format: str = "auto"
    gpu_memory_utilization: float = 0.9
    seed: int = 0
    num_layers: int | None = None  # run only the first N layers (dummy weights only)
    # True: no decode CUDA graphs (CUDA only; they hold forward + greedy/temperature sampling).
    enforce_eager: bool = False


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype, cfg: ModelConfig, device: torch.device) -> torch.dtype:
    """``auto``: the checkpoint's dtype on GPU, float32 on CPU (the reference kernels' dtype)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        if device.type != "cuda":
            return torch.float32
        dtype = (cfg.torch_dtype or "bfloat16").removeprefix("torch.")
    if dtype not in _DTYPES:
        raise ValueError(f"dtype={dtype!r}: choose auto, {', '.join(_DTYPES)}")
    return _DTYPES[dtype]


class EngineCore:
    """Loads the model, sizes the pools, starts the engine thread; submits requests."""

    def __init__(self, args: EngineArgs) -> None:
        path = Path(args.model)
        self.cfg = self._config(args)
        device = resolve_device(args.device)
        dtype = resolve_dtype(args.dtype, self.cfg, device)
        self.model = self._load(path, self.cfg, dtype, device, args.load_format)
        self.max_model_len = args.max_model_len or self.cfg.max_position_embeddings
        if self.max_model_len > self.cfg.max_position_embeddings:
            raise ValueError(
                f"max_model_len={self.max_model_len} exceeds the model's "
                f"max_position_embeddings={self.cfg.max_position_embeddings}"
            )
        if args.max_num_seqs < 1:
            raise ValueError(f"max_num_seqs={args.max_num_seqs}: must be >= 1")
        sizes: PoolSizes = size_pools(
            self.cfg, dtype, device,
            page_size=args.page_size, max_num_seqs=args.max_num_seqs,
            max_model_len=self.max_model_len, kv_cache_pages=args.kv_cache_pages,
            state_slots=args.state_slots, gpu_memory_utilization=args.gpu_memory_utilization,
        )  # fmt: skip
        self.sizes = sizes
        self.executor = Executor(self.model, sizes, seed=args.seed)
        # One working slot per running request, and room for its snapshots.
        max_running = max(1, min(args.max_num_seqs, (sizes.num_slots - 1) // 2))
        # The scheduler needs room for a full decode batch plus one page of prefill per step.
        floor = max_running - 1 + args.page_size
        chunk = args.chunked_prefill_size or self.max_model_len + max_running
        self.max_running = max_running
        if not args.enforce_eager:
            max_pages = -(-(self.max_model_len + 1) // sizes.page_size)
            self.executor.capture_decode_graphs(max_running, max_pages)
        self.engine = _core.Engine(
            self.executor,
            num_pages=sizes.num_pages,
            page_size=sizes.page_size,
            num_slots=sizes.num_slots,
            max_running=max_running,
            max_step_tokens=max(chunk, floor),
            max_context=self.max_model_len,
            eos_token_ids=list(self.cfg.eos_token_ids),
            overlap=args.overlap,
            prefix_caching=args.enable_prefix_caching,
        )
        self._ids = itertools.count()
        self._lock = threading.Lock()

    @staticmethod
    def _config(args: EngineArgs) -> ModelConfig:
        """A preset name (``tokenspeed.presets``) or a model directory; ``num_layers`` slices."""
        preset = is_preset(args.model) and not Path(args.model).exists()
        if preset and args.load_format != "dummy":
            raise ValueError(
                f"model={args.model!r} is a built-in preset without weights: "
                "pass load_format='dummy'"
            )
        if args.num_layers is not None and args.load_format != "dummy":
            raise ValueError("num_layers slices a model: only supported with load_format='dummy'")
        if preset:
            return preset_config(args.model, args.num_layers)
        return slice_layers(ModelConfig.from_pretrained(args.model), args.num_layers)

    @staticmethod
    def _load(
        path: Path, cfg: ModelConfig, dtype: torch.dtype, device: torch.device, fmt: str
    ) -> Qwen3_5Model:
        if fmt in ("auto", "safetensors"):
            return load_model(path, dtype=dtype, device=device, progress=False)
        if fmt == "dummy":
            return Qwen3_5Model(cfg, dummy_weights(cfg, dtype, device))
        raise ValueError(f"load_format={fmt!r}: choose auto, safetensors or dummy")

    def submit(self, prompt: list[int], params: SamplingParams) -> tuple[int, _core.RequestStream]:
        """Queues one request; returns its id and event stream."""
        vocab = self.cfg.vocab_size
        bad = [t for t in prompt if not 0 <= t < vocab]
        if bad:
            raise ValueError(f"prompt token ids {bad[:5]} are outside the vocabulary [0, {vocab})")
        if not prompt:
            raise ValueError("the prompt is empty")
        bad = [t for t in params.logit_bias or {} if t >= vocab]
        if bad:
            raise ValueError(f"logit_bias token ids {bad[:5]} are outside the vocabulary")
        max_tokens = params.max_tokens or max(1, self.max_model_len - len(prompt))
        stop_ids = list(params.stop_token_ids)
        if not params.ignore_eos:
            stop_ids += [t for t in self.cfg.eos_token_ids if t not in stop_ids]
        meta = RequestMeta(prompt_token_ids=prompt, params=params, stop_ids=stop_ids)
        with self._lock:
            rid = next(self._ids)
        stream = self.engine.submit(
            rid, prompt, max_tokens,
            temperature=params.temperature, top_p=params.top_p, top_k=max(params.top_k, 0),
            min_p=params.min_p, presence_penalty=params.presence_penalty,
            frequency_penalty=params.frequency_penalty,
            repetition_penalty=params.repetition_penalty, seed=params.seed,
            stop_token_ids=list(params.stop_token_ids), ignore_eos=params.ignore_eos,
            min_tokens=params.min_tokens, logprobs=params.logprobs, meta=meta,
        )  # fmt: skip
        return rid, stream

    def abort(self, request_id: int) -> None:
        self.engine.abort(request_id)

    def stats(self) -> dict[str, int]:
        return dict(self.engine.stats())

    def check_integrity(self) -> None:
        self.engine.check_integrity()

    def shutdown(self) -> None:
        self.engine.shutdown()
