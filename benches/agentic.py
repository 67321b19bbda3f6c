"""Agentic benchmark: the real HTTP server (``python -m tokenspeed.cli serve --load-format
dummy``) driven with streaming chat requests on a synthetic SWE-agent-shaped trace.

Per conversation: a system prompt with tool schemas (shared by all conversations), a long
first user turn, then turns that append the server's own previous answer plus ~``--turn-words``
words of new "tool output" (~2 tokens each); ``--output-tokens`` per turn with ``ignore_eos``. Users run their
conversations one after another, ``C`` users at once, for each concurrency ``C``; then the
same trace at concurrency 1 with prefix caching off. Reported: tokens/s per user
(1000 / mean TPOT ms), TTFT per turn, cache hit rate (``usage.prompt_tokens_details.
cached_tokens`` / ``prompt_tokens``, turns >= 2 and all), output and total throughput.
Targets (H100): hit rate >= 90%; turn >= 2 TTFT >= 5x lower than with caching off.

  PYTHONPATH=python:benches python benches/agentic.py --model qwen3.5-35b-a3b --num-layers 20
  (CPU smoke: --model qwen3.5-0.8b --num-layers 2 --first-turn-words 300 --turns 3
   --turn-words 40 --output-tokens 8 --concurrency 1,2 --device cpu)
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch
from report import environment, header, write

WORDS = (
    "def class return import self value error file path test assert config request result "
    "update module function patch diff line index token buffer cache state thread lock queue "
    "list dict string format parse check open read write close commit branch merge status"
).split()
TOOLS = [
    {"type": "function", "function": {"name": name, "description": f"{name} tool",
     "parameters": {"type": "object", "properties": {"arg": {"type": "string"}}}}}
    for name in ("bash", "str_replace_editor", "search", "open_file", "submit")
]  # fmt: skip


def text(n_words: int, rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) + (str(rng.randrange(100)) if rng.random() < 0.3 else "")
                    for _ in range(n_words))  # fmt: skip


class Server:
    def __init__(self, args, caching: bool, port: int, log: Path) -> None:
        cmd = [sys.executable, "-m", "tokenspeed.cli", "serve", "--model", args.model,
               "--load-format", "dummy", "--port", str(port), "--device", args.device,
               "--max-num-seqs", str(max(args.concurrency)), "--max-model-len",
               str(args.max_model_len)]  # fmt: skip
        if args.num_layers:
            cmd += ["--num-layers", str(args.num_layers)]
        if not caching:
            cmd.append("--no-enable-prefix-caching")
        cmd += args.server_args.split()
        self.port, self.log = port, open(log, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + args.start_timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {log}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(1)
        raise RuntimeError(f"server not healthy after {args.start_timeout}s; see {log}")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def chat(port: int, model: str, messages: list, max_tokens: int) -> dict:
    """One streamed request: TTFT, chunk times, answer text, usage."""
    body = json.dumps({
        "model": model, "messages": messages, "tools": TOOLS, "stream": True,
        "stream_options": {"include_usage": True}, "max_tokens": max_tokens,
        "ignore_eos": True, "temperature": 0.0,
    })  # fmt: skip
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
    t0 = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:300]!r}")
    times, parts, usage = [], [], None
    for raw in resp:
        line = raw.decode().strip()
        if not line.startswith("data:") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[5:])
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices", []):
            delta = choice.get("delta", {})
            piece = (delta.get("content") or "") + (delta.get("reasoning_content") or "")
            if piece or delta.get("tool_calls"):
                times.append(time.perf_counter() - t0)
                parts.append(piece)
    conn.close()
    if usage is None or not times:
        raise RuntimeError("stream ended without usage or without tokens")
    return {"ttft": times[0], "last": times[-1], "text": "".join(parts), "usage": usage}


def conversation(port: int, args, seed: int, system: str) -> list[dict]:
    rng = random.Random(seed)
    messages = [{"role": "system", "content": system},
                {"role": "user", "content": text(args.first_turn_words, rng)}]  # fmt: skip
    turns = []
    for turn in range(args.turns):
        r = chat(port, args.model, messages, args.output_tokens)
        u = r["usage"]
        cached = (u.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
        n = u["completion_tokens"]
        tpot = (r["last"] - r["ttft"]) / max(n - 1, 1)
        turns.append({"turn": turn + 1, "ttft": r["ttft"], "tpot": tpot, "prompt": u["prompt_tokens"],
                      "cached": cached, "completion": n})  # fmt: skip
        messages += [{"role": "assistant", "content": r["text"]},
                     {"role": "user", "content": text(args.turn_words, rng)}]  # fmt: skip
    return turns


def level(port: int, args, users: int, system: str, seed0: int) -> dict:
    results: list[list[dict]] = []
    errors: list[str] = []

    def user(u: int) -> None:
        try:
            for c in range(args.conversations_per_user):
                results.append(conversation(port, args, seed0 + 1000 * u + c, system))
        except Exception as e:
            errors.append(f"{type(e).__name__}: {e}")

    t = time.perf_counter()
    threads = [threading.Thread(target=user, args=(u,)) for u in range(users)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t
    if errors:
        raise RuntimeError(f"{len(errors)} users failed: {errors[0]}")
    turns = [t for conv in results for t in conv]
    later = [t for t in turns if t["turn"] >= 2]
    by_turn = {}
    for k in sorted({t["turn"] for t in turns}):
        ts = [t["ttft"] for t in turns if t["turn"] == k]
        by_turn[k] = sum(ts) / len(ts)
    mean_tpot = sum(t["tpot"] for t in turns) / len(turns)
    later_ttft = sorted(t["ttft"] for t in later) or [0.0]
    return {
        "concurrency": users, "conversations": len(results), "wall_s": wall,
        "tok_s_per_user": 1 / mean_tpot, "mean_tpot_ms": mean_tpot * 1e3,
        "ttft_by_turn_s": by_turn,
        "ttft_turn1_s": by_turn[1], "ttft_later_s": sum(later_ttft) / len(later_ttft),
        "ttft_later_median_s": later_ttft[len(later_ttft) // 2],
        "hit_rate_later": sum(t["cached"] for t in later) / max(sum(t["prompt"] for t in later), 1),
        "hit_rate_all": sum(t["cached"] for t in turns) / sum(t["prompt"] for t in turns),
        "output_tok_s": sum(t["completion"] for t in turns) / wall,
        "total_tok_s": sum(t["completion"] + t["prompt"] - t["cached"] for t in turns) / wall,
        "mean_prompt_tokens": sum(t["prompt"] for t in turns) / len(turns),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="qwen3.5-35b-a3b")
    ap.add_argument("--num-layers", type=int, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument(
        "--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 16]
    )
    ap.add_argument("--first-turn-words", type=int, default=8000, help="~2 tokens each")
    ap.add_argument("--turns", type=int, default=10)
    ap.add_argument("--turn-words", type=int, default=400, help="new words per later turn")
    ap.add_argument("--output-tokens", type=int, default=500)
    ap.add_argument("--conversations-per-user", type=int, default=1)
    ap.add_argument("--max-model-len", type=int, default=65536)
    ap.add_argument("--server-args", default="", help="extra `tokenspeed serve` flags")
    ap.add_argument("--port", type=int, default=8321)
    ap.add_argument("--start-timeout", type=float, default=600)
    ap.add_argument("--out", default="benches/results")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    system = "You are a software engineering agent. Tools: " + json.dumps(TOOLS) + text(400, rng)
    levels = []
    warm_args = argparse.Namespace(**{**vars(args), "turns": 3, "output_tokens": 16})
    for caching in (True, False):
        server = Server(
            args, caching, args.port, out / f"agentic-server-{'on' if caching else 'off'}.log"
        )
        try:
            # Not measured: compiles the kernels at this trace's shapes (Triton caches them).
            level(args.port, warm_args, 1, system, 99)
            for users in args.concurrency if caching else [1]:
                # Seeds differ per level (a level replaying an earlier level's conversation
                # would hit on its first turn too) and match between caching on and off.
                seed0 = 7 + 100_000 * users
                row = {"prefix_caching": caching, **level(args.port, args, users, system, seed0)}
                print(json.dumps(row), flush=True)
                levels.append(row)
        finally:
            server.stop()
    device = torch.device("cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu")
    env = environment(device)
    on1 = min((r for r in levels if r["prefix_caching"]), key=lambda r: r["concurrency"])
    off1 = next(r for r in levels if not r["prefix_caching"])
    speedup = off1["ttft_later_median_s"] / on1["ttft_later_median_s"]
    result = {"bench": "agentic", **env, "args": {k: v for k, v in vars(args).items()},
              "levels": levels, "ttft_later_speedup_caching": speedup}  # fmt: skip
    lines = (
        [
            f"# agentic trace: {args.model} (layers {args.num_layers or 'all'}), dummy weights, HTTP",
            "",
            f"{header(env)}. Trace: first turn ~{args.first_turn_words} words + shared system prompt "
            f"with tool schemas, {args.turns} turns, ~{args.turn_words} new words per later turn, "
            f"{args.output_tokens} output tokens per turn (ignore_eos), "
            f"{args.conversations_per_user} conversation(s) per user.",
            "",
            "| caching | users | tok/s per user | TTFT turn 1 s | TTFT turns>=2 mean/median s "
            "| hit rate turns>=2 "
            "| hit rate all turns | output tok/s | mean prompt tokens |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        + [
            f"| {'on' if r['prefix_caching'] else 'off'} | {r['concurrency']} | "
            f"{r['tok_s_per_user']:.1f} | {r['ttft_turn1_s']:.3f} | {r['ttft_later_s']:.3f} / "
            f"{r['ttft_later_median_s']:.3f} | "
            f"{r['hit_rate_later']:.1%} | {r['hit_rate_all']:.1%} | {r['output_tok_s']:.0f} | "
            f"{r['mean_prompt_tokens']:.0f} |"
            for r in levels
        ]
        + [
            "",
            f"Turn >= 2 median TTFT, caching off / on at 1 user: {speedup:.1f}x (target >= 5x). "
            "Each server first runs one unmeasured 3-turn conversation (kernel compilation). "
            "Hit rate = cached_tokens / prompt_tokens summed over the turns (all turns: "
            "EvalScope's KV cache hit rate; no conversation repeats across levels).",
        ]
    )

    def plot(fig) -> None:
        ax = fig.add_subplot(1, 2, 1)
        for r in (on1, off1):
            turns = sorted(int(k) for k in r["ttft_by_turn_s"])
            ax.plot(turns, [r["ttft_by_turn_s"][k] for k in turns], "o-",
                    label=f"caching {'on' if r['prefix_caching'] else 'off'}")  # fmt: skip
        ax.set_xlabel("turn")
        ax.set_ylabel("TTFT s (1 user)")
        ax.set_yscale("log")
        ax.legend()
        ax2 = fig.add_subplot(1, 2, 2)
        on = [r for r in levels if r["prefix_caching"]]
        ax2.plot([r["concurrency"] for r in on], [r["tok_s_per_user"] for r in on], "o-",
                 label="tok/s per user")  # fmt: skip
        ax2.plot([r["concurrency"] for r in on], [r["output_tok_s"] for r in on], "s-",
                 label="output tok/s (all)")  # fmt: skip
        ax2.set_xlabel("concurrent users")
        ax2.set_xscale("log", base=2)
        ax2.legend()
        fig.suptitle(f"agentic {args.model} ({args.num_layers or 'all'} layers), {env['device']}")

    suffix = f"-{args.num_layers}l" if args.num_layers else ""
    write(out, f"agentic-{args.model}{suffix}-{device.type}", result, lines, plot)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
