"""The index at archive scale, metadata only (issue 23): today's layout and Delta, 1e4 to 1e6 videos.

What a rerun, a rescore's planning, a search and a compaction cost in the driver when the index
already holds N videos, without decoding anything or running a model: the index is synthetic rows
in the real schemas (``schemas/*.json``, tiny or null embeddings), written in bulk in exactly the
file layout `exvad_ray.index.store.write_video_tables` produces (one Parquet file per video per
table, ``<table>/<k>=<v>/.../part-<video_id>.parquet``, the schema version in the file metadata, a
run manifest). `--check` writes a handful of videos with the real writer and with the bulk writer
and compares the file names and `read_table` of every table.

Every measurement runs in its own child process (`measure` sub-command) so that its peak RSS
(the child's own VmHWM) is that of one driver doing one thing; the figure includes the interpreter and the
imports (the `baseline` row). Requests: on the local S3 server they are counted by the server
(SeaweedFS's Prometheus counter ``SeaweedFS_s3_request_total``, by type); on local disk a second
run of the same child under ``strace -f`` counts the file-system calls (openat, stat family,
getdents64...) made between two marker calls around the operation.

Measured operations (today's code, unchanged):
  plan           `pipeline.worklist.plan_work` over an unchanged archive (the rerun's planning)
  plan_replaced  the same after 1% of the archive's objects were replaced (new content, same
                 URI); the archive and the index are put back afterwards (tombstones deleted)
  rescore_plan   `pipeline.rescore.plan_work` for a new scoring
  search         a fresh `SegmentIndex(...).search(classes=["Fighting"])` (no sidecar)
  compact        `index.compact` (per-video files merged per partition; mutates the index)
  plan_compacted the rerun's planning again, on the compacted index

`--layout delta` builds the `videos` and `errors` tables as Delta Lake tables (issue 23; files of
blocks of videos, `DeltaLayout`: one file per partition of 100 videos) and runs `plan`, `compact`
(`exvad compact`: optimize, vacuum with retention 0, checkpoint) and `plan_compacted` on them;
`--layout delta_blocks` is the same tables as the job writes them by default (a block of 16 videos
written and committed at a time: small files, a log entry per block). Rescore planning and search
on Delta are later pieces of the issue. Rows of the rerun's planning (PLAN_OPS) carry the planner they measured
(`planner`: "streamed" for the page-by-page planner; plan rows without it measured the Python-set
planner before it, kept as they were). A run replaces the rows of the operations it ran only.

    python bench/scale.py run --sizes 1e4,1e5 --backend local      # builds under --root, measures
    python bench/scale.py run --layout delta --sizes 1e6 --ops plan  # the Delta layout's planning
    python bench/scale.py run --layout delta_blocks --sizes 1e4 --ops compact,plan_compacted
    python bench/scale.py run --sizes 1e4 --backend s3               # on a local SeaweedFS
    python bench/scale.py report [--md FILE]                         # RESULTS.md (or FILE) + results.json
    python bench/scale.py check                                      # bulk layout == real writer
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from types import SimpleNamespace
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

RAW = os.path.join(HERE, "scale_raw.json")  # every measurement, appended by `run`; `report` reads it
CLASSES = ("Abuse", "Arrest", "Arson", "Assault", "Burglary", "Explosion", "Fighting", "RoadAccidents",
           "Robbery", "Shooting", "Shoplifting", "Stealing", "Vandalism")
VIDEOS_PER_PARTITION = 100  # videos per (date, camera) folder of the archive
SNIPPETS_PER_VIDEO = 4
WINDOWS_PER_VIDEO = 2
DIM = 4  # tiny embeddings: metadata only
FAILED_EVERY = 100  # 1% of the videos failed (an errors row, nothing else)
SEGMENT_EVERY = 20  # 5% of the videos have one flagged segment
REPLACED_EVERY = 100  # the 1% replaced for plan_replaced (never a failed one)
DELTA_COMMIT_VIDEOS = 100_000  # videos per commit of the Delta layout
PLANNER = "streamed"  # the planning code measured (plan rows without it: the Python-set planner before it)
PLAN_OPS = ("plan", "plan_replaced", "plan_compacted")
JOB_TABLES = 5  # delta_blocks rows with `tables`: all five tables as the job writes them (older rows: videos, errors)
PROCESSING_DATE = "2026-12-06"
RUN_ID = "bench0000scale"
OPS = ("plan", "plan_replaced", "rescore_plan", "search", "compact", "plan_compacted")
FS_CALLS = ("openat", "open", "newfstatat", "statx", "stat", "lstat", "getdents64", "rename", "unlink", "mkdir")
MARK_BEGIN, MARK_END = "/tmp/.exvad-scale-op-begin", "/tmp/.exvad-scale-op-end"

# placeholders of the bulk writer: same length as the values they stand for
PH_VID = "Q" * 36


def _n(text: str) -> int:
    return int(float(text))


def _label(n: int) -> str:
    return f"1e{round(math.log10(n))}" if n >= 10 and 10 ** round(math.log10(n)) == n else str(n)


# ------------------------------------------------------------------------------------- the data


class Archive:
    """The synthetic archive: N empty objects ``cam-CCC/YYYY-MM-DD/vKKKKKKK.mp4`` (fixed length)."""

    def __init__(self, uri: str, n: int):
        self.uri = uri.rstrip("/")
        self.n = n
        parts = max(1, n // VIDEOS_PER_PARTITION)
        self.cameras = max(1, round(math.sqrt(parts)))
        self.days = math.ceil(parts / self.cameras)

    def key(self, k: int) -> tuple[str, str, str]:
        """(relative path, date, camera) of video k."""
        part = k // VIDEOS_PER_PARTITION
        cam, day = part % self.cameras, part // self.cameras
        date = (dt.date(2024, 1, 1) + dt.timedelta(days=day)).isoformat()
        camera = f"cam-{cam:03d}"
        return f"{camera}/{date}/v{k:07d}.mp4", date, camera

    def object_uri(self, k: int) -> str:
        return f"{self.uri}/{self.key(k)[0]}"


def video_tables(k: int, vid: str, uri: str, date: str, camera: str) -> dict[str, Any]:
    """One video's rows, as the archive job hands them to `write_video_tables`: {table: (values, cols)}
    (segments: a list of them). A failed video has an errors row only."""
    now = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.timezone.utc)
    name = uri.rsplit("/", 1)[-1][:-4]
    part = {"date": date, "camera": camera}
    if k % FAILED_EVERY == 37:
        return {"errors": ({"date": date}, {
            "video_id": [vid], "uri": [uri], "size_bytes": [0], "stage": ["decode"], "error_type": ["DecodeError"],
            "reason": ["truncated"], "message": ["the file ends before its first frame"], "detail": ["moov atom not found"],
            "run_id": [RUN_ID], "processed_at": [now]})}
    label = CLASSES[k % len(CLASSES)] if k % SEGMENT_EVERY == 3 else None
    vec = [0.5] * DIM
    n_s, n_w = SNIPPETS_PER_VIDEO, WINDOWS_PER_VIDEO
    snippets = {
        "video_id": [vid] * n_s, "uri": [uri] * n_s, "window_index": [i * n_w // n_s for i in range(n_s)],
        "snippet_index": list(range(n_s)), "start_s": [i * 0.64 for i in range(n_s)],
        "end_s": [(i + 1) * 0.64 for i in range(n_s)], "frame_index": [i * 16 for i in range(n_s)],
        "anomaly_score": [0.9 if label else 0.1] * n_s, "class_probs": [None] * n_s,
        "visual_embedding": [None] * n_s, "thumbnail_jpeg": [None] * n_s}
    captions = {
        "video_id": [vid] * n_w, "window_index": list(range(n_w)), "time_s": [w * 1.28 for w in range(n_w)],
        "caption": ["a street at night"] * n_w, "clean_caption": ["a street at night"] * n_w,
        "caption_model": ["imagenet-tags"] * n_w, "window_explanation": ["people walk past"] * n_w,
        "explanation_model": ["none"] * n_w}
    videos = {
        "video_id": [vid], "uri": [uri], "name": [name], "size_bytes": [0], "etag": [None], "status": ["ok"],
        "duration_s": [n_s * 0.64], "timing": ["constant"], "fps": [25.0], "n_frames": [n_s * 16], "width": [320],
        "height": [240], "codec": ["h264"], "n_snippets": [n_s], "n_windows": [n_w],
        "video_score": [0.9 if label else 0.1], "video_class": [label or "Normal"],
        "class_names": [["Normal", *CLASSES]], "class_scores": [[0.5] * (1 + len(CLASSES))],
        "n_segments": [1 if label else 0], "explanation": ["people walk past"], "explanation_embedding": [vec],
        "window_explanation_embeddings": [[vec] * n_w], "visual_model": ["efficientnet-lite0"],
        "caption_model": ["imagenet-tags"], "explanation_model": ["none"], "detector": ["zero-shot:ucf"],
        "label_set": ["ucf"], "recorded_at": [dt.datetime.fromisoformat(date).replace(tzinfo=dt.timezone.utc)],
        "recorded_at_source": ["path-date"], "run_id": [RUN_ID], "processed_at": [now]}
    out: dict[str, Any] = {"snippets": (part, snippets), "captions": (part, captions), "videos": (part, videos)}
    if label:
        out["segments"] = [({"class": label, **part}, {
            "segment_id": [f"{vid}:0"], "video_id": [vid], "uri": [uri], "label": [label], "score": [0.9],
            "class_score": [0.8], "start_s": [0.0], "end_s": [n_s * 0.64], "first_snippet": [0],
            "last_snippet": [n_s - 1], "peak_s": [0.32], "start_at": [videos["recorded_at"][0]],
            "end_at": [videos["recorded_at"][0] + dt.timedelta(seconds=n_s * 0.64)],
            "explanation": ["people walk past"], "thumbnail_jpeg": [None], "visual_embedding": [vec],
            "explanation_embedding": [vec]})]
    return out


class BulkWriter:
    """Per-video Parquet files of today's layout at disk speed: one file per table-shape is written
    by pyarrow with placeholder ids (id/uri/name columns plain and uncompressed, the others zstd as
    the job writes them), then each video's file is that template with its values substituted
    (same lengths). The bytes differ from the job's only in those columns' encoding; names,
    schema, metadata and every value read back the same (`check`)."""

    PLAIN = ("video_id", "uri", "name", "segment_id")

    def __init__(self, archive: Archive):
        self.archive = archive
        self.templates: dict[tuple[str, str], list[tuple[str, str, bytes]]] = {}
        self.ph_uri = b"U" * len(archive.object_uri(0))
        self.ph_name = b"N" * len(f"v{0:07d}")

    def files(self, k: int, vid: str) -> list[tuple[str, bytes]]:
        """(path relative to the index, bytes) of video k's files."""
        rel, date, camera = self.archive.key(k)
        uri = self.archive.object_uri(k).encode()
        name = rel.rsplit("/", 1)[-1][:-4].encode()
        # what varies between videos besides the ids: failed or not, the class, the date
        label = CLASSES[k % len(CLASSES)] if k % SEGMENT_EVERY == 3 else ""
        shape = ("failed" if k % FAILED_EVERY == 37 else label, date)
        if shape not in self.templates:
            self.templates[shape] = self._templates(k, date, camera)
        out = []
        for table, values, data in self.templates[shape]:
            data = data.replace(PH_VID.encode(), vid.encode()).replace(self.ph_uri, uri).replace(self.ph_name, name)
            out.append((f"{table}/{values.format(camera=camera)}/part-{vid}.parquet", data))
        return out

    def _templates(self, k: int, date: str, camera: str) -> list[tuple[str, str, bytes]]:
        """(table, partition path with a {camera} slot, template bytes) of video k's shape."""
        import pyarrow.parquet as pq

        from exvad_ray.index.schemas import SCHEMA_VERSION, conform
        from exvad_ray.index.store import VERSION_KEY, partition_path

        out = []
        ph = video_tables(k, PH_VID, self.ph_uri.decode(), date, "{camera}")
        for table, items in ph.items():
            for values, cols in (items if isinstance(items, list) else [items]):
                if "name" in cols:
                    cols = {**cols, "name": [self.ph_name.decode()]}
                t = conform(table, cols)
                t = t.replace_schema_metadata({**(t.schema.metadata or {}), VERSION_KEY: str(SCHEMA_VERSION).encode()})
                plain = [c for c in self.PLAIN if c in t.column_names]
                buf = io.BytesIO()
                pq.write_table(t, buf, compression={c: ("none" if c in plain else "zstd") for c in t.column_names},
                               use_dictionary=[c for c in t.column_names if c not in plain])
                out.append((table, partition_path(table, values), buf.getvalue()))
        return out


