"""`exvad process` and `exvad compact`."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from exvad_ray import storage

if TYPE_CHECKING:
    from exvad_ray.pipeline.job import ProcessConfig

# Heavy modules (torch, ray) are imported inside the commands so that `exvad --help` and light
# commands start fast.

RETENTION_HOURS = 168  # = index.compaction.DEFAULT_RETENTION_HOURS (not imported: pyarrow at --help)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "process", help="process a video archive into Parquet indexes",
        description="Decode, caption, explain, embed and score every video under ARCHIVE and write the "
                    "videos/snippets/segments/captions/errors tables under INDEX. Videos already in the index "
                    "are skipped, so a rerun with the same arguments resumes. Without --address (or "
                    "RAY_ADDRESS) a local Ray starts by itself.")
    p.add_argument("--archive", required=True, help="local path, file:// or s3://bucket/prefix holding the videos")
    p.add_argument("--index", required=True, help="where the Parquet tables go (local path or s3://)")
    p.add_argument("--profile", default="lite", help="model profile name or YAML path (default: lite, real "
                   "pretrained weights installed with the package; tiny: random-weight plumbing models)")
    p.add_argument("--detector", default=None,
                   help="detector checkpoint (model.pt or its folder, any location); default: zero-shot scoring")
    p.add_argument("--normality", default=None, metavar="URI",
                   help="normality model (`exvad normality fit`): the processed videos are also scored with it, alone "
                        "or fused with --detector, into a scoring marked current (as `exvad rescore --normality`)")
    p.add_argument("--label-set", default="ucf-crime", help="label set name or YAML path (default: ucf-crime)")
    p.add_argument("--explainer", choices=["auto", "transformers", "vllm", "none"], default="auto",
                   help="explanation backend: vllm on GPU clusters, transformers on CPU, none to skip captions "
                        "and explanations (default: auto)")
    p.add_argument("--window-snippets", type=int, default=256, help="snippets per window (default 256)")
    p.add_argument("--keyframe-interval", type=float, default=2.0, help="seconds between caption keyframes")
    p.add_argument("--threshold", type=float, default=0.5, help="snippet score that flags a segment")
    p.add_argument("--date-pattern", default=None, help="regex with groups y,m,d (or date) for the recording date")
    p.add_argument("--camera-pattern", default=None, help="regex with group camera (default: first folder)")
    p.add_argument("--decode-tasks", type=int, default=None, help="parallel decode tasks; without GPUs, the number of decode+model actors, each holding the models (default: one per CPU)")
    p.add_argument("--actors", type=int, default=1, help="actors per model stage when stages run in separate pools (GPU clusters; default 1)")
    p.add_argument("--gpu-per-stage", type=float, default=None,
                   help="GPU share per model-stage actor (default: a quarter GPU each when GPUs exist)")
    p.add_argument("--fuse-stages", choices=["auto", "yes", "no"], default="auto",
                   help="run all model stages in one actor (default auto: yes without GPUs)")
    p.add_argument("--retry-errors", action="store_true", help="also retry videos recorded in the errors table")
    p.add_argument("--limit", type=int, default=None, help="process at most this many new videos")
    p.add_argument("--index-format", choices=["delta", "files"], default="delta",
                   help="table format of a NEW index: delta (Delta Lake tables: batches of videos per file and per "
                        "commit, deletes for replaced videos; read by DuckDB, Polars, Spark, Ray) or files "
                        "(one Parquet file per video per table, the layout before). An existing index keeps its "
                        "own format; `exvad index upgrade` converts one. Default: delta")
    p.add_argument("--commit-every", type=int, default=16, metavar="N",
                   help="Delta index: videos written and committed together as one batch (default 16). A kill "
                        "loses at most the batches not yet committed; larger batches mean fewer, larger files")
    p.add_argument("--commit-seconds", type=float, default=60.0, metavar="T",
                   help="Delta index: a batch is written and committed with fewer than --commit-every videos once "
                        "its first finished video has waited T seconds (default 60), so that a kill on slow "
                        "footage loses at most about T seconds of finished work")
    p.add_argument("--content-hash", action="store_true",
                   help="identify local files by a sha256 of their bytes (default: size + modification time)")
    p.add_argument("--inventory", default=None, metavar="URI",
                   help="an S3 Inventory report's manifest.json (CSV or Parquet) of the archive's bucket: the "
                        "videos to do are read from it instead of listing the bucket (objects newer than the "
                        "report are left for a later run)")
    p.add_argument("--wait", action="store_true",
                   help="if another job holds the index, wait for it instead of refusing")
    p.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS or local)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_process)

    c = sub.add_parser(
        "compact", help="compact an index: merge small files, delete the ones no reader needs",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=_paragraphs(
                    "Compact every table of INDEX. Safe to interrupt and rerun.\n\n"
                    "Delta tables: each partition's small files are merged into larger ones (delta-rs optimize; "
                    "--z-order also clusters rows inside a partition by time and video id), then files no "
                    "version younger than --retention-hours references are deleted (vacuum). Readers of the "
                    "current snapshot never see a change of rows. A reader that holds an older snapshot (the page's "
                    "cached file list, a long search, a running rescore) keeps working as long as that snapshot is "
                    "younger than the retention; once older, its files may be gone. Files of batches a killed job "
                    "wrote but never committed are deleted once older than the retention.\n\n"
                    "Tables of the per-video layout: each partition's per-video Parquet files are merged into one "
                    "file; readers never see a video twice once it completes.\n\n"
                    "It holds the index's lease: it refuses while a job writes the index."))
    c.add_argument("index", help="index location")
    c.add_argument("--retention-hours", type=int, default=RETENTION_HOURS, metavar="H",
                   help="Delta tables: keep replaced and uncommitted files this many hours (default "
                        f"{RETENTION_HOURS}: 7 days, Delta's default); it must outlive the oldest snapshot a "
                        "reader may hold. 0 deletes them at once.")
    c.add_argument("--z-order", action="store_true",
                   help="Delta tables: rewrite every partition with its rows clustered by time and video id "
                        "(slower: rewrites all files; faster lookups by time range or video id)")
    c.add_argument("--json", action="store_true", help="print the figures as JSON")
    c.set_defaults(func=_compact)


def _paragraphs(text: str) -> str:
    """Each paragraph wrapped to the terminal, the blank lines between them kept."""
    import shutil
    import textwrap

    width = min(100, shutil.get_terminal_size().columns) - 2
    return "\n\n".join(textwrap.fill(p, width) for p in text.split("\n\n"))


def process_config_from_args(args: argparse.Namespace) -> ProcessConfig:
    from exvad_ray.detector.localize import LocalizationConfig
    from exvad_ray.pipeline.job import ProcessConfig
    from exvad_ray.index.partitions import DEFAULT_DATE_PATTERN
    from exvad_ray.pipeline.validate import check_process_ranges
    from exvad_ray.video import SamplingConfig

    check_process_ranges(window_snippets=args.window_snippets, keyframe_interval=args.keyframe_interval,
                         threshold=args.threshold, limit=args.limit, decode_tasks=args.decode_tasks,
                         actors=args.actors, gpu_per_stage=args.gpu_per_stage)
    return ProcessConfig(
        archive=args.archive, index=args.index, profile=args.profile, detector=args.detector,
        label_set=args.label_set, explainer=args.explainer,
        date_pattern=args.date_pattern or DEFAULT_DATE_PATTERN, camera_pattern=args.camera_pattern,
        sampling=SamplingConfig(window_snippets=args.window_snippets, keyframe_interval_s=args.keyframe_interval),
        localization=LocalizationConfig(threshold=args.threshold), decode_tasks=args.decode_tasks,
        model_actors=args.actors, gpu_per_stage=args.gpu_per_stage,
        fuse_stages={"auto": None, "yes": True, "no": False}[args.fuse_stages], retry_errors=args.retry_errors, limit=args.limit, address=args.address,
        index_format=args.index_format, commit_every=args.commit_every, commit_seconds=args.commit_seconds,
        content_hash=args.content_hash, wait=args.wait, normality=args.normality,
        inventory=getattr(args, "inventory", None),
    )


def _process(args: argparse.Namespace) -> int:
    from exvad_ray.pipeline.job import check_locations, format_summary

    cfg = process_config_from_args(args)
    check_locations(cfg)
    from exvad_ray.models.hub import check_gated_access  # token for gated models, before any work

    check_gated_access(cfg.profile, explainer=cfg.explainer != "none")
    summary = process_and_refresh(cfg)
    print(json.dumps(summary, indent=1) if args.json else format_summary(summary))
    return 0


def process_and_refresh(cfg: ProcessConfig, echo: Callable[[str], Any] = print) -> dict[str, Any]:
    """The archive job, then (committed: a failure there is only a warning) the search sidecar."""
    from exvad_ray.pipeline.job import run_process
    from exvad_ray.search.refresh import refresh_after_run

    summary = run_process(cfg, echo=echo)
    scoring = None
    if cfg.normality:  # the job's rows are committed: score them with the normality model as well
        from exvad_ray.pipeline.rescore import RescoreConfig, run_rescore

        rescored = run_rescore(RescoreConfig(cfg.index, detector=cfg.detector, normality=cfg.normality,
                                             address=cfg.address), echo=echo)
        summary["normality_scoring"] = rescored
        scoring = rescored["scoring_id"] if rescored["current"] else None
    summary["search_sidecar"] = refresh_after_run(cfg.index, echo)
    if scoring:
        summary["normality_sidecar"] = refresh_after_run(cfg.index, echo, scoring=scoring)
    return summary


def _compact(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from exvad_ray.errors import ExvadError
    from exvad_ray.index import compact
    from exvad_ray.index.compaction import DeltaCompaction
    from exvad_ray.index.scorings import compact_tables
    from exvad_ray.pipeline.lease import IndexLease, LeaseHeld

    if args.retention_hours < 0:
        raise ExvadError(f"--retention-hours must be >= 0 (got {args.retention_hours})")
    index = storage.normalize(args.index)
    if not storage.exists(index):  # before the lease, which would create the folder
        raise ExvadError(f"no index at {args.index} (nothing to compact)")
    lease = IndexLease(index)
    try:
        lease.acquire()  # a job's batch not yet committed must not be vacuumed, nor two compactions race
    except LeaseHeld as exc:
        raise ExvadError(str(exc).split(";")[0] + "; run `exvad compact` once it has finished") from exc
    try:
        done = compact(index, compact_tables(index), retention_hours=args.retention_hours, z_order=args.z_order)
    finally:
        lease.release()
    if args.json:
        print(json.dumps({t: asdict(r) if isinstance(r, DeltaCompaction) else {"merged": r}
                          for t, r in done.items()}, indent=1))
        return 0
    for t, r in done.items():
        print(f"exvad compact: {t}: " + (r.describe() if isinstance(r, DeltaCompaction) else f"merged {r} files"))
    return 0
