"""`exvad` command line. Each subsystem registers its own subcommands (``<pkg>/cli.py: register``)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from exvad_ray.errors import ExvadError

# Modules that provide ``register(subparsers)``; each added subcommand sets ``func(args) -> int``.
COMMAND_MODULES = (
    "exvad_ray.synth.cli",
    "exvad_ray.models.cli",
    "exvad_ray.pipeline.cli",
    "exvad_ray.train.cli",
    "exvad_ray.eval.cli",
    "exvad_ray.labels.cli",
    "exvad_ray.pipeline.rescore",
    "exvad_ray.search.cli",
    "exvad_ray.normality.cli",
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