# ------------------------------------------------------------------------------------- layouts


class Layout:
    """One index layout behind the measurements: how it is built and how each operation runs."""

    name = "?"
    ops: tuple[str, ...] = OPS  # the operations this layout runs

    def build(self, index: str, archive: Archive, ids: list[str]) -> dict[str, int]:
        raise NotImplementedError

    def op(self, name: str, index: str, archive: str) -> dict[str, Any]:
        return getattr(self, f"op_{name}")(index, archive)


class TodayLayout(Layout):
    """Today's layout (exvad_ray.index.store): per-video files, tombstones, our own compaction."""

    name = "today"

    def build(self, index: str, archive: Archive, ids: list[str]) -> dict[str, int]:
        from exvad_ray import index as idx
        from exvad_ray import storage

        writer = BulkWriter(archive)
        counts: dict[str, int] = {}
        remote = storage.is_remote(index)
        fs, root = storage.filesystem(index)
        batch: dict[str, bytes] = {}
        made: set[str] = set()
        for k, vid in enumerate(ids):
            for rel, data in writer.files(k, vid):
                counts[rel.split("/", 1)[0]] = counts.get(rel.split("/", 1)[0], 0) + 1
                if remote:
                    batch[f"{root}/{rel}"] = data
                    if len(batch) >= 4000:
                        fs.pipe(batch)
                        batch = {}
                else:
                    d = os.path.join(root, os.path.dirname(rel))
                    if d not in made:
                        os.makedirs(d, exist_ok=True)
                        made.add(d)
                    with open(os.path.join(root, rel), "wb") as f:
                        f.write(data)
        if batch:
            fs.pipe(batch)
        idx.write_manifest(index, {"run_id": RUN_ID, "archive": storage.normalize(archive.uri),
                                   "started_at": "2026-12-06T12:00:00+00:00", "finished_at": "2026-12-06T13:00:00+00:00",
                                   "first_started_at": "2026-12-06T12:00:00+00:00",
                                   "processing_date": PROCESSING_DATE, "args": {"bench": "scale"}, "summary": {}})
        counts["runs"] = 1
        return counts

    @staticmethod
    def _cfg(index: str, archive: str) -> SimpleNamespace:
        from exvad_ray import storage
        from exvad_ray.index import DEFAULT_DATE_PATTERN

        return SimpleNamespace(archive=archive, index=index, extensions=storage.DEFAULT_VIDEO_EXTENSIONS,
                               content_hash=False, retry_errors=False, date_pattern=DEFAULT_DATE_PATTERN,
                               camera_pattern=None, limit=None)

    def op_plan(self, index: str, archive: str) -> dict[str, Any]:
        from exvad_ray.pipeline.worklist import plan_work

        items, c = plan_work(self._cfg(index, archive), PROCESSING_DATE)
        return {"todo": len(items), "done_before": c.done_before, "failed_before": c.failed_before, "changed": c.changed}

    op_plan_replaced = op_plan
    op_plan_compacted = op_plan

    def op_rescore_plan(self, index: str, archive: str) -> dict[str, Any]:
        from exvad_ray.pipeline.rescore import plan_work

        items, done, warnings = plan_work(index, "bench-scale-scoring")
        return {"items": len(items), "videos": sum(len(json.loads(i["videos"])) for i in items), "warnings": warnings}

    def op_search(self, index: str, archive: str) -> dict[str, Any]:
        from exvad_ray.search.engine import SegmentIndex

        rows = SegmentIndex(index, use_sidecar=False).search(classes=["Fighting"], limit=50)
        return {"rows": rows.num_rows}

    def op_compact(self, index: str, archive: str) -> dict[str, Any]:
        from exvad_ray.index import compact

        return {"merged": compact(index)}

    def op_baseline(self, index: str, archive: str) -> dict[str, Any]:
        import exvad_ray.pipeline.rescore  # noqa: F401 - the imports every other op pays
        import exvad_ray.pipeline.worklist  # noqa: F401
        import exvad_ray.search.engine  # noqa: F401
        return {}


class DeltaLayout(TodayLayout):
    """The Delta Lake tables of issue 23 (exvad_ray/index/delta.py), for the rerun's planning and
    compaction: the `videos` and `errors` tables as Delta tables whose files hold blocks of videos
    (one Parquet file per (date, camera) partition of `videos`, 100 videos; one per date of
    `errors`), written by `delta.write_files` and committed by `delta.commit` with the run's
    application transaction, one commit per DELTA_COMMIT_VIDEOS videos (10 commits per table at
    1e6). The rows are the same as today's layout holds (`video_tables`). The other tables
    (snippets, segments, captions), tombstones and the run manifest stay absent: `plan` reads only
    the done set; `compact` is `exvad compact` on the two tables (optimize, then vacuum with a
    retention of 0: the index as it is once the retention has passed; then a checkpoint).
    Rescore planning and search on Delta are later pieces of issue 23."""

    name = "delta"
    ops = ("plan", "compact", "plan_compacted")
    block_videos: int | None = None  # videos per write_files call (None: all of a commit's at once)
    commit_videos = DELTA_COMMIT_VIDEOS

    def build(self, index: str, archive: Archive, ids: list[str]) -> dict[str, int]:
        from exvad_ray.index import delta

        counts: dict[str, int] = {}
        block = self.block_videos or self.commit_videos
        for batch, start in enumerate(range(0, len(ids), self.commit_videos)):
            files: dict[str, list[dict[str, Any]]] = {}
            end = min(len(ids), start + self.commit_videos)
            for b0 in range(start, end, block):
                cols: dict[str, dict[str, list[Any]]] = {}
                parts: dict[str, list[dict[str, str]]] = {}
                for k in range(b0, min(end, b0 + block)):
                    _, date, camera = archive.key(k)
                    for table, item in video_tables(k, ids[k], archive.object_uri(k), date, camera).items():
                        if table not in ("videos", "errors"):
                            continue
                        values, row = item
                        into = cols.setdefault(table, {})
                        for c, v in row.items():
                            into.setdefault(c, []).extend(v)
                        parts.setdefault(table, []).append(values)
                for table in cols:
                    files.setdefault(table, []).extend(delta.write_files(index, table, cols[table], parts[table]))
            for table in ("videos", "errors"):
                if table in files:
                    delta.commit(index, table, RUN_ID, batch, files[table])
                    counts[table] = counts.get(table, 0) + len(files[table])
        return counts

    def op_compact(self, index: str, archive: str) -> dict[str, Any]:
        from dataclasses import asdict

        from exvad_ray.index import compact

        done = compact(index, tables=("videos", "errors"), retention_hours=0)
        return {"compacted": {t: asdict(r) for t, r in done.items()}}


