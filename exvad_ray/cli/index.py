"""`exvad index`: operations on an index as a whole. `exvad index upgrade` rewrites an index of
today's per-video layout as Delta tables (exvad_ray/index/upgrade.py, docs/INDEX.md)."""

from __future__ import annotations

import argparse
import json

from exvad_ray import storage
from exvad_ray.errors import ExvadError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="operations on a whole index (upgrade to Delta tables)",
                       description="Operations on a whole index.")
    p.set_defaults(func=lambda args: _help(p))
    isub = p.add_subparsers(dest="index_command", metavar="SUBCOMMAND")
    u = isub.add_parser(
        "upgrade", help="copy an index of today's per-video layout into Delta tables, row counts checked",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Copy the index at SRC (today's layout: one Parquet file per video per table, tombstones for "
                    "replaced videos) into a new index at DST whose videos, snippets, segments, captions and errors "
                    "tables are Delta tables. Only the rows readers see today are copied (no replaced video, no error "
                    "row of a video that succeeded since), under today's column names whatever version wrote SRC. "
                    "Each rescoring becomes Delta tables too (the rows read_scoring serves) and the current scoring the "
                    "current-scoring table. The rest of SRC (run manifests, settings, labels, the search sidecar, "
                    "tombstones) is copied as it is (the run manifests of an older schema version get today's version, the old one kept). Per table, the rows served in SRC must equal the rows in the Delta table, else the "
                    "upgrade fails naming the table and both counts.\n\n"
                    "Safe to rerun after an interruption: the same command goes on where it stopped (each block of "
                    "videos is one Delta commit, never added twice). SRC is not modified; stop jobs writing it first.",
        epilog="examples:\n  exvad index upgrade s3://index/run1 --out s3://index/run1-delta\n"
               "  exvad index upgrade /data/index --out /data/index-delta --block-videos 500")
    u.add_argument("src", metavar="SRC", help="index written by `exvad process` (today's per-video layout)")
    u.add_argument("--out", required=True, metavar="DST", help="new location for the Delta index (absent, empty, or "
                   "an interrupted upgrade of the same SRC)")
    u.add_argument("--block-videos", type=int, default=None, metavar="N",
                   help="videos per Delta commit and per data file of a partition (default 1000; a rerun uses "
                        "what the interrupted upgrade used)")
    u.add_argument("--every", type=int, default=10, metavar="N", help="progress line every N blocks (default 10)")
    u.add_argument("--json", action="store_true", help="print the result as JSON")
    u.set_defaults(func=_upgrade)


def _help(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2


def _upgrade(args: argparse.Namespace) -> int:
    from exvad_ray.index.upgrade import check, upgrade
    from exvad_ray.pipeline.lease import IndexLease

    if args.block_videos is not None and args.block_videos < 1:
        raise ExvadError("--block-videos must be at least 1")
    if args.every < 1:
        raise ExvadError("--every must be at least 1")
    src, dst = storage.normalize(args.src), storage.normalize(args.out)
    check(src, dst)  # refuse before the lease writes anything into DST
    held = IndexLease(src).holder()
    if held:
        raise ExvadError(f"a job (pid {held.get('pid')} on {held.get('host')}) is writing {src}: upgrade it once "
                         "that job has finished")
    with IndexLease(dst):  # one upgrade at a time into DST
        res = upgrade(src, dst, block_videos=args.block_videos, every=args.every,
                      progress=lambda line: print(f"exvad index upgrade: {line}", flush=True))
    if args.json:
        print(json.dumps({"src": res.src, "dst": res.dst, "copied": res.copied, "seconds": round(res.seconds, 2),
                          "tables": {t: {"rows": r.rows, "files": r.files, "batches": r.batches, "skipped": r.skipped,
                                         "seconds": round(r.seconds, 2)} for t, r in res.tables.items()}}, indent=1))
        return 0
    for t, r in res.tables.items():
        print(f"{t:9s} {r.rows:>12,} rows  {r.files:>8,} files")
    total = sum(r.rows for r in res.tables.values())
    print(f"exvad index upgrade: {res.src} -> {res.dst}: {len(res.tables)} Delta tables, {total:,} rows (each "
          f"table's count checked against SRC), {res.copied} other files copied, {res.seconds:.1f} s; "
          f"{res.src} was not modified")
    return 0
