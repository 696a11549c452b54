"""`exvad rescore`: score an indexed archive with a new detector from its stored embeddings."""

from __future__ import annotations

import argparse
import json
import os

from exvad_ray import storage
from exvad_ray.detector.localize import LocalizationConfig
from exvad_ray.errors import ExvadError
from exvad_ray.index import scorings as sc
from exvad_ray.pipeline.rescore import VIDEOS_PER_ACTOR, RescoreConfig, format_summary, run_rescore


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rescore", help="score an indexed archive with a new detector, without decoding any video",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Read the stored snippet embeddings and per-window explanation embeddings of INDEX, score "
                    "them with DETECTOR (a Ray Data job) and write a new scoring under INDEX/scorings/<id> "
                    "(segments, per-snippet scores, video scores; id = the detector's content hash, recorded "
                    "with its model card on every segment). Earlier scorings stay readable; the new one is "
                    "marked current unless --no-current. No video is opened; no caption or LLM stage runs.",
        epilog="examples:\n  exvad rescore --index s3://index/run1 --detector s3://models/run2\n"
               "  exvad rescore --index s3://index/run1 --list\n"
               "  exvad rescore --index s3://index/run1 --use process   (back to the archive job's scoring)")
    p.add_argument("--index", required=True, metavar="URI", help="index written by `exvad process`")
    p.add_argument("--detector", metavar="URI", help="model.pt (or its folder) from `exvad train`")
    p.add_argument("--threshold", type=float, default=0.5, help="snippet score that flags a segment (default 0.5)")
    p.add_argument("--no-current", action="store_true", help="do not mark the new scoring current")
    p.add_argument("--list", action="store_true", help="list the index's scorings and exit")
    p.add_argument("--use", metavar="SCORING_ID", help="mark an existing scoring current and exit")
    p.add_argument("--actors", type=int, default=None,
                   help=f"parallel scoring tasks (default: one per {VIDEOS_PER_ACTOR} videos, at most one per CPU)")
    p.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS or local)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_rescore)


def _rescore(args: argparse.Namespace) -> int:
    index = storage.normalize(args.index)
    if args.list:
        for m in sc.list_scorings(index):
            print(f"{'*' if m['current'] else ' '} {m['scoring_id']:16s} {m.get('detector_uri') or m.get('detector')}")
        return 0
    if args.use:
        sc.set_current(index, args.use)
        print(f"exvad rescore: scoring {args.use} is current for {index}")
        return 0
    if not args.detector:
        raise ExvadError("give --detector URI (or --list / --use ID)")
    if not 0.0 < args.threshold < 1.0:
        raise ExvadError("--threshold must be between 0 and 1")
    from exvad_ray.pipeline.validate import preflight

    preflight(detector=args.detector)  # not a checkpoint: one line here, not a failure in every Ray task
    cfg = RescoreConfig(index, args.detector, LocalizationConfig(threshold=args.threshold),
                        set_current=not args.no_current, actors=args.actors,
                        address=args.address or os.environ.get("RAY_ADDRESS"))
    summary = run_rescore(cfg)
    from exvad_ray.search.refresh import refresh_after_run  # committed: a failure here is a warning only

    summary["search_sidecar"] = refresh_after_run(cfg.index, print, scoring=summary["scoring_id"])
    print(json.dumps(summary, indent=1) if args.json else format_summary(summary))
    return 0 if not summary["videos_failed"] else 1
