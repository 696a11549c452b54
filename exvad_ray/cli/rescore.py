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
        "rescore", help="score an indexed archive with a new detector and/or the normality model, without decoding",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Read the stored snippet embeddings and per-window explanation embeddings of INDEX, score "
                    "them with DETECTOR and/or the NORMALITY model (a Ray Data job) and write a new scoring under "
                    "INDEX/scorings/<id> (segments, per-snippet scores, video scores; id = the models' content hash: "
                    "det-, nrm- or fus-; the detector's model card on every segment, the normality evidence on every "
                    "flagged segment). Thresholds are calibrated on normal footage unless --threshold is given. Earlier scorings stay readable; the new one is "
                    "marked current unless --no-current. No video is opened; no caption or LLM stage runs.",
        epilog="examples:\n  exvad rescore --index s3://index/run1 --detector s3://models/run2\n"
               "  exvad rescore --index s3://index/run1 --normality s3://models/normal1\n"
               "  exvad rescore --index s3://index/run1 --detector s3://models/run2 --normality s3://models/normal1 "
               "--labels s3://index/labels\n"
               "  exvad rescore --index s3://index/run1 --list\n"
               "  exvad rescore --index s3://index/run1 --use process   (back to the archive job's scoring)")
    p.add_argument("--index", required=True, metavar="URI", help="index written by `exvad process`")
    p.add_argument("--detector", metavar="URI", help="model.pt (or its folder) from `exvad train`")
    p.add_argument("--normality", metavar="URI",
                   help="normality model from `exvad normality fit`: alone (class Anomaly) or, with --detector, fused "
                        "with it (docs/PIPELINE.md)")
    p.add_argument("--labels", metavar="URI",
                   help="labels table (fused): the fusion weight and scale are chosen on its val split")
    p.add_argument("--threshold", type=float, default=None,
                   help="snippet score that flags a segment (default: calibrated on normal footage - the detector "
                        "card's calibration, else 0.5; the normality model's; the fused value's)")
    p.add_argument("--false-alarms-per-hour", type=float, default=1.0,
                   help="fused: target flagged segments per hour of normal footage (default 1)")
    p.add_argument("--fusion-weight", type=float, default=None,
                   help="fused: weight of the normality part in [0, 1] (default: the best snippet AP on val with "
                        "--labels, else 0.5)")
    p.add_argument("--fusion-scale", choices=("rank_surprise", "surprise", "rank", "auto"), default="rank_surprise",
                   help="fused: both parts as their ranks among the calibration footage, taken as surprises "
                        "-log(1 - rank) (default: it flagged and ranked best on development archives); as "
                        "surprises of their percentiles of normal footage; as plain ranks; or auto: the better "
                        "snippet AP on val with --labels")
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
            models = " + ".join(x for x in (m.get("detector_uri") or m.get("detector"),
                                            (m.get("normality") or {}).get("uri")) if x)
            print(f"{'*' if m['current'] else ' '} {m['scoring_id']:16s} {m.get('mode', 'detector'):9s} {models}")
        return 0
    if args.use:
        sc.set_current(index, args.use)
        print(f"exvad rescore: scoring {args.use} is current for {index}")
        return 0
    if not args.detector and not args.normality:
        raise ExvadError("give --detector URI and/or --normality URI (or --list / --use ID)")
    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        raise ExvadError("--threshold must be between 0 and 1")
    if args.fusion_weight is not None and not 0.0 <= args.fusion_weight <= 1.0:
        raise ExvadError("--fusion-weight must be between 0 and 1")
    if not args.false_alarms_per_hour > 0:
        raise ExvadError("--false-alarms-per-hour must be positive")
    if args.labels and not storage.exists(args.labels):
        raise ExvadError(f"--labels: no labels table at {args.labels}")
    from exvad_ray.pipeline.validate import preflight

    # not a checkpoint / not a normality model / nothing to score: one line here, not a failure in every Ray task
    preflight(detector=args.detector, normality=args.normality)
    if args.normality:
        if not storage.exists(storage.join(index, "videos")):
            raise ExvadError(f"no index at {args.index} (no videos table; run `exvad process` first)")
        preflight(normality=args.normality, index=index)
    cfg = RescoreConfig(index, args.detector,
                        LocalizationConfig(threshold=args.threshold) if args.threshold is not None else None,
                        set_current=not args.no_current, actors=args.actors,
                        address=args.address or os.environ.get("RAY_ADDRESS"), normality=args.normality,
                        labels=args.labels, per_hour=args.false_alarms_per_hour, fusion_weight=args.fusion_weight,
                        fusion_scale=args.fusion_scale)
    summary = run_rescore(cfg)
    from exvad_ray.search.refresh import refresh_after_run  # committed: a failure here is a warning only

    summary["search_sidecar"] = refresh_after_run(cfg.index, print, scoring=summary["scoring_id"])
    print(json.dumps(summary, indent=1) if args.json else format_summary(summary))
    return 0 if not summary["videos_failed"] else 1
