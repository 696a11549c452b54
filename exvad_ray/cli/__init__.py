"""`exvad` command line: the face of the package. One module per command group (``register(subparsers)``),
plus the demo and the argument groups several commands share (`args`). Commands call library
functions; no command imports another, and nothing in the library imports this package
(docs/ARCHITECTURE.md, tests/test_layers.py)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from exvad_ray.errors import ExvadError

# Modules that provide ``register(subparsers)``; each added subcommand sets ``func(args) -> int``.
COMMAND_MODULES = (
    "exvad_ray.cli.synth",
    "exvad_ray.cli.models",
    "exvad_ray.cli.process",
    "exvad_ray.cli.demo",
    "exvad_ray.cli.train",
    "exvad_ray.cli.evaluate",
    "exvad_ray.cli.labels",
    "exvad_ray.cli.rescore",
    "exvad_ray.cli.search",
    "exvad_ray.cli.normality",
    "exvad_ray.cli.index",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exvad",
        description="Explainable, fine-grained video anomaly detection (Ex-VAD) for video archives, on Ray.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ExvadError as exc:
        one_line = "; ".join(part.strip() for part in str(exc).splitlines() if part.strip())
        print(f"exvad {args.command}: error: {one_line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"exvad {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
