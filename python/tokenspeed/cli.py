"""The `tokenspeed` command line: `tokenspeed serve [--model DIR] ...`, `tokenspeed version`."""

from __future__ import annotations

import argparse
import sys

import tokenspeed


def _build_parser() -> argparse.ArgumentParser:
    from tokenspeed.server import add_serve_arguments

    parser = argparse.ArgumentParser(prog="tokenspeed", description=tokenspeed.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="serve a model over the OpenAI-compatible HTTP API (the demo model by default)",
    )
    add_serve_arguments(serve)
    commands.add_parser("version", help="print the package and Rust core versions")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    if args.command == "version":
        print(f"tokenspeed {tokenspeed.__version__} (core {tokenspeed.core_version()})")
        return 0
    from tokenspeed.server import serve

    return serve(args)


if __name__ == "__main__":
    sys.exit(main())
