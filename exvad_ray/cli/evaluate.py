"""`exvad evaluate`: the field's metrics (frame AUC/AP, fine-grained mAP@IoU, per-class AP and
accuracy) for a detector checkpoint (or the zero-shot scorer) on a labelled split; plots on request."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import Any

from exvad_ray import storage
from exvad_ray.cli.args import add_class_arguments, add_data_arguments, class_source, data_source
from exvad_ray.errors import ExvadError


def _run(args: argparse.Namespace) -> int:
    from exvad_ray.checkpoints import load_detector
    from exvad_ray.detector import ZeroShotScorer
    from exvad_ray.eval.evaluate import evaluate_records
    from exvad_ray.train.data import split_records

    if args.scoring and args.checkpoint:
        raise ExvadError("give --scoring (scores stored in the index) or --checkpoint (score now), not both")
    if args.scoring and not args.index:
        raise ExvadError("--scoring reads the scores stored in an index: give --index URI")
    records = split_records(data_source(args).load(), args.split)
    if not records:
        raise ExvadError(f"no videos in split {args.split!r}")
    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        raise ExvadError("--threshold must be between 0 and 1")
    if args.scoring:
        return _finish(args, *_stored_report(args, records))
    localization, source = _localization(args)
    if args.checkpoint:
        scorer = load_detector(args.checkpoint)
    elif args.class_embeddings or not args.label_set:
        emb, names, _ = class_source(args)
        scorer = ZeroShotScorer(emb, names)
    else:  # the profile's own zero-shot rule (text to text for encoders that are not aligned)
        from exvad_ray.models.zero_shot import zero_shot_scorer

        scorer = zero_shot_scorer(args.profile, args.label_set)
    report = evaluate_records(scorer, records, scorer.class_names, args.vadclip_procedure or args.dataset, localization)
    return _finish(args, report, scorer.class_names, source)


def _localization(args: argparse.Namespace, stored: dict[str, Any] | None = None) -> tuple[Any, str]:
    """The flagging rule the decisions are measured at, and where its threshold comes from: --threshold;
    else the rule a stored scoring was made with; else a checkpoint's calibrated threshold (its model
    card's `calibration`); else the job's default (0.5)."""
    import dataclasses

    from exvad_ray.detector.localize import LocalizationConfig

    rule = LocalizationConfig.from_dict(stored)
    if args.threshold is not None:
        return dataclasses.replace(rule, threshold=args.threshold), "--threshold"
    if stored:
        return rule, "the scoring's own"
    if args.checkpoint:
        from exvad_ray.checkpoints import checkpoint_uri, model_card_uri

        card_uri = model_card_uri(checkpoint_uri(args.checkpoint))
        card = json.loads(storage.read_bytes(card_uri)) if storage.exists(card_uri) else {}
        threshold = (card.get("calibration") or {}).get("threshold")
        if threshold is not None:
            return dataclasses.replace(rule, threshold=float(threshold)), "calibrated on normal footage (model card)"
    return rule, "the default 0.5"


def _stored_report(args: argparse.Namespace, records: list) -> tuple[Any, list[str], str]:
    """The report of a scoring already in the index (`exvad process` or `exvad rescore`): no model runs."""
    from exvad_ray.eval.evaluate import compute_report, stored_results
    from exvad_ray.index.scorings import current_scoring, scores_by_name, scoring_localization

    sid = current_scoring(args.index) if args.scoring == "current" else args.scoring
    class_names, stored = scores_by_name(args.index, sid, {r.name for r in records})
    print(f"scoring {sid}: {len(stored)} videos, scores read from the index (no model run)", file=sys.stderr)
    localization, source = _localization(args, scoring_localization(args.index, sid))
    report = compute_report(stored_results(records, stored, class_names, localization.threshold), class_names,
                            args.vadclip_procedure or args.dataset, localization)
    return report, class_names, source


def _finish(args: argparse.Namespace, report: Any, class_names: list[str], threshold_source: str) -> int:
    if args.out:
        report.write_json(args.out)
    if args.plots:
        from exvad_ray.eval.plots import write_plots

        if storage.is_remote(args.plots):
            with tempfile.TemporaryDirectory() as tmp:
                for path in write_plots(report, class_names, tmp):
                    storage.put_file(path, storage.join(args.plots, os.path.relpath(path, tmp)))
        else:
            write_plots(report, class_names, args.plots)
    summary = report.to_dict()
    summary.pop("videos")
    print(json.dumps(summary, indent=2))
    if report.frame_level:
        fmt = lambda d: " ".join(f"@{k:.1f} {v:.2f}" for k, v in d.items())  # noqa: E731
        print(f"mAP, VadCLIP procedure ({report.vadclip_procedure}; comparable with published tables): "
              f"avg {report.vadclip_map_avg:.2f}  {fmt(report.vadclip_map_at)}", file=sys.stderr)
        print(f"mAP, corrected (classes with ground truth; no proposals -> AP 0 for that class only): "
              f"avg {report.map_avg:.2f}  {fmt(report.map_at)}", file=sys.stderr)
    d = report.decisions
    if d is not None:
        print(f"decisions at threshold {d.threshold:.3f} ({threshold_source}): {d.false_alarms_per_hour:.2f} false "
              f"alarms per hour of normal footage ({d.false_alarms} in {d.normal_hours:.2f} h); normal videos flagged "
              f"{d.normal_videos_flagged}/{d.normal_videos}, anomalous {d.anomalous_videos_flagged}/"
              f"{d.anomalous_videos}; labelled segments found {d.labelled_segments_found}/{d.labelled_segments}",
              file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:

    p = subparsers.add_parser(
        "evaluate", help="frame AUC/AP, fine-grained mAP@IoU, per-class AP/accuracy (+ plots)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Evaluate a detector with the field's conventions: snippet scores repeated to 16 frames, "
                    "frame-level AUC and AP over all videos, fine-grained mAP at IoU 0.1-0.5 and its average "
                    "twice: as VadCLIP's published procedure computes it (`vadclip_procedure`, comparable with "
                    "published tables) and corrected (`corrected`: a class without proposals no longer zeroes the "
                    "whole mAP, classes without ground truth are left out), per-class AP and video-level accuracy. Without --checkpoint the zero-shot scorer is evaluated.",
        epilog="example:\n  exvad evaluate --checkpoint models/run1/model.pt --snippets idx/snippets \\\n"
               "      --videos idx/videos --labels archive/annotations/labels --split test --out report.json --plots plots/")
    p.add_argument("--checkpoint", metavar="URI", help="model.pt (or its folder) from `exvad train`")
    p.add_argument("--scoring", metavar="ID", help="evaluate the scores already stored in --index: a scoring id "
                   "(`exvad rescore --index URI --list`), `process`, or `current`; no model runs")
    add_data_arguments(p, split_csvs=True)
    add_class_arguments(p)
    p.add_argument("--vadclip-procedure", choices=["ucf", "xd"], default=None,
                   help="which published VadCLIP evaluation the comparable figures follow (default: --dataset)")
    p.add_argument("--threshold", type=float, default=None,
                   help="snippet score at which the decisions (false alarms per hour of normal footage, videos "
                        "flagged, labelled segments found) are measured (default: the scoring's own threshold, "
                        "else the checkpoint's calibrated one, else 0.5)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="split to evaluate (default test)")
    p.add_argument("--out", metavar="URI", help="write the full report (JSON)")
    p.add_argument("--plots", metavar="DIR", help="write roc.png, pr.png and timelines/<video>.png here")
    p.set_defaults(func=_run)
