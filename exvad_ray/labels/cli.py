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
    from exvad_ray.index.labels import find_segment, record_feedback

    if args.verdict == "false-alarm" and args.cls:
        raise ExvadError("--class goes with --verdict confirmed (a false alarm is Normal)")
    segment = find_segment(args.index, args.segment_id, args.scoring)
    row = record_feedback(args.labels, segment, args.verdict, args.cls, args.author)
    seg = row["segments"][0]
    print(f"exvad feedback: {args.segment_id} {args.verdict} as {seg['label']} "
          f"({row['name']}, frames {seg['start_frame']}-{seg['end_frame']} at {row['fps']:g} fps) -> {args.labels}",
          file=sys.stdout)
    return 0
