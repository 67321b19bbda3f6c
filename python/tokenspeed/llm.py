"""``LLM``: the offline API (vLLM-compatible names) on top of ``EngineCore``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from tokenspeed import _core
from tokenspeed.engine import EngineArgs, EngineCore
from tokenspeed.generation_config import default_sampling
from tokenspeed.outputs import CompletionOutput, RequestOutput
from tokenspeed.sampling_params import SamplingParams

Conversation = list[dict[str, Any]]


class LLM:
    """Offline generation: ``LLM(model_dir).generate(prompts, SamplingParams(...))``.

    Without a ``tokenizer.json`` in the model directory, pass ``prompt_token_ids`` (outputs
    then have empty ``text``). ``model`` may also name a preset (``tokenspeed.presets``) run
    with ``load_format="dummy"``; ``num_layers`` runs only the first N layers (dummy only).
    ``generation_config``: where :meth:`get_default_sampling_params` comes from (``auto``: the
    model's ``generation_config.json``, ``vllm``: plain defaults, or a directory)."""

    def __init__(
        self,
        model: str | Path,
        dtype: str | torch.dtype = "auto",
        device: str = "auto",
        enable_prefix_caching: bool = True,
        page_size: int = 64,
        chunked_prefill_size: int | None = 8192,
        max_num_seqs: int = 256,
        max_model_len: int | None = None,
        kv_cache_pages: int | None = None,
        state_slots: int | None = None,
        overlap: bool = True,
        load_format: str = "auto",
        gpu_memory_utilization: float = 0.9,
        seed: int = 0,
        num_layers: int | None = None,
        enforce_eager: bool = False,
        chat_template: str | Path | None = None,
        generation_config: str = "auto",
    ) -> None:
        args = EngineArgs(
            model=str(model), dtype=dtype, device=device,
            enable_prefix_caching=enable_prefix_caching, page_size=page_size,
            chunked_prefill_size=chunked_prefill_size, max_num_seqs=max_num_seqs,
            max_model_len=max_model_len, kv_cache_pages=kv_cache_pages, state_slots=state_slots,
            overlap=overlap, load_format=load_format,
            gpu_memory_utilization=gpu_memory_utilization, seed=seed, num_layers=num_layers,
            enforce_eager=enforce_eager,
        )  # fmt: skip
        model_dir = Path(model) if Path(model).is_dir() else None
        self._default_sampling = default_sampling(model_dir, generation_config)
        self.core = EngineCore(args)
        # The server's Rust tokenizer and chat-template renderer: offline prompts are built
        # exactly as served ones.
        self.tokenizer = (
            _core.ChatFrontend(str(model), chat_template)
            if (Path(model) / "tokenizer.json").is_file()
            else None
        )

    # ---- generation -------------------------------------------------------------------------
    def generate(
        self,
        prompts: str | list[str] | None = None,
        sampling_params: SamplingParams | list[SamplingParams] | None = None,
        prompt_token_ids: list[int] | list[list[int]] | None = None,
    ) -> list[RequestOutput]:
        """Runs every prompt to completion; outputs are in input order."""
        texts, token_lists = self._prompts(prompts, prompt_token_ids)
        if sampling_params is None:
            sampling_params = self.get_default_sampling_params()
        params = (
            sampling_params
            if isinstance(sampling_params, list)
            else [sampling_params] * len(token_lists)
        )
        if len(params) != len(token_lists):
            raise ValueError(f"{len(params)} sampling_params for {len(token_lists)} prompts")
        submitted = [self.core.submit(t, p) for t, p in zip(token_lists, params, strict=True)]
        results = []
        for (rid, stream), text, tokens, p in zip(
            submitted, texts, token_lists, params, strict=True
        ):
            results.append(self._wait(rid, stream, text, tokens, p))
        return results

    def get_default_sampling_params(self) -> SamplingParams:
        """SamplingParams with the model's generation-config defaults (vLLM's method)."""
        return SamplingParams(**self._default_sampling)  # type: ignore[arg-type]

    def chat(
        self,
        messages: Conversation | list[Conversation],
        sampling_params: SamplingParams | list[SamplingParams] | None = None,
        tools: list[dict[str, Any]] | None = None,
        chat_template_kwargs: dict[str, Any] | None = None,
        add_generation_prompt: bool = True,
    ) -> list[RequestOutput]:
        """Generates replies to one conversation (a list of OpenAI-style messages) or a list
        of them, rendered by the model's chat template with ``tools`` and
        ``chat_template_kwargs`` (e.g. ``{"enable_thinking": False}``)."""
        if self.tokenizer is None:
            raise ValueError("this model directory has no tokenizer.json: chat needs one")
        # One conversation is a list of message dicts (an empty one is refused by render).
        single = not messages or isinstance(messages[0], dict)
        conversations = [messages] if single else list(messages)
        prompts = [
            self.render_chat(c, tools, chat_template_kwargs, add_generation_prompt)
            for c in conversations
        ]
        return self.generate(prompts, sampling_params)

    def render_chat(
        self,
        messages: Conversation,
        tools: list[dict[str, Any]] | None = None,
        chat_template_kwargs: dict[str, Any] | None = None,
        add_generation_prompt: bool = True,
    ) -> str:
        """The prompt text ``chat`` generates from (the template's rendering)."""
        if self.tokenizer is None:
            raise ValueError("this model directory has no tokenizer.json: chat needs one")
        return self.tokenizer.render(
            json.dumps(messages),
            None if tools is None else json.dumps(tools),
            None if chat_template_kwargs is None else json.dumps(chat_template_kwargs),
            add_generation_prompt,
        )

    def _prompts(
        self, prompts: str | list[str] | None, prompt_token_ids: list | None
    ) -> tuple[list[str | None], list[list[int]]]:
        if (prompts is None) == (prompt_token_ids is None):
            raise ValueError("pass exactly one of prompts and prompt_token_ids")
        if prompt_token_ids is not None:
            lists = (
                [prompt_token_ids]
                if prompt_token_ids and isinstance(prompt_token_ids[0], int)
                else prompt_token_ids
            )
            return [None] * len(lists), [list(map(int, t)) for t in lists]
        texts = [prompts] if isinstance(prompts, str) else list(prompts or [])
        if self.tokenizer is None:
            raise ValueError(
                "this model directory has no tokenizer.json: pass prompt_token_ids instead"
            )
        ids = [self.tokenizer.encode(t) for t in texts]
        return list(texts), ids

    def _wait(
        self, rid: int, stream, text: str | None, prompt: list[int], params: SamplingParams
    ) -> RequestOutput:
        tokens: list[int] = []
        logprobs: list[dict[int, float]] | None = [] if params.logprobs is not None else None
        finish: tuple | None = None
        while finish is None:
            for event in stream.next(0.1):
                if event[0] == "token":
                    _, token, logprob, top = event
                    tokens.append(token)
                    if logprobs is not None:
                        entry = dict(top)
                        entry[token] = logprob
                        logprobs.append(entry)
                elif event[0] == "finished":
                    finish = event
                else:
                    raise RuntimeError(f"request {rid} failed: {event[1]}")
        _, reason, stop_token, num_cached, detail = finish
        if reason == "error":
            raise RuntimeError(f"request {rid} failed: {detail}")
        cumulative = (
            sum(lp[t] for lp, t in zip(logprobs, tokens, strict=True)) if logprobs else None
        )
        out = CompletionOutput(
            index=0,
            text=self._decode(tokens, params),
            token_ids=tokens,
            logprobs=logprobs,
            finish_reason=reason,
            stop_reason=stop_token,
            cumulative_logprob=cumulative,
        )
        return RequestOutput(
            request_id=str(rid),
            prompt=text,
            prompt_token_ids=prompt,
            outputs=[out],
            finished=True,
            num_cached_tokens=num_cached,
        )

    def _decode(self, tokens: list[int], params: SamplingParams) -> str:
        if self.tokenizer is None:
            return ""
        return self.tokenizer.decode(tokens, skip_special_tokens=params.skip_special_tokens)

    # ---- introspection ----------------------------------------------------------------------
    def stats(self) -> dict[str, int]:
        """Scheduler statistics: occupancy, prefix hits, preemptions, evictions."""
        return self.core.stats()

    def check_integrity(self) -> None:
        """Raises ``RuntimeError`` if pages or state slots leaked or were double-owned."""
        self.core.check_integrity()

    def shutdown(self) -> None:
        self.core.shutdown()

    def __enter__(self) -> LLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def __del__(self) -> None:
        core = getattr(self, "core", None)
        if core is not None:
            core.shutdown()
