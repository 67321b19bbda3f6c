"""Tokenizer vocabularies the engine can build itself (no model hub access needed)."""

from __future__ import annotations

from tokenspeed.vocab.qwen3_5 import (
    QWEN3_5_PATTERN,
    QWEN3_5_SPECIAL_TOKENS,
    build_tokenizer_json,
    qwen3_5_tokenizer_json,
    write_qwen3_5_tokenizer_files,
)

__all__ = [
    "QWEN3_5_PATTERN",
    "QWEN3_5_SPECIAL_TOKENS",
    "build_tokenizer_json",
    "qwen3_5_tokenizer_json",
    "write_qwen3_5_tokenizer_files",
]
