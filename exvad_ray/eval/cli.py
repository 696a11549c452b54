"""`exvad evaluate`: the field's metrics (frame AUC/AP, fine-grained mAP@IoU, per-class AP and
accuracy) for a detector checkpoint (or the zero-shot scorer) on a labelled split; plots on request."""

from __future__ import annotations

import argparse
import json
import os
import tempfile

from exvad_ray import storage
from exvad_ray.errors import ExvadError


def _run(args: argparse.Namespace) -> int:
    from exvad_ray.checkpoints import load_detector
    from exvad_ray.detector import ZeroShotScorer
    from exvad_ray.eval.evaluate import evaluate_records
    from exvad_ray.train.cli import class_source, data_source
    from exvad_ray.train.data import split_records

    records = split_records(data_source(args).load(), args.split)
    if not records:
        raise ExvadError(f"no videos in split {args.split!r}")
    if args.checkpoint:
        scorer = load_detector(args.checkpoint)
    else:
        emb, names, _ = class_source(args)
        scorer = ZeroShotScorer(emb, names)
    report = evaluate_records(scorer, records, scorer.class_names)
    if args.out:
        report.write_json(args.out)
    if args.plots:
        from exvad_ray.eval.plots import write_plots

        if storage.is_remote(args.plots):
            with tempfile.TemporaryDirectory() as tmp:
                for path in write_plots(report, scorer.class_names, tmp):
                    storage.put_file(path, storage.join(args.plots, os.path.relpath(path, tmp)))
        else:
            write_plots(report, scorer.class_names, args.plots)
    summary = report.to_dict()
    summary.pop("videos")
    print(json.dumps(summary, indent=2))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from exvad_ray.train.cli import add_class_arguments, add_data_arguments

    p = subparsers.add_parser(
        "evaluate", help="frame AUC/AP, fine-grained mAP@IoU, per-class AP/accuracy (+ plots)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Evaluate a detector with the field's conventions: snippet scores repeated to 16 frames, "
                    "frame-level AUC and AP over all videos, fine-grained mAP at IoU 0.1-0.5 and its average "
                    "(VadCLIP's procedure, with a class without proposals no longer zeroing the mAP), per-class "
                    "AP and video-level accuracy. Without --checkpoint the zero-shot scorer is evaluated.",
        epilog="example:\n  exvad evaluate --checkpoint models/run1/model.pt --snippets idx/snippets \\\n"
               "      --videos idx/videos --labels labels.parquet --split test --out report.json --plots plots/")
    p.add_argument("--checkpoint", metavar="URI", help="model.pt (or its folder) from `exvad train`")
    add_data_arguments(p, split_csvs=True)
    add_class_arguments(p)
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="split to evaluate (default test)")
    p.add_argument("--out", metavar="URI", help="write the full report (JSON)")
    p.add_argument("--plots", metavar="DIR", help="write roc.png, pr.png and timelines/<video>.png here")
    p.set_defaults(func=_run)