class DeltaBlocksLayout(DeltaLayout):
    """The index as the archive job writes it by default (exvad_ray/index/batches.py,
    pipeline/commits.py): all five Delta tables; a batch of 16 finished videos (`exvad process
    --commit-every`) written as one file per table and partition and committed to snippets,
    segments, captions and then videos (4 commits per batch, each with the run's application
    transaction and the batch's video ids in its metadata; an empty `segments` commit when no
    video of the batch has a segment), a failed video's `errors` row a commit of its own, and the
    run's manifest. Every operation runs on it; `compact` is `exvad compact` on every table."""

    name = "delta_blocks"
    ops = OPS
    block_videos = 16
    commit_videos = 16

    def build(self, index: str, archive: Archive, ids: list[str]) -> dict[str, int]:
        """Built on local disk by `build_job_tables`; on S3 built in a local folder and then uploaded
        object by object (`upload_tree`): the same bytes under the same keys (the log's paths are
        relative to each table), so the table is the one a local build makes."""
        from exvad_ray import storage

        if not storage.is_remote(index):
            return self.warm(index, build_job_tables(index, archive, ids))
        staging = os.path.join(os.environ.get("EXVAD_SCALE_STAGING", "/tmp/exvad-scale"),
                               f"staging-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        try:
            counts = build_job_tables(staging, archive, ids)
            upload_tree(staging, index)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return self.warm(index, counts)

    @staticmethod
    def warm(index: str, counts: dict[str, int]) -> dict[str, int]:
        """The id cache as the job leaves it (`index.idmap`): the job records its committed files'
        ids every 256 batches and at the end of the run (`BatchCommitter.finish`, every video
        table); here once, after the build, the same reads in one go. Its time is
        returned as `id_cache_s` (work the job does, not the planning's)."""
        from exvad_ray.index import idmap

        t0 = time.perf_counter()
        idmap.warm(index, idmap.WARM_TABLES)
        counts["id_cache_s"] = round(time.perf_counter() - t0, 1)
        print(f"  id cache recorded in {counts['id_cache_s']:.0f} s", flush=True)
        return counts

    def op_compact(self, index: str, archive: str) -> dict[str, Any]:
        from dataclasses import asdict

        from exvad_ray.index import compact

        done = compact(index, retention_hours=0)  # every table, as `exvad compact` does
        return {"compacted": {t: asdict(r) for t, r in done.items()}}

    # plan_replaced deletes the replaced videos' rows from every table (new files, new commits)
    # and writes tombstones: `snapshot` / `rollback` put the index back as it was built
    def snapshot(self, index: str) -> dict[str, Any]:
        from exvad_ray import storage
        from exvad_ray.index.schemas import VIDEO_TABLES

        fs, root = storage.filesystem(index)
        if storage.is_remote(index):
            fs.invalidate_cache()
        last = {}
        for t in VIDEO_TABLES:
            p = f"{root}/{t}/_delta_log/_last_checkpoint"
            last[p] = fs.cat_file(p) if fs.exists(p) else None
        return {"objects": set(fs.find(root)), "last_checkpoint": last}

    def rollback(self, index: str, state: dict[str, Any]) -> int:
        """Delete every object written since `snapshot` (new data files, commits, checkpoints,
        tombstones) and put back the `_last_checkpoint` files; returns the objects deleted."""
        from exvad_ray import storage

        fs, root = storage.filesystem(index)
        if storage.is_remote(index):
            fs.invalidate_cache()
        new = sorted(set(fs.find(root)) - state["objects"])
        if new:
            fs.rm(new)
        for p, data in state["last_checkpoint"].items():
            if data is None:
                if fs.exists(p):
                    fs.rm(p)
            else:
                fs.pipe_file(p, data)
        if storage.is_remote(index):
            fs.invalidate_cache()
        return len(new)


def build_job_tables(index: str, archive: Archive, ids: list[str], every: int = 16,
                     workers: int = int(os.environ.get("EXVAD_SCALE_BUILD_WORKERS", 2)),
                     checkpoint_stride: int | None = None) -> dict[str, int]:
    """The five tables as the job writes them (`DeltaBlocksLayout`), at disk speed: the data files
    are `write_block`'s (those of `delta.write_files`), and each commit is written as the log
    entry delta-rs writes for `delta.commit` / `delta.append` (`_delta_log/<version>.json`: the
    commitInfo with our metadata, the add actions, the txn of a batch; a checkpoint every 100
    commits, as delta-rs's post-commit hook) instead of through delta-rs, which opens the table at
    every commit and whose commit grows with the table's files (quadratic: ~35 minutes at 1e5
    for two tables). `check --layout delta_blocks` compares it with the job's own writer
    (`batches.write_batch`, `batches.commit_batch`, `delta.append`). Returns data files per table.

    Checkpoints: each is a full copy of the table's state, so writing every one the job writes
    costs the build O(commits x files) (112 of the 137 s at 1e5). Above 1e5 videos
    (`checkpoint_stride` None) only every 50th is written, and always each table's last one (where
    the job's would be: readers read it and the commits after it, as on the job's log); the others
    are returned as `checkpoints_not_written` (objects the job would have stored, counted in the
    objects per video by `run_scale`)."""
    from deltalake import DeltaTable

    from exvad_ray import __version__, storage
    from exvad_ray import index as idx
    from exvad_ray.index import batches, delta
    from exvad_ray.index.schemas import SCHEMA_VERSION

    if checkpoint_stride is None:
        checkpoint_stride = 1 if len(ids) <= 100_000 else 50
    batches.create_tables(index)
    tables = (*batches.BATCH_TABLES, "errors")
    version = {t: 0 for t in tables}
    counts = {t: 0 for t in tables}
    meta = {delta.SCHEMA_VERSION_KEY: str(SCHEMA_VERSION), delta.PACKAGE_VERSION_KEY: __version__}

    def log(table: str, files: list[dict[str, Any]], extra: dict[str, str], txn: int | None) -> None:
        info = {"timestamp": int(time.time() * 1000), "operation": "WRITE",
                "operationParameters": {"mode": "Append",
                                        "partitionBy": json.dumps(_table_partitioning(index, table), separators=(",", ":"))},
                "engineInfo": "delta-rs:py-1.6.6", "clientVersion": "delta-rs.py-1.6.6", **meta, **extra}
        lines = [json.dumps({"commitInfo": info}, separators=(",", ":"))]
        lines += [json.dumps({"add": {"path": f["path"], "partitionValues": f["partition_values"], "size": f["size"],
                                      "modificationTime": f["modification_time"], "dataChange": True,
                                      "stats": f["stats"], "tags": None, "baseRowId": None,
                                      "defaultRowCommitVersion": None, "clusteringProvider": None}},
                             separators=(",", ":")) for f in files]
        if txn is not None:
            lines.append(json.dumps({"txn": {"appId": RUN_ID, "version": txn}}, separators=(",", ":")))
        version[table] += 1
        v = version[table]
        with open(os.path.join(delta.table_uri(index, table), "_delta_log", f"{v:020d}.json"), "x") as fh:
            fh.write("\n".join(lines) + "\n")  # "x": as delta-rs, a version is never overwritten
        if (v + 1) % 100 == 0:  # where delta-rs's post-commit hook writes its checkpoints
            if (v + 1) % (100 * checkpoint_stride) == 0 or v + 100 > last[table]:
                checkpoint(table, v)
            else:
                skipped[table] += 1
        counts[table] += len(files)

    def checkpoint(table: str, v: int) -> None:
        t0 = time.perf_counter()
        DeltaTable(delta.table_uri(index, table), version=v).create_checkpoint()
        timing["checkpoint_s"] += time.perf_counter() - t0

    idx.write_manifest(index, {"run_id": RUN_ID, "archive": storage.normalize(archive.uri), "started_at": "2026-12-06T12:00:00+00:00",
                               "finished_at": "2026-12-06T13:00:00+00:00",
                               "first_started_at": "2026-12-06T12:00:00+00:00", "processing_date": PROCESSING_DATE,
                               "args": {"bench": "scale"}, "summary": {}})
    # the commits in the job's order: a failed video's errors commit as it fails, a batch's four
    # commits once 16 videos finished; the data files are written by `workers` processes, a chunk
    # of commits at a time, the log here, in order
    commits: list[tuple[int, list[tuple[int, str]]]] = []  # (batch or -1 for an errors commit, videos)
    members: list[tuple[int, str]] = []
    n_batches = 0
    for k, vid in enumerate(ids):
        if k % FAILED_EVERY == 37:
            commits.append((-1, [(k, vid)]))
            continue
        members.append((k, vid))
        if len(members) == every:
            commits.append((n_batches, members))
            n_batches, members = n_batches + 1, []
    if members:
        commits.append((n_batches, members))
    last = {t: 0 for t in tables}  # each table's last version: its last checkpoint is always written
    for batch, _ in commits:
        for t in (("errors",) if batch < 0 else batches.BATCH_TABLES):
            last[t] += 1
    skipped = {t: 0 for t in tables}
    chunks = [commits[i:i + 64] for i in range(0, len(commits), 64)]
    job = (index, archive.uri, archive.n)
    timing = {"checkpoint_s": 0.0}
    with _pool(workers) as pool:
        for chunk, written in zip(chunks, pool.imap(_write_commits, [(job, c) for c in chunks])):
            for (batch, vids), files in zip(chunk, written):
                if batch < 0:  # a failed video: its errors row committed on its own (delta.append)
                    log("errors", files["errors"], {}, None)
                    continue
                extra = {"exvad.run_id": RUN_ID, "exvad.batch": str(batch),
                         batches.IDS_KEY: json.dumps(sorted(vid for _, vid in vids))}
                for table in batches.BATCH_TABLES:  # videos last, as commit_batch
                    log(table, files.get(table, []), extra, batch)
    print(f"  {sum(version.values())} commits, checkpoints {timing['checkpoint_s']:.0f} s", flush=True)
    if sum(skipped.values()):
        counts["checkpoints_not_written"] = sum(skipped.values())
    return counts


def _pool(workers: int) -> Any:
    """Worker processes (spawned: the parent may hold delta-rs's threads) or, with 1, this one."""
    import contextlib
    import multiprocessing

    if workers <= 1:
        return contextlib.nullcontext(SimpleNamespace(imap=map))
    return multiprocessing.get_context("spawn").Pool(workers)


def _write_commits(task: tuple[tuple[str, str, int], list[tuple[int, list[tuple[int, str]]]]]
                   ) -> list[dict[str, list[dict[str, Any]]]]:
    """The data files of a chunk of commits (`build_job_tables`): per commit, each table's add actions."""
    (index, uri, n), commits = task
    archive = Archive(uri, n)
    out = []
    for batch, members in commits:
        cols: dict[str, dict[str, list[Any]]] = {}
        parts: dict[str, list[dict[str, str]]] = {}
        for k, vid in members:
            _, date, camera = archive.key(k)
            for table, items in video_tables(k, vid, archive.object_uri(k), date, camera).items():
                for values, row in (items if isinstance(items, list) else [items]):
                    into = cols.setdefault(table, {})
                    for c, v in row.items():
                        into.setdefault(c, []).extend(v)
                    parts.setdefault(table, []).extend([values] * len(row["video_id"]))
        out.append({t: write_block(index, t, cols[t], parts[t]) for t in cols})
    return out


def upload_tree(local: str, uri: str, chunk: int = 2000) -> int:
    """Every file under `local` PUT to the same relative key under `uri` (the fsspec S3 filesystem,
    `chunk` files a call, concurrently); returns the objects written."""
    from exvad_ray import storage

    fs, root = storage.filesystem(uri)
    todo: dict[str, bytes] = {}
    n = 0
    for d, _, names in os.walk(local):
        for name in names:
            path = os.path.join(d, name)
            with open(path, "rb") as f:
                todo[f"{root}/{os.path.relpath(path, local)}"] = f.read()
            if len(todo) >= chunk:
                fs.pipe(todo)
                n, todo = n + len(todo), {}
    if todo:
        fs.pipe(todo)
        n += len(todo)
    fs.invalidate_cache()
    return n


def write_block(index: str, table: str, rows: dict[str, list[Any]], partitions: list[dict[str, str]]
                ) -> list[dict[str, Any]]:
    """`delta.write_files` without opening the table: the same files (one per partition, zstd, the
    same statistics) and the same add actions."""
    import uuid

    import pyarrow as pa
    import pyarrow.parquet as pq

    from exvad_ray.index import delta
    from exvad_ray.index.schemas import conform, partition_cols, stats_cols

    body = conform(table, rows)
    part = _table_partitioning(index, table)
    for c in partition_cols(table):  # a partition value the table keeps in its files (a new `segments`' class)
        if c not in part:
            body = body.append_column(pa.field(c, pa.string(), nullable=False),
                                      pa.array([str(p[c]) for p in partitions], pa.string()))
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, p in enumerate(partitions):
        groups.setdefault(tuple(str(p[c]) for c in part), []).append(i)
    root = delta.table_uri(index, table)
    out = []
    for key, idxs in sorted(groups.items()):
        chunk = body.take(pa.array(idxs, pa.int64()))
        rel = "/".join([*(f"{c}={v}" for c, v in zip(part, key)), f"part-{uuid.uuid4().hex}.zstd.parquet"])
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        pq.write_table(chunk, path, compression="zstd")
        out.append({"path": rel, "size": os.path.getsize(path), "partition_values": dict(zip(part, key)),
                    "modification_time": int(time.time() * 1000), "data_change": True,
                    "stats": json.dumps(delta.file_stats(chunk, stats_cols(table)))})
    return out


_PARTITIONING: dict[tuple[str, str], list[str]] = {}


def _table_partitioning(index: str, table: str) -> list[str]:
    """The table's own partition columns (as `delta.write_files` follows them), read once."""
    from deltalake import DeltaTable

    from exvad_ray.index import delta

    key = (index, table)
    if key not in _PARTITIONING:
        _PARTITIONING[key] = list(DeltaTable(delta.table_uri(index, table)).metadata().partition_columns)
    return _PARTITIONING[key]


LAYOUTS: dict[str, type[Layout]] = {"today": TodayLayout, "delta": DeltaLayout, "delta_blocks": DeltaBlocksLayout}


# ------------------------------------------------------------------------------------- measuring


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(RAY_USAGE_STATS_ENABLED="0", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return env


# a child past these is stopped (the machine is shared): its figures are lower bounds (--rss-limit-mb, --time-limit-s)
RSS_LIMIT_MB = float(os.environ.get("EXVAD_SCALE_RSS_LIMIT_MB", 8192))
TIME_LIMIT_S = float(os.environ.get("EXVAD_SCALE_TIME_LIMIT_S", 1800))


def _status_kb(key: str, pid: int | str = "self") -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure(layout: str, op: str, index: str, archive: str, strace: bool = False) -> dict[str, Any]:
    """Run one operation in a child process: its result, wall time and peak RSS (and, with
    `strace`, its file-system calls instead: a separate, slower run). A child that passes
    RSS_LIMIT_MB or TIME_LIMIT_S is stopped and reported with `stopped` (lower bounds)."""
    cmd = [sys.executable, os.path.abspath(__file__), "measure", "--layout", layout, "--op", op,
           "--index", index, "--archive", archive]
    out_path = f"/tmp/exvad-scale-{os.getpid()}-{op}.json"
    cmd += ["--out", out_path]
    if strace:
        cmd = ["strace", "-f", "-qq", "-e", "trace=%file,getdents64", "-o", out_path + ".strace", *cmd]
    proc = subprocess.Popen(cmd, env=_env())
    t0 = time.perf_counter()
    stopped = None
    peak = 0.0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        rss, el = _status_kb("VmRSS", proc.pid) / 1024, time.perf_counter() - t0
        peak = max(peak, _status_kb("VmHWM", proc.pid) / 1024)
        if not strace and (rss > RSS_LIMIT_MB or el > TIME_LIMIT_S):
            stopped = f"stopped at {rss:.0f} MB RSS after {el:.0f} s"
            proc.kill()
            _, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.2)
    if stopped:
        return {"stopped": stopped, "s": round(time.perf_counter() - t0, 1),
                "peak_rss_mb": round(peak, 1), "load_avg": round(os.getloadavg()[0], 1)}
    if status != 0:
        raise SystemExit(f"measure {op} failed (status {status})")
    with open(out_path) as f:
        res = json.load(f)
    os.remove(out_path)
    # peak RSS from the child's own VmHWM: wait4's ru_maxrss would include the parent's RSS at the
    # fork (Linux keeps the larger of the two across exec)
    res["load_avg"] = round(os.getloadavg()[0], 1)  # the machine is shared: how busy it was
    if strace:  # the calls between the child's two marker stats: the operation's own
        calls: dict[str, int] = {}
        inside = False
        call_re = re.compile(r"^\d+\s+(\w+)\(")
        with open(out_path + ".strace", errors="replace") as f:
            for line in f:
                if MARK_BEGIN in line:
                    inside = True
                elif MARK_END in line:
                    inside = False
                elif inside and (m := call_re.match(line)) and m.group(1) in FS_CALLS:
                    calls[m.group(1)] = calls.get(m.group(1), 0) + 1
        os.remove(out_path + ".strace")
        res = {"fs_calls": calls}
    return res


def _child(args: argparse.Namespace) -> None:
    layout = LAYOUTS[args.layout]()
    os.path.exists(MARK_BEGIN)  # markers for the strace count: the operation's calls lie between them
    prof_dir = os.environ.get("EXVAD_SCALE_PROFILE")  # a folder: the operation under cProfile (slower)
    if prof_dir:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    t0, c0 = time.perf_counter(), time.process_time()
    res = layout.op(args.op, args.index, args.archive)
    res["s"] = round(time.perf_counter() - t0, 3)
    if prof_dir:
        prof.disable()
        prof.dump_stats(os.path.join(prof_dir, f"{args.layout}-{args.op}.prof"))
        res["profiled"] = True
    res["cpu_s"] = round(time.process_time() - c0, 3)  # all threads: less sensitive to a loaded machine
    res["peak_rss_mb"] = round(_status_kb("VmHWM") / 1024, 1)
    os.path.exists(MARK_END)
    with open(args.out, "w") as f:
        json.dump(res, f, default=str)


class S3Counter:
    """The local S3 server's request counters (server side, every client counted)."""

    def __init__(self, server: Any):
        cmd = open(f"/proc/{server._proc.pid}/cmdline", "rb").read().split(b"\0")
        port = next(c for c in cmd if c.startswith(b"-metricsPort=")).split(b"=", 1)[1].decode()
        self.url = f"http://127.0.0.1:{port}/metrics"

    def read(self) -> dict[str, float]:
        text = urllib.request.urlopen(self.url, timeout=10).read().decode()  # noqa: S310 - loopback
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("SeaweedFS_s3_request_total{"):
                labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
                key = labels.get("type", "?")
                out[key] = out.get(key, 0) + float(line.rsplit(" ", 1)[1])
        return out

    @staticmethod
    def diff(after: dict[str, float], before: dict[str, float]) -> dict[str, int]:
        return {k: int(v - before.get(k, 0)) for k, v in after.items() if v - before.get(k, 0)}


def count_objects(uri: str) -> int:
    from exvad_ray import storage

    if storage.is_remote(uri):
        fs, path = storage.filesystem(uri)
        fs.invalidate_cache()
        return len(fs.find(path))
    return sum(len(files) for _, _, files in os.walk(storage.normalize(uri)))


def _replace(archive: Archive, restore: bool, stamps: dict[int, tuple[int, int]] | None = None) -> dict[int, Any]:
    """Replace 1% of the archive's objects with other bytes (a new id, same URI), or put them back."""
    from exvad_ray import storage

    ks = [k for k in range(51, archive.n, REPLACED_EVERY)]
    saved: dict[int, Any] = {}
    if storage.is_remote(archive.uri):
        fs, _ = storage.filesystem(archive.uri)
        fs.pipe({archive.object_uri(k)[len("s3://"):]: (b"" if restore else b"x") for k in ks})
        fs.invalidate_cache()
        return saved
    for k in ks:
        path = storage.normalize(archive.object_uri(k))
        if restore:
            with open(path, "wb"):
                pass
            os.utime(path, ns=stamps[k])
        else:
            st = os.stat(path)
            saved[k] = (st.st_atime_ns, st.st_mtime_ns)
            with open(path, "wb") as f:
                f.write(b"x")
    return saved


def run_scale(layout_name: str, n: int, backend: str, root: str, ops: list[str], strace: bool,
              keep: bool, reuse: bool = False) -> list[dict[str, Any]]:
    from exvad_ray import storage

    layout = LAYOUTS[layout_name]()
    label = _label(n)
    server = counter = None
    rows: list[dict[str, Any]] = []
    if backend == "s3":
        from exvad_ray.storage.s3server import LocalS3Server

        data_dir = os.path.join(root, f"s3-{label}")
        shutil.rmtree(data_dir, ignore_errors=True)
        os.makedirs(data_dir)
        server = LocalS3Server(data_dir=data_dir).start()
        os.environ.update(server.env())
        counter = S3Counter(server)
        bucket = server.create_bucket("scale")
        arch_uri, index = f"{bucket}/archive-{label}", f"{bucket}/index-{label}-{layout_name}"
    else:
        base = os.path.join(root, f"local-{label}")
        if not reuse:
            shutil.rmtree(base, ignore_errors=True)
        arch_uri, index = os.path.join(base, "archive"), os.path.join(base, f"index-{layout_name}")
    archive = Archive(arch_uri, n)
    # --reuse (local): an archive and an index a --keep run left are used as they are (the index is
    # built only when absent); `plan` over them must still find nothing to do
    reused_archive = reuse and backend == "local" and os.path.isdir(arch_uri)
    reused_index = reused_archive and os.path.isdir(index)
    try:
        t0 = time.perf_counter()
        if reused_archive:
            pass
        elif backend == "s3":
            fs, _ = storage.filesystem(arch_uri)
            for s in range(0, n, 4000):
                fs.pipe({archive.object_uri(k)[len("s3://"):]: b"" for k in range(s, min(n, s + 4000))})
            fs.invalidate_cache()
        else:
            made: set[str] = set()
            for k in range(n):
                path = os.path.join(arch_uri, archive.key(k)[0])
                d = os.path.dirname(path)
                if d not in made:
                    os.makedirs(d, exist_ok=True)
                    made.add(d)
                open(path, "wb").close()
        entries = storage.list_videos(arch_uri)
        assert len(entries) == n, (len(entries), n)
        ids = [e.video_id for e in entries]  # sorted by URI = by k (fixed-width names)
        t_arch = time.perf_counter() - t0
        counts = {"reused": 1} if reused_index else layout.build(index, archive, ids)
        t_build = time.perf_counter() - t0 - t_arch
        # objects the job would have stored that the builder did not write (build_job_tables: checkpoints)
        unwritten = counts.pop("checkpoints_not_written", 0)
        id_cache_s = counts.pop("id_cache_s", None)
        objects = count_objects(index) + unwritten
        print(f"[{layout_name} {backend} {label}] archive {t_arch:.0f}s, index built in {t_build:.0f}s: "
              f"{objects} objects {counts}", flush=True)
        common = {"layout": layout_name, "backend": backend, "n": n, "cameras": archive.cameras, "days": archive.days,
                  **({"tables": JOB_TABLES} if layout_name == "delta_blocks" else {})}
        rows.append({**common, "op": "build", "objects": objects, "objects_by_table": counts,
                     "objects_per_video": round(objects / n, 4), "s": round(t_build, 1),
                     **({"checkpoints_not_written": unwritten} if unwritten else {}),
                     **({"id_cache_s": id_cache_s} if id_cache_s is not None else {}),
                     **({"reused": True} if reused_index else {}), "load_avg": round(os.getloadavg()[0], 1)})
        objects -= unwritten  # what the operations below find stored
        base_rss = measure(layout_name, "baseline", index, arch_uri)
        rows.append({**common, "op": "baseline", **base_rss})
        for op in ops:
            saved = layout.snapshot(index) if op == "plan_replaced" and hasattr(layout, "snapshot") else None
            stamps = _replace(archive, restore=False) if op == "plan_replaced" else None
            before_obj = objects
            before = counter.read() if counter else None
            res = measure(layout_name, op, index, arch_uri)
            row = {**common, "op": op, **({"planner": PLANNER} if op in PLAN_OPS else {}), **res}
            if counter:
                row["requests"] = S3Counter.diff(counter.read(), before)
                row["requests_total"] = sum(row["requests"].values())
            objects = count_objects(index)
            row["objects_after"] = objects
            row["objects_delta"] = objects - before_obj
            heavy = n > 10_000 and op in ("plan_replaced", "rescore_plan")  # tens of minutes under strace
            if strace and backend == "local" and op != "compact" and not heavy and "stopped" not in res:
                if op == "plan_replaced":  # the first run wrote tombstones (deleted rows): undo before counting again
                    layout.rollback(index, saved) if saved is not None else _undo_tombstones(index)
                calls = measure(layout_name, op, index, arch_uri, strace=True)["fs_calls"]
                row["fs_calls"] = calls
                row["fs_calls_total"] = sum(row["fs_calls"].values())
            if op == "plan_replaced":
                _replace(archive, restore=True, stamps=stamps)
                if saved is not None:  # Delta: the deleted rows' new files and commits, and the tombstones
                    row["rolled_back_objects"] = layout.rollback(index, saved)
                else:
                    row["tombstones"] = _undo_tombstones(index)
                objects = count_objects(index)
            print(f"[{layout_name} {backend} {label}] {op}: {json.dumps({k: v for k, v in row.items() if k not in common})}",
                  flush=True)
            rows.append(row)
    finally:
        if server is not None:
            server.stop()
        if not keep:
            shutil.rmtree(os.path.join(root, f"{backend}-{label}"), ignore_errors=True)
    return rows


def _undo_tombstones(index: str) -> int:
    from exvad_ray import storage

    fs, path = storage.filesystem(storage.join(index, "superseded"))
    try:
        names = fs.ls(path, detail=False)
    except FileNotFoundError:
        return 0
    fs.rm(path, recursive=True)
    if storage.is_remote(index):
        fs.invalidate_cache()
    return len(names)


# ------------------------------------------------------------------------------------- check


def check(root: str) -> None:
    """A handful of videos written by the job's writer and by the bulk writer read back the same."""
    import pyarrow as pa

    from exvad_ray import index as idx
    from exvad_ray import storage

    base = os.path.join(root, "check")
    shutil.rmtree(base, ignore_errors=True)
    archive = Archive(os.path.join(base, "archive"), 240)
    for k in range(archive.n):
        path = os.path.join(archive.uri, archive.key(k)[0])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "wb").close()
    ids = [e.video_id for e in storage.list_videos(archive.uri)]
    real, bulk = os.path.join(base, "real"), os.path.join(base, "bulk")
    for k, vid in enumerate(ids):
        rel, date, camera = archive.key(k)
        idx.write_video_tables(real, vid, video_tables(k, vid, archive.object_uri(k), date, camera))
    TodayLayout().build(bulk, archive, ids)
    idx.write_manifest(real, idx.read_manifest(bulk, RUN_ID))

    def files(i: str) -> list[str]:
        return sorted(os.path.relpath(os.path.join(d, f), i) for d, _, fs in os.walk(i) for f in fs)

    assert files(real) == files(bulk), "file names differ"
    for table in idx.VIDEO_TABLES:
        a, b = (idx.read_table(i, table, current=False) for i in (real, bulk))
        key = [(c, "ascending") for c in ("video_id", "snippet_index", "window_index") if c in a.column_names]
        a, b = a.sort_by(key), b.sort_by(key)
        assert a.num_rows == b.num_rows and a.num_rows > 0, (table, a.num_rows, b.num_rows)
        assert a.equals(b), f"{table}: rows differ"
        assert a.schema.equals(b.schema, check_metadata=False)
        print(f"check {table}: {a.num_rows} rows, {len([f for f in files(real) if f.startswith(table + '/')])} "
              "files: identical", flush=True)
    # the planning reads the same
    for i in (real, bulk):
        print("plan", TodayLayout().op_plan(i, archive.uri))
    assert idx.done_video_ids(real) == idx.done_video_ids(bulk)
    assert pa.Table.equals(*(idx.read_table(i, "videos") .sort_by("video_id") for i in (real, bulk)))
    shutil.rmtree(base, ignore_errors=True)
    print("check: the bulk layout reads back identically to the job's writer")


