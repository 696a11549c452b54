"""`exvad labels import|show` and `exvad feedback`: labels into the labels table (a folder of
append-only Parquet files, exvad_ray.index.labels), counts out, analyst verdicts in."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

from exvad_ray.errors import ExvadError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "labels", help="import labels (UCF-Crime, XD-Violence, CSV) into a labels table; show counts",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="A labels table is a folder of append-only Parquet files. Every import adds a file; "
                    "per video the newest import gives labels, split and segments, analyst verdicts "
                    "(`exvad feedback`) add segments on top, and the history stays readable.")
    lsub = p.add_subparsers(dest="labels_command", metavar="SUBCOMMAND")
    add_import_parser(lsub)
    s = lsub.add_parser("show", help="counts per split and class (current view)",
                        description="Print the current view's videos per split and class, segments, and "
                                    "how many rows the history holds per source.")
    s.add_argument("labels", metavar="LABELS_URI", help="the labels table (folder, or a single Parquet file)")
    s.add_argument("--json", action="store_true", help="print as JSON")
    s.set_defaults(func=_show)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    f = sub.add_parser(
        "feedback", help="record an analyst's verdict on a flagged segment",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Confirm a flagged segment (with its class) or mark it a false alarm. The verdict is "
                    "appended to the labels table (history kept; the newest verdict on a segment wins): a "
                    "confirmed segment becomes a temporal annotation of its class, a false alarm a Normal "
                    "interval, the next time `exvad train --labels` reads the table.",
        epilog="example:\n  exvad feedback 0b5e...:112 --index s3://index/run1 --labels s3://archive/labels \\\n"
               "      --verdict confirmed --class Fighting --author alice")
    f.add_argument("segment_id", metavar="SEGMENT_ID", help="segment_id from the segments table (or `exvad search`)")
    f.add_argument("--index", required=True, metavar="URI", help="the index holding the segment")
    f.add_argument("--labels", required=True, metavar="URI", help="labels table (folder) to append to")
    f.add_argument("--verdict", required=True, choices=["confirmed", "false-alarm"])
    f.add_argument("--class", dest="cls", metavar="C", help="class of a confirmed segment (default: its label)")
    f.add_argument("--author", help="who decided (recorded with the verdict)")
    f.add_argument("--scoring", metavar="ID", help="scoring the segment comes from (default: any)")
    f.set_defaults(func=_feedback)


def add_import_parser(lsub: argparse._SubParsersAction) -> None:
    from exvad_ray.labels import csv_labels

    imp = lsub.add_parser(
        "import", help="import labels (formats ucf, xd, csv) into a labels table",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Add one batch of labels to the labels table (a new file; earlier imports and verdicts stay). "
                    "With --index, each label finds its video (URI, else unique name) and takes the video's real "
                    "frame rate and frame count from the videos table; names that match no indexed video and "
                    "indexed videos left without a label are reported. Malformed lines fail with their number.",
        epilog="examples:\n"
               "  exvad labels import ucf --labels s3://arch/labels --index s3://index/run1 \\\n"
               "      --train-list Anomaly_Train.txt --test-list Anomaly_Test.txt \\\n"
               "      --annotations Temporal_Anomaly_Annotation.txt\n"
               "  exvad labels import xd --labels labels/ --test-list xd_CLIP_rgbtest.csv --annotations annotations.txt\n"
               "  exvad labels import csv my_labels.csv --labels labels/ --index s3://index/run1")
    fsub = imp.add_subparsers(dest="format", metavar="FORMAT")
    ucf = fsub.add_parser("ucf", help="UCF-Crime: Anomaly_Train/Test.txt lists + Temporal_Anomaly_Annotation.txt",
                          description="Classes from the list folders (`Abuse/Abuse001_x264.mp4`; Normal folders -> "
                                      "Normal), segments (source frames) from the temporal annotation file; names "
                                      "with or without extensions; blank lines and # comments skipped.")
    xd = fsub.add_parser("xd", help="XD-Violence: names carrying _label_<codes> + annotations.txt",
                         description="Classes from the label codes in the names (`..._label_B2-G-0`), segments from "
                                     "annotations.txt or annotations_multiclasses.txt. Lists: one name/path per line, "
                                     "or VadCLIP's feature CSV (path,label).")
    for f, ann, val in ((ucf, "Temporal_Anomaly_Annotation.txt", 0.1),
                        (xd, "annotations.txt / annotations_multiclasses.txt", 0.0)):
        f.add_argument("--train-list", metavar="URI")
        f.add_argument("--test-list", metavar="URI")
        f.add_argument("--annotations", metavar="URI", help=ann)
        f.add_argument("--val-fraction", type=float, default=val,
                       help=f"deterministic share of the train list moved to val (default {val})")
    c = fsub.add_parser("csv", help="one row per video: name or video_uri, classes, split, optional segments",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        description=csv_labels.__doc__)
    c.add_argument("csv", metavar="CSV_URI")
    c.add_argument("--fps", type=float, help="frame rate for segments in seconds when neither --index nor an "
                   "`fps` column gives it")
    for f in (ucf, xd, c):
        f.add_argument("--labels", required=True, metavar="URI", help="labels table (folder) to add to")
        f.add_argument("--index", metavar="URI", help="index whose videos the labels are for (frame rates, URIs)")
        f.add_argument("--author", help="who made these labels (recorded)")
        f.add_argument("--dry-run", action="store_true", help="check and report; write nothing")
        f.set_defaults(func=_import)
    imp.set_defaults(func=lambda args: (imp.print_help(), 2)[1])


def import_rows(args: argparse.Namespace) -> list[dict]:
    from exvad_ray.annotations import parse_xd_annotations, read_text
    from exvad_ray.labels import importers as im

    if not 0.0 <= getattr(args, "val_fraction", 0.0) < 1.0:
        raise ExvadError("--val-fraction must be in [0, 1)")
    if args.format == "ucf":
        return im.import_ucf_crime(args.train_list, args.test_list, args.annotations, args.val_fraction).to_pylist()
    if args.format == "xd":
        names = {sp: im.read_xd_names(u) for sp, u in (("train", args.train_list), ("test", args.test_list)) if u}
        if not names and args.annotations:
            names = {"test": list(parse_xd_annotations(read_text(args.annotations)))}
        if not names:
            raise ExvadError("give --train-list and/or --test-list (or --annotations)")
        return im.import_xd_violence(names, args.annotations, args.val_fraction).to_pylist()
    from exvad_ray.labels.csv_labels import parse_labels_csv

    return parse_labels_csv(read_text(args.csv))


def _import(args: argparse.Namespace) -> int:
    from exvad_ray.index.labels import append_labels, make_table
    from exvad_ray.labels.csv_labels import frames_from_seconds

    rows = import_rows(args)
    report = None
    if args.index:
        from exvad_ray.labels.matching import match_index

        rows, report = match_index(rows, args.index, args.labels)
    if args.format == "csv":
        rows = frames_from_seconds(rows, args.fps)
    table = make_table(rows)
    counts = Counter((r["split"], lab) for r in rows for lab in r["labels"])
    n_segs = sum(len(r["segments"]) for r in rows)
    print(f"exvad labels import {args.format}: {len(rows)} videos, {n_segs} segments"
          + ("" if args.dry_run else f" -> {args.labels}") + (" (dry run)" if args.dry_run else ""))
    for split in ("train", "val", "test"):
        per = {lab: n for (sp, lab), n in sorted(counts.items()) if sp == split}
        if per:
            print(f"  {split:5s} " + ", ".join(f"{k} {v}" for k, v in per.items()))
    if report:
        print("\n".join(report.lines()))
    if not args.dry_run:
        written = append_labels(args.labels, table, source=f"import:{args.format}", author=args.author)
        print(f"  written {written}")
    return 0


def show_counts(labels_uri: str) -> dict:
    from exvad_ray.index.labels import read_history, current_view

    history = read_history(labels_uri)
    current = current_view(history).to_pylist()
    per: dict[str, Counter] = {}
    for r in current:
        for lab in r["labels"]:
            per.setdefault(r["split"], Counter())[lab] += 1
    segments = Counter(s["label"] for r in current for s in r["segments"] or [])
    return {"videos": len(current),
            "per_split": {sp: {"videos": sum(r["split"] == sp for r in current), "classes": dict(sorted(c.items()))}
                          for sp, c in sorted(per.items())},
            "segments": dict(sorted(segments.items())),
            "history": dict(sorted(Counter(history.column("source").to_pylist()).items()))}


def _show(args: argparse.Namespace) -> int:
    counts = show_counts(args.labels)
    if args.json:
        print(json.dumps(counts, indent=1))
        return 0
    print(f"labels {args.labels}: {counts['videos']} videos")
    for split, c in counts["per_split"].items():
        print(f"  {split:5s} {c['videos']:6d} videos: " + ", ".join(f"{k} {v}" for k, v in c["classes"].items()))
    print("  segments: " + (", ".join(f"{k} {v}" for k, v in counts["segments"].items()) or "none"))
    print("  history:  " + ", ".join(f"{k} {v} rows" for k, v in counts["history"].items()))
    return 0


def _feedback(args: argparse.Namespace) -> int:
    from exvad_ray.index.labels import record_feedback
    from exvad_ray.index.scorings import find_segment

    if args.verdict == "false-alarm" and args.cls:
        raise ExvadError("--class goes with --verdict confirmed (a false alarm is Normal)")
    segment = find_segment(args.index, args.segment_id, args.scoring)
    row = record_feedback(args.labels, segment, args.verdict, args.cls, args.author)
    seg = row["segments"][0]
    print(f"exvad feedback: {args.segment_id} {args.verdict} as {seg['label']} "
          f"({row['name']}, frames {seg['start_frame']}-{seg['end_frame']} at {row['fps']:g} fps) -> {args.labels}",
          file=sys.stdout)
    return 0
