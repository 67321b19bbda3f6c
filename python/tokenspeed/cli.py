"""The `tokenspeed` command line: `tokenspeed serve [MODEL]`, `tokenspeed version`."""

from __future__ import annotations

import argparse
import sys

import tokenspeed

DEMO_MODEL = "demo"


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tokenspeed", description=tokenspeed.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve a model over the OpenAI-compatible HTTP API")
    serve.add_argument(
        "model",
        nargs="?",
        default=DEMO_MODEL,
        help="Hugging Face model directory (default: the built-in demo model)",
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    commands.add_parser("version", help="print the package and Rust core versions")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    if args.command == "version":
        print(f"tokenspeed {tokenspeed.__version__} (core {tokenspeed.core_version()})")
        return 0
    # The HTTP server lands with the server issue; say so plainly instead of pretending.
    print(
        f"tokenspeed serve {args.model}: the HTTP server is not built yet "
        "(it lands with the server issue)",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