def check_job_tables(root: str, n_real: int = 200, n: int = 2000) -> None:
    """`build_job_tables` against the job's own writer (`batches.write_batch` / `commit_batch` for
    each batch of 16, `delta.write_files` / `delta.append` for a failed video) at `n_real` videos:
    the same rows, data files and log entries per table and the same commit metadata per version;
    then the real readers over `n` videos built fast: `read_table` row counts per table, a rerun's
    planning plans nothing, a rescore's planning places every indexed video."""
    from exvad_ray import index as idx
    from exvad_ray import storage
    from exvad_ray.index import batches, delta
    from exvad_ray.index.schemas import VIDEO_TABLES

    base = os.path.join(root, "check-job")
    shutil.rmtree(base, ignore_errors=True)

    def make_archive(m: int) -> tuple[Archive, list[str]]:
        archive = Archive(os.path.join(base, f"archive-{m}"), m)
        for k in range(m):
            path = os.path.join(archive.uri, archive.key(k)[0])
            os.makedirs(os.path.dirname(path), exist_ok=True)
            open(path, "wb").close()
        return archive, [e.video_id for e in storage.list_videos(archive.uri)]

    archive, ids = make_archive(n_real)
    real, fast = os.path.join(base, "real"), os.path.join(base, "fast")
    batches.create_tables(real)
    members: list[str] = []
    rows: list[dict[str, Any]] = []
    batch = 0
    for k, vid in enumerate(ids):
        _, date, camera = archive.key(k)
        t = video_tables(k, vid, archive.object_uri(k), date, camera)
        if "errors" in t:
            values, cols = t["errors"]
            delta.append(real, "errors", delta.write_files(real, "errors", cols, [values]))
            continue
        members.append(vid)
        rows.append(t)
        if len(members) == 16 or k == len(ids) - 1:
            batches.commit_batch(real, RUN_ID, batch, batches.write_batch(real, rows), members)
            batch, members, rows = batch + 1, [], []
    build_job_tables(fast, archive, ids)

    def log(index: str, table: str) -> list[dict[str, Any]]:
        folder = os.path.join(index, table, "_delta_log")
        out = []
        for name in sorted(f for f in os.listdir(folder) if f.endswith(".json"))[1:]:  # after CREATE TABLE
            with open(os.path.join(folder, name)) as f:
                entry = [json.loads(line) for line in f]
            info = {k: v for k, v in entry[0]["commitInfo"].items() if k != "timestamp"}
            out.append({"info": info, "adds": sum("add" in e for e in entry),
                        "txn": [e["txn"] for e in entry if "txn" in e]})
        return out

    for table in VIDEO_TABLES:
        a, b = (idx.read_table(i, table) for i in (real, fast))
        key = [(c, "ascending") for c in ("video_id", "snippet_index", "window_index") if c in a.column_names]
        a, b = a.sort_by(key), b.sort_by(key)
        assert a.num_rows == b.num_rows > 0 and a.equals(b), f"{table}: rows differ"
        la, lb = log(real, table), log(fast, table)
        assert la == lb, f"{table}: log entries differ"
        fa, fb = len(delta.snapshot_files(real, table)), len(delta.snapshot_files(fast, table))
        assert fa == fb, (table, fa, fb)
        print(f"check {table}: {a.num_rows} rows, {fa} files, {len(la)} commits: the same as the job's writer",
              flush=True)

    archive, ids = make_archive(n)
    index = os.path.join(base, f"fast-{n}")
    t0 = time.perf_counter()
    counts = build_job_tables(index, archive, ids)
    failed = [k for k in range(n) if k % FAILED_EVERY == 37]
    ok = n - len(failed)
    segs = sum(1 for k in range(n) if k % SEGMENT_EVERY == 3 and k % FAILED_EVERY != 37)
    want = {"videos": ok, "snippets": ok * SNIPPETS_PER_VIDEO, "captions": ok * WINDOWS_PER_VIDEO,
            "segments": segs, "errors": len(failed)}
    got = {t: idx.read_table(index, t).num_rows for t in VIDEO_TABLES}
    assert got == want, (got, want)
    layout = DeltaBlocksLayout()
    plan = layout.op_plan(index, archive.uri)
    assert plan["todo"] == 0 and plan["done_before"] == ok and plan["failed_before"] == len(failed), plan
    rescore = layout.op_rescore_plan(index, archive.uri)
    assert rescore["videos"] == ok and not rescore["warnings"], rescore
    print(f"check {n} videos built in {time.perf_counter() - t0:.1f} s ({counts} data files): rows {got}; "
          f"plan {plan}; rescore plan {rescore}", flush=True)
    shutil.rmtree(base, ignore_errors=True)
    print("check: the job's tables built fast read back as the job's writer writes them")


