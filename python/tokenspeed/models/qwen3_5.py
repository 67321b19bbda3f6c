"""Qwen3.5 / Qwen3.5-MoE / Qwen3-Next causal LM, written for the engine.

One class for the three families: they differ only in config (layer and FFN types, MoE
renormalisation) and in the load-time conversion that ``tokenspeed.weights`` already did.
``forward`` runs one step of a packed varlen batch against external caches and returns the
logits of the requested rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from tokenspeed.config import ModelConfig
from tokenspeed.kernels import ops
from tokenspeed.kernels.reference.rope import rope_inv_freq
from tokenspeed.models.batch import ForwardBatch, SequenceChunk, build_batch
from tokenspeed.models.cache import PagedKVCache, StateCache
from tokenspeed.models.context import StepContext
from tokenspeed.models.layer import DecoderLayer
from tokenspeed.models.params import Params


class Qwen3_5Model:
    def __init__(self, cfg: ModelConfig, weights: dict[str, Tensor]) -> None:
        """Build from canonical weights (see ``tokenspeed.weights.param_specs``); ``weights``
        is consumed (emptied). Projections that share an input are concatenated here."""
        params = Params(cfg, weights)
        self.cfg = cfg
        self.dtype = params.dtype
        self.device = params.device
        self.embed_tokens = params.take("embed_tokens.weight")
        self.layers = [DecoderLayer(cfg, params, i) for i in range(cfg.num_hidden_layers)]
        self.norm = params.take("norm.weight")
        self.lm_head = params.take("lm_head.weight")  # the embedding itself when tied
        params.finish()
        self.inv_freq = rope_inv_freq(cfg.rotary_dim, cfg.rope_theta, self.device)

    # ---- engine entry point ----------------------------------------------------------------
    @torch.inference_mode()
    def forward(
        self, batch: ForwardBatch, kv_cache: PagedKVCache, state_cache: StateCache
    ) -> Tensor:
        """Run the new tokens of ``batch``; write their KV and GDN states into the caches;
        return logits ``[len(batch.logits_indices), vocab]`` in the model dtype."""
        ctx = StepContext(
            batch=batch,
            kv_cache=kv_cache,
            state_cache=state_cache,
            kv_indices=batch.kv_indices(kv_cache.page_size),
            inv_freq=self.inv_freq,
        )
        x = F.embedding(batch.input_ids, self.embed_tokens)  # no embedding scaling
        residual: Tensor | None = None
        for layer in self.layers:
            x, residual = layer.forward(x, residual, ctx)
        assert residual is not None
        rows = batch.logits_indices
        h, _ = ops.add_rms_norm(x[rows], residual[rows], self.norm, self.cfg.rms_norm_eps)
        return F.linear(h, self.lm_head)

    # ---- caches ------------------------------------------------------------------------------
    def new_kv_cache(self, num_pages: int, page_size: int) -> PagedKVCache:
        return PagedKVCache(self.cfg, num_pages, page_size, self.dtype, self.device)

    def new_state_cache(self, num_slots: int) -> StateCache:
        return StateCache(self.cfg, num_slots, self.dtype, self.device)

    # ---- convenience for tools and tests -----------------------------------------------------
    def logits(self, input_ids: Tensor, page_size: int = 64) -> Tensor:
        """Logits ``[T, V]`` of one whole sequence, through a small private cache."""
        tokens = [int(t) for t in input_ids.reshape(-1).tolist()]
        if not tokens:
            raise ValueError("logits() needs at least one token")
        num_pages = -(-len(tokens) // page_size)
        kv_cache = self.new_kv_cache(num_pages + 1, page_size)
        state_cache = self.new_state_cache(2)
        chunk = SequenceChunk(
            tokens=tokens,
            prefix_len=0,
            pages=list(range(1, num_pages + 1)),
            slot=1,
            has_initial_state=False,
            all_logits=True,
        )
        batch = build_batch([chunk], page_size, self.device)
        return self.forward(batch, kv_cache, state_cache)
