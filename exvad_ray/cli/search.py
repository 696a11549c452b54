"""`exvad search`, `exvad export`, `exvad serve`: forensic search over an index's flagged segments."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from typing import Any

import pyarrow as pa

from exvad_ray.errors import ExvadError

SHOW = ("segment_id", "label", "score", "camera", "start_at", "start_s", "end_s", "explanation")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", required=True, help="index URI (local path or s3://bucket/prefix) written by `exvad process`")
    p.add_argument("--labels", default=None,
                   help="labels table URI where feedback goes; the audit log lives beside it (default: INDEX/labels)")
    p.add_argument("--user", default=None, help="who is asking, for the audit log (default: $EXVAD_USER or $USER)")


def register(sub: Any) -> None:
    p = sub.add_parser("search", help="find flagged segments by class, score, time, camera, text or example",
                       description="Search an index's flagged segments. Filters combine (AND); results are ranked by "
                       "score, or by similarity to --text (embedded with the index's model profile) or to --like "
                       "SEGMENT_ID (visual embedding). Every search is recorded in the audit log.")
    _common(p)
    p.add_argument("--class", dest="classes", action="append", default=[], metavar="CLASS",
                   help="anomaly class (repeat for several; case-insensitive)")
    p.add_argument("--min-score", type=float, default=None, help="lowest segment score (0-1)")
    p.add_argument("--max-score", type=float, default=None, help="highest segment score (0-1)")
    p.add_argument("--since", default=None, help="segments starting at or after this recording time (ISO 8601, UTC if no zone)")
    p.add_argument("--until", default=None, help="segments starting before this recording time")
    p.add_argument("--camera", dest="cameras", action="append", default=[], help="camera partition (repeatable)")
    p.add_argument("--prefix", default=None, help="source video URI prefix")
    p.add_argument("--video", dest="video_id", default=None, help="one video id")
    p.add_argument("--detector", default=None, help="only videos scored by this detector (checkpoint URI or zero-shot:<set>)")
    p.add_argument("--scoring", default=None,
                   help="which scoring's segments: process, or a rescoring id (det-...); default the index's current one")
    p.add_argument("--text", default=None, help='free text, e.g. "man climbing a fence at night"')
    p.add_argument("--like", default=None, metavar="SEGMENT_ID", help="segments that look like this one")
    p.add_argument("--limit", type=int, default=20, help="at most this many results (default 20)")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.add_argument("--profile", default=None, help="model profile for --text (default: the one that built the index)")
    p.add_argument("--ray", action="store_true", help="run the scan as a Ray Data job (for indexes no single machine should scan)")
    p.add_argument("--update-vectors", action="store_true",
                   help="build or extend the vector sidecar (INDEX/search/) first: fast --text/--like on big "
                        "indexes (the archive job keeps an existing one up to date by itself)")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("export", help="export a segment's evidence: clip, thumbnail, row, manifest with SHA-256",
                       description="Cut the segment from its source video (PyAV, with context around it) and write "
                       "clip.mp4, thumbnail.jpg, segment.json and manifest.json (SHA-256 of each file and of the source).")
    p.add_argument("segment_id")
    _common(p)
    p.add_argument("--out", required=True, help="local output folder")
    p.add_argument("--context", type=float, default=3.0, help="seconds of context before and after (default 3)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("serve", help="the search web page (read-only; 127.0.0.1 unless --host and --token)",
                       description="Serve a search page over the index: filters, text box, result cards, a video page "
                       "with the score timeline and the clip, and analyst feedback (appended to --labels).")
    _common(p)
    p.add_argument("--host", default="127.0.0.1", help="bind address (non-loopback needs --token)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--token", default=None, help="the page's secret (default: a random one; the URL printed at start "
                   "carries it, and the first request moves it to a cookie)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="a Host name requests may carry besides the bound address (repeatable)")
    p.add_argument("--profile", default=None, help="model profile for text queries (default: the index's)")
    p.set_defaults(func=cmd_serve)


def _labels(args: argparse.Namespace) -> str:
    from exvad_ray.search.audit import default_labels_uri

    return args.labels or default_labels_uri(args.index)


def cmd_search(args: argparse.Namespace) -> int:
    from exvad_ray.search.audit import append_audit, audit_uri
    from exvad_ray.search.engine import SegmentIndex, make_query

    q = make_query(classes=[c for v in args.classes for c in v.split(",") if c], min_score=args.min_score,
                   max_score=args.max_score, since=args.since, until=args.until, cameras=args.cameras,
                   prefix=args.prefix, video_id=args.video_id, detector=args.detector, text=args.text,
                   like=args.like, limit=args.limit)
    if args.update_vectors:
        state = SegmentIndex(args.index, profile=args.profile).update_vectors()
        print(f"vector sidecar: {state['rows']} segments from {len(state['files'])} files", file=sys.stderr)
    skipped: list[str] = []
    if args.ray:
        from exvad_ray.search.distributed import search_ray

        table = search_ray(args.index, q, profile=args.profile)
        table = SegmentIndex(args.index, profile=args.profile).with_evidence(table)  # a normality scoring's why
    else:
        ix = SegmentIndex(args.index, profile=args.profile, scoring=args.scoring)
        table, skipped = ix.search(q), sorted(ix.last_unreadable)
    if skipped:  # vanished or damaged files were skipped: say so, and record it with the search
        print(f"warning: {len(skipped)} index file(s) could not be read and were skipped: {', '.join(skipped[:5])}",
              file=sys.stderr)
    append_audit(audit_uri(_labels(args)), "search", q.describe() | ({"unreadable_files": skipped[:50]} if skipped
                 else {}), table.num_rows, who=args.user, via="cli", index=args.index)
    sys.stdout.write(render(table, args.format))
    return 0


def render(table: pa.Table, fmt: str) -> str:
    """Results as a table (a segment's evidence sentence, when it has one, on an indented line below
    it, whole), JSON or CSV. Evidence columns that are null in every row are left out, so a scoring
    without a normality model prints as before."""
    from exvad_ray.search.engine import EVIDENCE_COLUMNS

    empty = [c for c in EVIDENCE_COLUMNS if c in table.column_names and table.column(c).null_count == table.num_rows]
    table = table.drop_columns(empty)
    rows = [{k: v for k, v in r.items() if k not in ("thumbnail_jpeg",)} for r in table.to_pylist()]
    if fmt == "json":
        return json.dumps(rows, default=str, indent=1) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=table.column_names)
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue()
    cols = [c for c in SHOW if c in table.column_names] + (["similarity"] if "similarity" in table.column_names else [])
    cells = [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [min(48, max([len(c)] + [len(x[i]) for x in cells])) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    for r, row in zip(rows, cells):
        lines.append("  ".join(x[:w].ljust(w) for x, w in zip(row, widths)))
        if r.get("evidence"):
            lines.append(f"    why: {' '.join(str(r['evidence']).split())}")
    lines.append(f"({len(rows)} segment{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines) + "\n"


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}"
    if hasattr(v, "isoformat"):
        return v.strftime("%Y-%m-%d %H:%M:%S")
    return " ".join(str(v).split())


def cmd_export(args: argparse.Namespace) -> int:
    from exvad_ray.search.audit import append_audit, audit_uri
    from exvad_ray.search.engine import SegmentIndex
    from exvad_ray.search.export import export_segment

    if args.context < 0:
        raise ExvadError("--context must be >= 0")
    manifest = export_segment(SegmentIndex(args.index), args.segment_id, args.out, args.context)
    append_audit(audit_uri(_labels(args)), "export", {"segment_id": args.segment_id, "out": args.out}, 1,
                 who=args.user, via="cli", index=args.index)
    print(f"exported {args.segment_id} to {args.out}: clip {manifest['clip']['source_start_s']:.2f}-"
          f"{manifest['clip']['source_end_s']:.2f}s ({manifest['clip']['frames']} frames), manifest.json")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from exvad_ray.search.web import serve

    serve(args.index, host=args.host, port=args.port, token=args.token, labels=_labels(args), profile=args.profile,
          allow_hosts=args.allow_host)
    return 0