# ------------------------------------------------------------------------------------- report


def _load_raw() -> list[dict[str, Any]]:
    if not os.path.exists(RAW):
        return []
    with open(RAW) as f:
        return json.load(f)


FINDINGS = [
    "- Wall times are those of a machine loaded by other work (load average 8-27 over 2 cores, column "
    "`load_avg` in bench/scale_raw.json); CPU seconds are steadier. The issue's own unloaded figures for "
    "`plan` (0.84 / 4.2 / 42.6 s, 138 / 279 / 1,654 MB at 1e4 / 1e5 / 1e6, videos table only) are of the "
    "same order as these CPU seconds and RSS.",
    "- `plan` over an unchanged archive grows linearly: per video about 2 stat calls (the archive listing "
    "and the videos/errors file listings) and, between 1e5 and 1e6, 1.1 KB of driver memory (Python objects "
    "per listed object and per done id): ~11 GB and ~72 minutes (10 minutes of CPU) at 1e7. On S3 the same "
    "is LIST pages (1,000 keys each) over the archive and every table: 29 requests at 1e4, so ~29,000 "
    "sequential LISTs at 1e7.",
    "- Everything that reads rows grows far faster in memory: `plan_replaced` (1% replaced: "
    "`find_replaced` reads video_id and uri of the whole `videos` and `errors` tables, one Parquet file "
    "per video), `rescore_plan` (whole `videos` rows and `captions`, then a Python dict per video) and "
    "`search` (the whole `videos` table through DuckDB for the class list) need 1.3-1.7 GB at 1e4 "
    "(~130-170 KB per video) and pass 4 GB within about two minutes at 1e5 and 5 GB at 1e6, when they were "
    "stopped (lower bounds, marked >; proportional to 1e4 they would need 130-170 GB at 1e6). On S3 each is one GET per file or more: 30,145 requests for "
    "`plan_replaced`, 59,444 for `rescore_plan`, 9,957 for `search` at 1e4.",
    "- Compaction reads and rewrites every per-video file: 582 s (122 s CPU) at 1e4 on local disk, 1,429 s "
    "(333 s CPU, 59,967 requests: a GET and a DELETE per file) on S3; it brings 3.03 objects per video to "
    "0.081 (segments stay one file per class/date/camera partition). Linear in files: about 3.4 hours of "
    "CPU at 1e6 and 34 at 1e7 on local disk (not run above 1e4). A rerun on the compacted index lists "
    "fewer files but reads each compacted file's footer for its video ids (130 requests on S3 at 1e4, "
    "was 29).",
    "- Not measured: the local S3 server at 1e5 (loading 4e5 objects took ~15 min per 1e4 videos on the "
    "loaded machine: over two hours at 1e5), compaction above 1e4, the 1e6 baseline row.",
]


