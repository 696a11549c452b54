"""`exvad models ...`: build the tiny offline models, show a resolved profile."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("models", help="model profiles and the tiny offline models")
    sub = p.add_subparsers(dest="models_command", metavar="SUBCOMMAND")
    mk = sub.add_parser("make-tiny", help="build small random models of the paper's architectures in DIR (offline)")
    mk.add_argument("dir", metavar="DIR")
    mk.add_argument("--seed", type=int, default=0)
    mk.add_argument("--force", action="store_true", help="rebuild even if DIR already holds them")
    mk.set_defaults(func=_make_tiny)
    sp = sub.add_parser("show-profile", help="print a profile (name or YAML path) after validation")
    sp.add_argument("name", metavar="NAME")
    sp.set_defaults(func=_show_profile)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _make_tiny(args: argparse.Namespace) -> int:
    from exvad_ray.models.tiny import ensure_tiny_models, make_tiny_models

    out = make_tiny_models(args.dir, seed=args.seed) if args.force else ensure_tiny_models(args.dir, seed=args.seed)
    print(f"tiny models in {out}")
    print(f"use them with: export EXVAD_TINY_MODELS={out}  (profile 'tiny')")
    return 0


def _show_profile(args: argparse.Namespace) -> int:
    from exvad_ray.models.profiles import load_profile

    profile = load_profile(args.name, check_local=False)
    print(json.dumps(profile.model_dump(), indent=2))
    return 0
