"""``tokenspeed serve``: load the model and engine in Python, then run the Rust HTTP server
(``tokenspeed._core.serve``) in this process until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tokenspeed import _core
from tokenspeed.engine import EngineArgs, EngineCore
from tokenspeed.executor import RequestMeta
from tokenspeed.generation_config import default_sampling
from tokenspeed.presets import is_preset
from tokenspeed.sampling_params import SamplingParams


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``tokenspeed serve`` (vLLM's names where vLLM has the option)."""
    add = parser.add_argument
    add("--model", default=None, help="Hugging Face model directory (default: the demo model)")
    add("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: local only)")
    add("--port", type=int, default=8000)
    add("--served-model-name", default=None, help="name clients pass as `model`")
    add("--max-model-len", type=int, default=None, help="most tokens (prompt + output)")
    add("--max-num-seqs", type=int, default=256, help="most requests running at once")
    add(
        "--enable-prefix-caching",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="reuse the KV cache and recurrent state of shared prompt prefixes",
    )
    add("--dtype", default="auto", help="auto, bfloat16, float16 or float32")
    add("--device", default="auto", help="auto, cuda, cuda:N or cpu")
    add("--page-size", type=int, default=64, help="tokens per KV-cache page")
    add("--tool-call-parser", default="auto", help="auto, qwen3_coder, hermes or none")
    add("--reasoning-parser", default="auto", help="auto, qwen3 or none")
    add(
        "--generation-config",
        default="auto",
        help="default sampling for omitted request fields: 'auto' (the model's "
        "generation_config.json), 'vllm' (temperature 1, no truncation) or a directory",
    )
    add("--chat-template", default=None, help="a Jinja chat template file to use instead")
    add("--api-key", default=None, help="require `Authorization: Bearer KEY`")
    add("--max-pending-requests", type=int, default=1024, help="beyond this, answer 429")
    add("--max-request-bytes", type=int, default=32 << 20, help="beyond this, answer 413")
    add("--seed", type=int, default=0, help="seed of unseeded requests' sampling")
    add(
        "--shutdown-timeout",
        type=float,
        default=30.0,
        help="on SIGTERM/SIGINT, seconds in-flight requests may finish (new ones get 503)",
    )
    add(
        "--load-format",
        default="auto",
        choices=["auto", "safetensors", "dummy"],
        help="dummy: random weights created on the device (benchmarks; `--model` may name a preset)",
    )
    add("--num-layers", type=int, default=None, help="run only the first N layers (dummy only)")
    add(
        "--enforce-eager",
        action="store_true",
        help="never use CUDA graphs (for comparison and debugging)",
    )
    add(
        "--overlap",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="plan step N+1 on the CPU while the GPU runs step N",
    )
    add("--kv-cache-pages", type=int, default=None, help="KV-cache pages (default: from memory)")
    add("--state-slots", type=int, default=None, help="recurrent-state slots (default: sized)")
    add(
        "--gpu-memory-utilization",
        type=float,
        default=0.9,
        help="fraction of GPU memory the engine may use",
    )
    add(
        "--max-num-batched-tokens",
        type=int,
        default=8192,
        help="most prompt tokens prefilled in one step (chunked prefill size)",
    )


def _meta_factory(core: EngineCore) -> Any:
    eos = list(core.cfg.eos_token_ids)

    def make_meta(prompt: list[int], params: dict[str, Any]) -> RequestMeta:
        sampling = SamplingParams(**params)
        stop_ids = list(sampling.stop_token_ids)
        if not sampling.ignore_eos:
            stop_ids += [t for t in eos if t not in stop_ids]
        return RequestMeta(prompt_token_ids=prompt, params=sampling, stop_ids=stop_ids)

    return make_meta


def _preset_tokenizer_dir(preset: str) -> Path:
    from tokenspeed.vocab.qwen3_5 import default_cache_dir, write_qwen3_5_tokenizer_files

    directory = default_cache_dir().parent.parent / "presets" / preset
    if not (directory / "tokenizer.json").is_file():
        directory.mkdir(parents=True, exist_ok=True)
        write_qwen3_5_tokenizer_files(directory)
    return directory


def serve(args: argparse.Namespace) -> int:
    """Runs the server; returns the exit code (0 after a SIGINT/SIGTERM drain)."""
    if args.model is None:
        from tokenspeed.demo import DEMO_BANNER, DEMO_NAME, ensure_demo_model

        print(DEMO_BANNER, file=sys.stderr, flush=True)
        model_dir = ensure_demo_model()
        name = args.served_model_name or DEMO_NAME
    elif is_preset(args.model):
        # A preset has no directory: its engine runs on dummy weights and the server uses the
        # Qwen3.5 vocabulary and the built-in template from a cached directory of its own.
        model_dir = _preset_tokenizer_dir(args.model)
        name = args.served_model_name or args.model
    else:
        model_dir = Path(args.model)
        name = args.served_model_name or model_dir.name
    try:
        defaults = default_sampling(model_dir, args.generation_config)
    except ValueError as e:
        print(f"tokenspeed: {e}", file=sys.stderr, flush=True)
        return 2
    if defaults:
        print(f"tokenspeed: default sampling from generation_config.json: {defaults}",
              file=sys.stderr, flush=True)  # fmt: skip
    eager = {"enforce_eager": True} if args.enforce_eager else {}
    core = EngineCore(
        EngineArgs(
            model=args.model
            if args.model is not None and is_preset(args.model)
            else str(model_dir),
            dtype=args.dtype,
            device=args.device,
            enable_prefix_caching=args.enable_prefix_caching,
            page_size=args.page_size,
            chunked_prefill_size=args.max_num_batched_tokens,
            max_num_seqs=args.max_num_seqs,
            max_model_len=args.max_model_len,
            kv_cache_pages=args.kv_cache_pages,
            state_slots=args.state_slots,
            overlap=args.overlap,
            load_format=args.load_format,
            gpu_memory_utilization=args.gpu_memory_utilization,
            seed=args.seed,
            num_layers=args.num_layers,
            **eager,
        )
    )
    print(
        f"tokenspeed: serving {model_dir} as '{name}' on http://{args.host}:{args.port}/v1",
        file=sys.stderr,
        flush=True,
    )
    try:
        _core.serve(
            core.engine,
            _meta_factory(core),
            model_dir=str(model_dir),
            model_type=core.cfg.model_type,
            host=args.host,
            port=args.port,
            served_model_name=name,
            max_model_len=core.max_model_len,
            api_key=args.api_key,
            tool_call_parser=args.tool_call_parser,
            reasoning_parser=args.reasoning_parser,
            chat_template=args.chat_template,
            max_pending=args.max_pending_requests,
            max_body_bytes=args.max_request_bytes,
            shutdown_timeout=args.shutdown_timeout,
            default_sampling=defaults,
        )
    except KeyboardInterrupt:  # SIGINT is also seen by Python once the server returned
        pass
    return 0