def report() -> None:
    """RESULTS.md "Archive scale" and the `scale_*` keys of results.json, with the 1e7 projection."""
    from _results import record, table

    rows = [r for r in _load_raw() if r.get("planner", "sets") == "sets" and not r.get("reused")]
    by = {(r["layout"], r["backend"], r["op"], r["n"]): r for r in rows}
    sizes = sorted({r["n"] for r in rows})
    flat: dict[str, Any] = {}
    md: list[str] = [
        "Metadata only (bench/scale.py): a synthetic archive of N empty objects (100 per date/camera folder) and an "
        "index already holding every video, written in bulk in today's layout (one Parquet file per video per "
        "table: videos, snippets (4 rows), captions (2), segments (5% of the videos), errors (1% failed); "
        f"{DIM}-d embeddings, null snippet vectors and thumbnails). Each figure is one child process running "
        "today's code: wall time of the operation (imports excluded), peak RSS of the whole process (imports "
        "included: `baseline`), requests counted by the S3 server (all clients), file-system calls "
        "(strace: openat, stat family, getdents64, rename, unlink, mkdir of the operation alone) on local disk. One run per figure (the 2-core machine is shared).", ""]
    for backend in ("local", "s3"):
        ns = [n for n in sizes if (("today", backend, "build", n) in by)]
        if not ns:
            continue
        head = ["operation"] + [f"{_label(n)}: s (CPU s)" for n in ns] + [f"{_label(n)}: peak RSS MB" for n in ns] + \
               [f"{_label(n)}: {'requests' if backend == 's3' else 'fs calls'}" for n in ns]
        body = []
        for op in ("baseline", *OPS):
            cells_s, cells_m, cells_r = [], [], []
            for n in ns:
                r = by.get(("today", backend, op, n))
                gt = ">" if r is not None and r.get("stopped") else ""
                cells_s.append("-" if r is None or op == "baseline" else
                               f"{gt}{r['s']:.3g}" + (f" ({r['cpu_s']:.3g})" if r.get("cpu_s") is not None else ""))
                cells_m.append("-" if r is None else f"{gt}{r['peak_rss_mb']:,.0f}")
                req = None if r is None else r.get("requests_total", r.get("fs_calls_total"))
                cells_r.append("-" if req is None else req)
                if r is not None and r.get("stopped"):
                    tag = "" if backend == "local" else "s3_"
                    flat[f"scale_today_{tag}{op}_stopped@{_label(n)}"] = r["stopped"]
                if r is not None and op != "baseline" and not r.get("stopped"):
                    tag = "" if backend == "local" else "s3_"
                    suffix = {"plan": "plan"}.get(op, op)
                    flat[f"scale_today_{tag}{suffix}_s@{_label(n)}"] = r["s"]
                    flat[f"scale_today_{tag}{suffix}_peak_rss_mb@{_label(n)}"] = r["peak_rss_mb"]
                    if r.get("cpu_s") is not None:
                        flat[f"scale_today_{tag}{suffix}_cpu_s@{_label(n)}"] = r["cpu_s"]
                    if req is not None:
                        flat[f"scale_today_{tag}{suffix}_{'requests' if backend == 's3' else 'fs_calls'}@{_label(n)}"] = req
            body.append([op, *cells_s, *cells_m, *cells_r])
        objs = []
        for n in ns:
            b = by[("today", backend, "build", n)]
            tag = "" if backend == "local" else "s3_"
            flat[f"scale_today_{tag}objects_per_video@{_label(n)}"] = b["objects_per_video"]
            c = by.get(("today", backend, "compact", n))
            after = round(c["objects_after"] / n, 4) if c else None
            if after is not None:
                flat[f"scale_today_{tag}objects_per_video_compacted@{_label(n)}"] = after
            objs.append(f"{_label(n)}: {b['objects']:,} objects written ({b['objects_per_video']} per video; "
                        f"{b['cameras']} cameras x {b['days']} days), built in {b['s']:.0f} s"
                        + (f"; {after} per video after compaction" if after is not None else ""))
        md += [f"**{'Local disk' if backend == 'local' else 'Local S3 server (SeaweedFS on 127.0.0.1)'}**", "",
               table(head, body), "", *[f"- {o}" for o in objs], ""]
        rep = [r for r in (by.get(("today", backend, "plan_replaced", n)) for n in ns) if r and not r.get("stopped")]
        if rep:
            md += ["Rerun after 1% replaced: " + "; ".join(
                f"{_label(r['n'])}: {r.get('todo')} to do, {r.get('tombstones')} tombstones written"
                for r in rep if r), ""]
    # projection to 1e7: growth between the two largest local sizes, as a power law
    proj: list[list[Any]] = []
    for backend in ("local", "s3"):
        ns = [n for n in sizes if ("today", backend, "plan", n) in by]
        if len(ns) < 2:
            continue
        n1, n2 = ns[-2], ns[-1]
        for op in OPS:
            a, b = by.get(("today", backend, op, n1)), by.get(("today", backend, op, n2))
            if not a or not b or a.get("stopped") or b.get("stopped"):
                continue
            for metric in ("s", "cpu_s", "peak_rss_mb"):
                if a.get(metric) is None or b.get(metric) is None:
                    continue
                x1, x2 = float(a[metric]), float(b[metric])
                # affine through the two largest sizes: a fixed cost plus a cost per video
                slope = (x2 - x1) / (n2 - n1)
                tag = "" if backend == "local" else "s3_"
                ys: list[Any] = []
                for target in (1e6, 1e7):
                    if target <= n2:
                        ys.append("measured")
                        continue
                    y = x2 + slope * (target - n2)
                    flat[f"scale_today_{tag}{op}_{metric}@{_label(int(target))}_projected"] = round(y, 1)
                    ys.append(round(y, 1))
                per_video = slope * (1e6 if metric == "peak_rss_mb" else 1e6)  # per 1e6 videos
                proj.append([backend, op, metric, f"{_label(n1)}->{_label(n2)}", round(per_video, 1), x2, *ys])
    if proj:
        md += ["**Projected to 1e7 videos** from the measured growth: affine through the two largest measured "
               "sizes (a fixed cost plus a cost per video, y(N) = y2 + (y2 - y1) (N - N2) / (N2 - N1)); "
               "stopped measurements are not projected (their lower bounds already break the targets)", "",
               table(["backend", "operation", "metric", "from", "growth per 1e6 videos", "at N2", "1e6",
                      "1e7 (projected)"], proj), ""]
    md += ["**What it says** (today's layout):", "", *FINDINGS, ""]
    md += ["Targets of issue 23 for the new layout at 1e6 (this machine): rerun planning <= 30 s with peak RSS <= "
           "1 GiB, <= 1 object per video before compaction and <= 0.05 after, rescore planning <= 10 s; 1e7: "
           "planning <= 10 min, <= 2 GiB."]
    record("Archive scale (issue 23): today's index layout, metadata only", "\n".join(md), flat)
    print("\n".join(md))
    report_streamed()
    report_delta_compact()
    report_job_tables()


def report_streamed(write: bool = True) -> dict[str, Any]:
    """The streamed planner's rows: today's layout and the Delta layout, `plan` over an unchanged
    archive. Keys: the Delta layout of files of 100 videos under `scale_delta100_plan_*` (the
    issue's own names, `scale_plan_s@1e6`..., are the job's layout's: `report_job_tables`), today's
    layout under `scale_today_streamed_*`; 1e7 affine from the two largest sizes. Returns the keys;
    `write`: also record the section."""
    from _results import record, table

    local = [r for r in _load_raw() if r["backend"] == "local"]
    rows = [r for r in local if r.get("planner") == PLANNER or r["op"] not in PLAN_OPS]
    if not any(r.get("planner") == PLANNER for r in rows):
        return {}
    by = {(r["layout"], r["op"], r["n"]): r for r in rows}  # build, baseline: the latest
    flat: dict[str, Any] = {}
    body, proj = [], []
    for layout, prefix in (("today", "scale_today_streamed_"), ("delta", "scale_delta100_")):
        ns = sorted(n for (lay, op, n) in by if lay == layout and op == "plan")
        for n in ns:
            r, b, base = by[(layout, "plan", n)], by.get((layout, "build", n)), by.get((layout, "baseline", n))
            label = _label(n)
            for metric in ("s", "cpu_s", "peak_rss_mb", "fs_calls_total"):
                if r.get(metric) is not None:
                    flat[f"{prefix}plan_{metric.replace('_total', '')}@{label}"] = r[metric]
            assert r.get("todo") == 0, r  # an unchanged archive plans nothing
            body.append([layout, label, f"{r['s']:.3g}", f"{r['cpu_s']:.3g}", f"{r['peak_rss_mb']:,.0f}",
                         "-" if base is None else f"{base['peak_rss_mb']:,.0f}", r.get("fs_calls_total", "-"),
                         "-" if b is None else f"{b['objects']:,}", f"{r['done_before']:,} + {r['failed_before']:,}"])
        if len(ns) >= 2:
            n1, n2 = ns[-2], ns[-1]
            for metric in ("s", "cpu_s", "peak_rss_mb"):
                x1, x2 = float(by[(layout, "plan", n1)][metric]), float(by[(layout, "plan", n2)][metric])
                slope = (x2 - x1) / (n2 - n1)
                y = round(x2 + slope * (1e7 - n2), 1)
                flat[f"{prefix}plan_{metric}@1e7_projected"] = y
                proj.append([layout, metric, f"{_label(n1)}->{_label(n2)}", round(slope * 1e6, 1), x2, y])
    md = ["`plan_work` streamed (the archive listed 10,000 objects at a time, each page looked up in the done set "
          "held as sorted 16-byte keys; `exvad_ray/pipeline/worklist.py`) over an unchanged archive whose every "
          "video is indexed (1% as failed), local disk. `today`: today's layout (one file per video per table; the "
          "done set from file names). `delta`: the `videos` and `errors` tables as Delta tables, one file per "
          "(date, camera) partition of 100 videos (`errors`: per date), committed every 100,000 videos; the done "
          "set is the snapshot's `video_id` column. Peak RSS of the child process (imports included; `baseline`: "
          "the imports alone). fs calls: strace of the operation (openat, stat family, getdents64, ...). "
          "The machine is shared (2 cores, load average in `load_avg` of bench/scale_raw.json): CPU seconds are "
          "the steadier figure.", "",
          table(["layout", "videos", "plan s", "plan CPU s", "peak RSS MB", "baseline RSS MB", "fs calls",
                 "index objects", "done + failed"], body), ""]
    if proj:
        md += ["Projected to 1e7 (affine through the two largest sizes):", "",
               table(["layout", "metric", "from", "growth per 1e6 videos", "at N2", "1e7 (projected)"], proj), ""]
    md += ["Targets of issue 23 at 1e6: planning <= 30 s, peak RSS <= 1 GiB; at 1e7 <= 10 min, <= 2 GiB."]
    if write:
        record("Archive scale (issue 23): streamed rerun planning, today's layout and Delta", "\n".join(md), flat)
        print("\n".join(md))
    return flat


def report_delta_compact(write: bool = True) -> dict[str, Any]:
    """`exvad compact` on the Delta layouts: objects per video before and after (every object
    under the index: data files and `_delta_log` entries), the compaction's wall time, CPU and
    driver peak RSS. Keys: `scale_delta100_*` for the layout of files of 100 videos (`delta`),
    `scale_blocks_*` for the job's default blocks of 16 videos a commit (`delta_blocks`, the
    `videos` and `errors` tables alone). Returns the keys; `write`: also record the section."""
    from _results import record, table

    rows = [r for r in _load_raw() if r["backend"] == "local" and r["layout"] in ("delta", "delta_blocks")
            and not r.get("tables")]  # the two-table rows (report_job_tables: the five tables)
    by = {(r["layout"], r["op"], r["n"]): r for r in rows}
    flat: dict[str, Any] = {}
    body = []
    for layout, prefix in (("delta", "scale_delta100_"), ("delta_blocks", "scale_blocks_")):
        for n in sorted(n for (lay, op, n) in by if lay == layout and op == "compact"):
            b, c, p = by[(layout, "build", n)], by[(layout, "compact", n)], by.get((layout, "plan_compacted", n))
            label = _label(n)
            after = round(c["objects_after"] / n, 4)
            flat[f"{prefix}objects_per_video@{label}"] = b["objects_per_video"]
            flat[f"{prefix}objects_per_video_compacted@{label}"] = after
            for metric in ("s", "cpu_s", "peak_rss_mb"):
                flat[f"{prefix}compact_{metric}@{label}"] = c[metric]
            if p:
                flat[f"{prefix}plan_compacted_s@{label}"] = p["s"]
            files = {t: (v["files_before"], v["files_after"], v["vacuumed"]) for t, v in c["compacted"].items()}
            body.append([layout, label, f"{b['objects']:,}", b["objects_per_video"], f"{c['objects_after']:,}", after,
                         " ".join(f"{t} {a}->{z}" for t, (a, z, _) in files.items()),
                         sum(v for _, _, v in files.values()), f"{c['s']:.3g}", f"{c['cpu_s']:.3g}",
                         f"{c['peak_rss_mb']:,.0f}", "-" if p is None else f"{p['s']:.3g}"])
    if not body:
        return {}
    md = ["`exvad compact` (exvad_ray/index/compaction.py: delta-rs optimize, full vacuum, checkpoint, log entries "
          "older than the retention deleted) on the "
          "`videos` and `errors` Delta tables, local disk, retention 0 (the index as it is once the retention has "
          "passed; with the default 7 days nothing is deleted right after a compaction). `delta`: one file per "
          "(date, camera) partition of 100 videos, a commit per 1e5 videos (the layout of the planning rows). "
          "`delta_blocks`: as the job writes by default, a block of 16 videos written as one file per partition "
          "and committed as one batch. Objects: every object under the index, data files and `_delta_log` entries "
          "(commits, checkpoints). Peak RSS of the child process, imports included.", "",
          table(["layout", "videos", "objects before", "per video", "objects after", "per video after",
                 "snapshot files before->after", "files vacuumed", "compact s", "CPU s", "peak RSS MB",
                 "plan after s"], body), ""]
    if write:
        record("Archive scale (issue 23): Delta compaction", "\n".join(md), flat)
        print("\n".join(md))
    return flat


JOB_SECTION = "Archive scale (issue 23): Delta tables as the job writes them"


def report_job_tables() -> None:
    """The index as the archive job writes it (`delta_blocks` rows with `tables`: all five tables,
    a commit per batch of 16 videos): every operation, local disk and the local S3 server. Keys: the
    issue's names (`scale_plan_s@1e6`, `scale_objects_per_video@1e6`, `scale_rescore_plan_s@1e6`,
    ...: `scale_<op>_<metric>@N`, `scale_s3_<op>_<metric>@N`); the Delta layout of files of 100
    videos that held some of these names before moves to `scale_delta100_*` (`report_streamed`,
    `report_delta_compact`), and a name only it had is dropped. 1e7: affine through the two largest
    local sizes."""
    from _results import RESULTS_JSON, record, table

    rows = [r for r in _load_raw() if r["layout"] == "delta_blocks" and r.get("tables") == JOB_TABLES]
    if not rows:
        return
    by = {(r["backend"], r["op"], r["n"]): r for r in rows}
    flat: dict[str, Any] = {}
    md: list[str] = [
        "The index the archive job writes by default (`exvad process`, `--commit-every 16`; exvad_ray/index/batches.py, "
        "pipeline/commits.py), metadata only (`python bench/scale.py run --layout delta_blocks`): all five Delta "
        "tables; every batch of 16 finished videos written as one Parquet file per table and partition and "
        "committed to snippets, segments, captions, then videos (4 commits, the run's application transaction and "
        "the batch's video ids in each commit's metadata; an empty `segments` commit when no video of the batch "
        "has a segment); a failed video (1%) is an `errors` commit of its own; the run manifest. Rows as in today's "
        f"layout above (`video_tables`: {SNIPPETS_PER_VIDEO} snippets and {WINDOWS_PER_VIDEO} captions per video - "
        "today's builder uses 4, not 20 -, a segment for 5% of the videos, "
        f"{DIM}-d embeddings, null snippet vectors and thumbnails); partitions: videos, snippets, captions "
        "and segments date/camera (100 videos per date and camera; a segment's class is a column of its file), "
        "errors date; min/max statistics of the columns in schemas' `stats_cols` only. After the build, the id "
        "cache the job records (`index.idmap`: which videos each data file of every table holds; "
        "the job records it every 256 batches and at the end of its run, here once; its time is `id_cache_s`).",
        "",
        "Built by `build_job_tables`: the data files by the job's own file writer (`write_block` = "
        "`delta.write_files`), the log entries written as delta-rs writes them for `delta.commit` / `delta.append` "
        "(checked equal to the job's writer - same rows, files, commits and commit metadata per table at 200 videos - "
        "and read back by the real readers at 2,000: `read_table` counts of every table, a rerun plans nothing, a "
        "rescore places every video: `python bench/scale.py check --layout delta_blocks`). A checkpoint every 100 "
        "commits, as delta-rs's post-commit hook; at 1e6 only every 50th of them and each table's last are written "
        "(each is a copy of the table's state: writing all costs the build hours) and the others are counted in the "
        "objects. On the local S3 server the table tree is built on local disk and uploaded object by object "
        "(the same bytes under the same keys; the log's paths are relative to each table).",
        "",
        "Operations as above: `plan` (`plan_work` over the unchanged archive), `plan_replaced` (1% of the "
        "archive's objects replaced: `find_replaced` reads videos/errors (video_id, uri) a page of snapshot "
        "files at a time, then the old rows are deleted from every table (`deletes.delete_videos`: the files the id "
        "cache names are rewritten without them, one commit per table) and tombstones written; the new objects "
        "are deleted afterwards and `_last_checkpoint` put back), `rescore_plan` (`pipeline.rescore.plan_work` "
        "for a new scoring: the videos ids and the snippets files' ids from the id cache, filtered in Arrow; "
        "the snapshots' file lists from the log's paths, `delta.snapshot_paths`), "
        "`search` (a fresh `SegmentIndex(...).search(classes=[\"Fighting\"])`, no sidecar), `compact` (`exvad "
        "compact` on the five tables, retention 0: optimize, full vacuum, log trimmed, checkpoint), "
        "`plan_compacted`. Wall s (CPU s), peak RSS of the child (imports included), fs calls (strace) or S3 "
        "requests (counted by the server), load average of the shared 2-core machine when the figure was taken.",
        ""]
    sizes = sorted({r["n"] for r in rows})
    for backend in ("local", "s3"):
        ns = [n for n in sizes if (backend, "build", n) in by]
        if not ns:
            continue
        tag = "" if backend == "local" else "s3_"
        calls = "fs calls" if backend == "local" else "requests"
        body = []
        for op in ("baseline", *OPS):
            cells: list[Any] = [op]
            for n in ns:
                r = by.get((backend, op, n))
                if r is None:
                    cells += ["-", "-", "-", "-"]
                    continue
                gt = ">" if r.get("stopped") else ""
                cells += ["-" if op == "baseline" else f"{gt}{r['s']:.3g}"
                          + (f" ({r['cpu_s']:.3g})" if r.get("cpu_s") is not None else ""),
                          f"{gt}{r['peak_rss_mb']:,.0f}", r.get("requests_total", r.get("fs_calls_total", "-")),
                          r.get("load_avg", "-")]
                if op == "baseline" or r.get("stopped"):
                    continue
                label = _label(n)
                for metric in ("s", "cpu_s", "peak_rss_mb"):
                    if r.get(metric) is not None:
                        flat[f"scale_{tag}{op}_{metric}@{label}"] = r[metric]
                req = r.get("requests_total", r.get("fs_calls_total"))
                if req is not None:
                    flat[f"scale_{tag}{op}_{'requests' if backend == 's3' else 'fs_calls'}@{label}"] = req
            body.append(cells)
        head = ["operation"] + [f"{_label(n)}: {h}" for n in ns for h in ("s (CPU s)", "peak RSS MB", calls, "load")]
        md += [f"**{'Local disk' if backend == 'local' else 'Local S3 server (SeaweedFS on 127.0.0.1)'}**", "",
               table(head, body), ""]
        objs = []
        for n in ns:
            b, c = by[(backend, "build", n)], by.get((backend, "compact", n))
            label = _label(n)
            flat[f"scale_{tag}objects_per_video@{label}"] = b["objects_per_video"]
            line = (f"{label}: {b['objects']:,} objects ({b['objects_per_video']} per video; data files "
                    + ", ".join(f"{t} {v:,}" for t, v in b["objects_by_table"].items())
                    + (f"; {b['checkpoints_not_written']:,} checkpoints counted, not written" if b.get(
                        "checkpoints_not_written") else "") + f"), built in {b['s']:.0f} s")
            if c and not c.get("stopped"):
                after = round(c["objects_after"] / n, 4)
                flat[f"scale_{tag}objects_per_video_compacted@{label}"] = after
                line += (f"; after `exvad compact`: {c['objects_after']:,} objects ({after} per video; snapshot "
                         "files " + ", ".join(f"{t} {v['files_before']:,}->{v['files_after']:,}"
                                             for t, v in c["compacted"].items()) + ")")
            rep = by.get((backend, "plan_replaced", n))
            if rep and not rep.get("stopped"):
                line += (f"; 1% replaced: {rep['changed']:,} found replaced, their rows deleted from every table "
                         f"({rep['objects_delta']:,} objects written)")
            objs.append(f"- {line}")
        md += [*objs, ""]
    # 1e7 (and 1e6 where not measured): affine through the two largest local sizes
    proj = []
    for op in OPS:
        ns = [n for n in sizes if ("local", op, n) in by and not by[("local", op, n)].get("stopped")]
        if len(ns) < 2:
            continue
        n1, n2 = ns[-2], ns[-1]
        for metric in ("s", "cpu_s", "peak_rss_mb"):
            x1, x2 = float(by[("local", op, n1)][metric]), float(by[("local", op, n2)][metric])
            slope = (x2 - x1) / (n2 - n1)
            ys = []
            for target in (1e6, 1e7):
                if target <= n2:
                    ys.append("measured")
                    continue
                y = round(x2 + slope * (target - n2), 1)
                flat[f"scale_{op}_{metric}@{_label(int(target))}_projected"] = y
                ys.append(y)
            proj.append([op, metric, f"{_label(n1)}->{_label(n2)}", round(slope * 1e6, 1), x2, *ys])
    bs = [n for n in sizes if ("local", "build", n) in by]
    if len(bs) >= 2:
        n1, n2 = bs[-2], bs[-1]
        o1, o2 = by[("local", "build", n1)]["objects"], by[("local", "build", n2)]["objects"]
        y = o2 + (o2 - o1) / (n2 - n1) * (1e7 - n2)
        flat["scale_objects_per_video@1e7_projected"] = round(y / 1e7, 4)
    if proj:
        md += ["**Projected** (local disk) from the measured growth: affine through the two largest measured sizes, "
               "y(N) = y2 + (y2 - y1) (N - N2) / (N2 - N1) (a fixed cost plus a cost per video):", "",
               table(["operation", "metric", "from", "growth per 1e6 videos", "at N2", "1e6", "1e7 (projected)"],
                     proj), ""]
    md += _job_targets(flat)
    md += ["**What it says** (the job's layout):", "", *JOB_FINDINGS, ""]
    # the names now hold the job's layout: the Delta layout of files of 100 videos moves to
    # scale_delta100_*, and a name only that layout had is dropped
    old = {**report_streamed(write=False), **report_delta_compact(write=False)}
    flat.update({k: v for k, v in old.items() if k.startswith("scale_delta100_")})
    if os.path.exists(RESULTS_JSON):  # this layout's names not computed now (a projection since measured...)
        with open(RESULTS_JSON) as f:
            stale = {k for k in json.load(f) if _job_key(k)} - set(flat)
        with open(RESULTS_JSON) as f:
            data = json.load(f)
        with open(RESULTS_JSON, "w") as f:
            json.dump({k: v for k, v in data.items() if k not in stale}, f, indent=1, sort_keys=True)
            f.write("\n")
    md += ["Keys in bench/results.json: `scale_<op>_<metric>@N` (local disk) and `scale_s3_<op>_<metric>@N` are this "
           "layout, the index the job writes; `scale_objects_per_video[_compacted]@N` counts every object under the "
           "index (data files, commits, checkpoints, the manifest). The Delta layout of the sections above (one "
           "file per 100 videos, a commit per 1e5: videos and errors only) held `scale_plan_*`, "
           "`scale_objects_per_video*`, `scale_compact_*` and `scale_plan_compacted_*` before; its figures are now "
           "`scale_delta100_*` (same values). `scale_blocks_*`: the same blocks of 16 with the videos and errors "
           "tables alone (section \"Delta compaction\")."]
    record(JOB_SECTION, "\n".join(md), flat)
    print("\n".join(md))


JOB_FINDINGS = [
    "- Objects: about 0.53 per video before compaction (target <= 1: met): 4 log entries per batch of 16 videos "
    "(0.25 per video), one data file per batch and partition in snippets, captions and videos (0.07 each), "
    "segments (0.05), errors (0.01 file + 0.01 commit); the id cache adds a few fragments per table. After "
    "`exvad compact` 0.0401 per video at 1e6 and 0.0405 at 1e5 (target <= 0.05: met): one file per date/camera "
    "partition in videos, snippets, captions and segments (100 videos per camera-day here), the log to its "
    "checkpoint.",
    "- Compaction merges each partition folder's small files itself (`index.merges`: plain Parquet over the log's "
    "paths, one commit per 2,000 files): 24 s at 1e5 and 369 s (534 CPU s, 830 MB) at 1e6 for all five tables. "
    "delta-rs's `optimize.compact` spends about 24 ms per merged file: 185 s at 1e5, and at 1e6 its `videos` "
    "table alone took 27 minutes, the run being stopped after 45 minutes.",
    "- The rerun's planning no longer opens a data file: the done set comes from the id cache (which videos each "
    "data file holds, recorded by the job as it commits) and the snapshot's file list from the log's paths "
    "(`delta.snapshot_paths`: the checkpoint's add.path column and the commits after it). At 1e6: 14.4 s "
    "(14.0 CPU s), 328 MB (was 68.7 s, 585 MB before the id cache): most of it is listing the archive's 1e6 "
    "objects. On S3 at 1e4 89 requests, at 1e5 318 (108 LISTs of the archive, 210 GETs).",
    "- Rescore planning at 1e6: 5.1 s, 625 MB (was 127 s): the snippets files' ids from the id cache, filtered in "
    "Arrow and grouped by file; 398 requests on S3 at 1e5.",
    "- Memory per video in the planning's growth 1e5->1e6: 86 bytes (328 - 250 MB; the done set's sorted 16-byte "
    "keys grown in place, the snapshot's paths, a row group of the cache at a time); projected to 1e7: about "
    "1.1 GB and 144 s (targets 2 GiB and 10 minutes: met).",
    "- A rerun with 1% replaced deletes the replaced videos' rows by rewriting only the files the id cache names "
    "(`deletes.delete_videos`, one commit per table per 2,000 files): 10.0 s and 416 MB at 1e5, 123 s and 700 MB "
    "at 1e6 (10,000 videos in five tables). delta-rs's predicate delete, now the fallback, reads every file "
    "(random ids: min/max statistics prune nothing): 77 s and 1.3 GB at 1e5, projected 13 minutes and 10 GB at "
    "1e6.",
    "- Search (a class query without the sidecar): 79 s and 779 MB at 1e6; on S3 it is slow, 507 s and 149,537 "
    "GETs at 1e5 (DuckDB over fsspec reads every videos file's class_names and every segments file of the "
    "query's partitions). The page's similarity search uses the vector sidecar instead.",
    "- On S3 at 1e5 (new delete and merge): 1% replaced 60.7 s and 48,561 requests (was 451 s and 98,284 with "
    "delta-rs's delete), compaction 141 s and 134,702 requests (was 292 s and 100,165 with delta-rs's optimize: "
    "the merge asks each small file's size, a HEAD, before reading it). The other S3 rows and the search rows "
    "were measured before these two changes.",
    "- Machine shared: the load average of each row is in bench/scale_raw.json (1e6 rows at 2.4-3.2).",
]


def _job_key(key: str) -> bool:
    """A results.json key of `report_job_tables`' layout (the other `scale_*` prefixes are other layouts')."""
    return key.startswith("scale_") and not key.startswith(("scale_today_", "scale_blocks_", "scale_delta100_"))


def _job_targets(flat: dict[str, Any]) -> list[str]:
    """Issue 23's targets, met or missed, from the keys `report_job_tables` computed."""
    def get(key: str) -> Any:
        return flat.get(key)

    def verdict(value: Any, limit: float, unit: str, what: str, key: str) -> str:
        if value is None:
            return f"- {what}: not measured (`{key}`)"
        return (f"- {what} <= {limit:g} {unit}: {value:,.4g} {unit} (`{key}`): "
                f"{'met' if float(value) <= limit else 'MISSED'}")

    lines = ["**Targets of issue 23** (this shared 2-core machine; the job's layout):", ""]
    comp = [k for k in flat if k.startswith("scale_objects_per_video_compacted@") and "_s3_" not in k]
    comp_key = max(comp, key=lambda k: _n(k.split("@")[1])) if comp else "scale_objects_per_video_compacted@1e6"
    lines += [verdict(get("scale_plan_s@1e6"), 30, "s", "rerun planning at 1e6", "scale_plan_s@1e6"),
              verdict(get("scale_plan_peak_rss_mb@1e6"), 1024, "MB", "its peak RSS", "scale_plan_peak_rss_mb@1e6"),
              verdict(get("scale_objects_per_video@1e6"), 1, "objects", "objects per video before compaction at 1e6",
                      "scale_objects_per_video@1e6"),
              verdict(get(comp_key), 0.05, "objects", f"after compaction ({comp_key.split('@')[1]})", comp_key),
              verdict(get("scale_rescore_plan_s@1e6"), 10, "s", "rescore planning at 1e6", "scale_rescore_plan_s@1e6"),
              verdict(get("scale_plan_s@1e7_projected"), 600, "s", "rerun planning at 1e7 (projected)",
                      "scale_plan_s@1e7_projected"),
              verdict(get("scale_plan_peak_rss_mb@1e7_projected"), 2048, "MB", "its peak RSS at 1e7 (projected)",
                      "scale_plan_peak_rss_mb@1e7_projected"), ""]
    return lines


# ------------------------------------------------------------------------------------- CLI


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="build and measure")
    r.add_argument("--layout", choices=sorted(LAYOUTS), default="today")
    r.add_argument("--sizes", default="1e4", help="comma-separated video counts")
    r.add_argument("--backend", choices=("local", "s3"), default="local")
    r.add_argument("--root", default="/tmp/exvad-scale", help="where archives and indexes are built")
    r.add_argument("--ops", default=",".join(OPS))
    r.add_argument("--no-compact-above", type=float, default=1e5,
                   help="skip compact and plan_compacted above this size (hours of per-file reads)")
    r.add_argument("--no-strace", action="store_true", help="skip the file-system call count (local)")
    r.add_argument("--keep", action="store_true", help="keep the built archive and index")
    r.add_argument("--reuse", action="store_true",
                   help="local: use the archive (and index) a --keep run left under --root instead of rebuilding")
    r.add_argument("--rss-limit-mb", type=float, default=RSS_LIMIT_MB, help="stop a measurement past this RSS")
    r.add_argument("--time-limit-s", type=float, default=TIME_LIMIT_S, help="stop a measurement after this long")
    m = sub.add_parser("measure", help="(internal) one operation in this process")
    m.add_argument("--layout", default="today")
    m.add_argument("--op", required=True)
    m.add_argument("--index", required=True)
    m.add_argument("--archive", required=True)
    m.add_argument("--out", required=True)
    rp = sub.add_parser("report", help="write RESULTS.md / results.json from bench/scale_raw.json")
    rp.add_argument("--md", default=None, help="write the Markdown sections to this file instead of bench/RESULTS.md")
    rp.add_argument("--only", choices=("job",), default=None,
                    help="job: only the section of the index as the job writes it (report_job_tables)")
    c = sub.add_parser("check", help="bulk layout vs the job's writer")
    c.add_argument("--root", default="/tmp/exvad-scale")
    c.add_argument("--layout", choices=("today", "delta_blocks"), default="today")
    c.add_argument("--n", type=_n, default=2000, help="delta_blocks: videos of the readers' check")
    args = ap.parse_args()
    if args.cmd == "measure":
        _child(args)
    elif args.cmd == "check":
        check_job_tables(args.root, n=args.n) if args.layout == "delta_blocks" else check(args.root)
    elif args.cmd == "report":
        if args.md:
            import _results

            _results.RESULTS_MD = os.path.abspath(args.md)
        report_job_tables() if args.only == "job" else report()
    else:
        globals().update(RSS_LIMIT_MB=args.rss_limit_mb, TIME_LIMIT_S=args.time_limit_s)
        for n in [_n(s) for s in args.sizes.split(",")]:
            ops = [o for o in args.ops.split(",") if o]
            unknown = [o for o in ops if o not in LAYOUTS[args.layout].ops]
            if unknown:
                raise SystemExit(f"--layout {args.layout} runs {', '.join(LAYOUTS[args.layout].ops)}, not {unknown}")
            if n > args.no_compact_above:
                ops = [o for o in ops if o not in ("compact", "plan_compacted")]
            rows = run_scale(args.layout, n, args.backend, args.root, ops, not args.no_strace, args.keep, args.reuse)
            # what this run measured replaces the same rows only (delta_blocks rows of two tables, without
            # `tables`, stay: the scale_blocks_* keys come from them)
            new = {(r["op"], r.get("planner"), r.get("tables")) for r in rows}
            raw = [x for x in _load_raw() if not (x["layout"] == args.layout and x["backend"] == args.backend
                                                 and x["n"] == n and (x["op"], x.get("planner"), x.get("tables")) in new)]
            with open(RAW, "w") as f:
                json.dump(raw + rows, f, indent=1, default=str)
                f.write("\n")


if __name__ == "__main__":
    main()
