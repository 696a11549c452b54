"""Compaction of an index: Delta tables through optimize + vacuum, today's layout by merging files.

Delta tables (issue 23; `delta.is_delta`): each partition's small files are merged
(`merges.merge_small_files`: plain Parquet over the log's paths, one commit per 2,000 files,
marked as an optimize; delta-rs's optimize where the log or layout is not one it follows, or, with
z-order, to rewrite each partition clustered on columns inside it), then vacuum deletes
what no version younger than the retention references - the files compaction and deletes
replaced, and files of batches a killed job wrote but never committed - then a checkpoint, after
which the log entries older than the same retention are deleted too (`delta.set_retention`): a
version whose files vacuum deleted cannot be read anyway, and the job's log is one JSON per table
per batch of 16 videos, far more objects than the compacted data files. A reader holding an older
snapshot's file list, or time-travelling to an older version, keeps working as long as that
snapshot is younger than the retention (Delta's default: 7 days).

The log is what `index.batches.repair` reads to find the videos of a batch a killed run committed
to some tables but not to `videos`: such batches are repaired first (as the job's next run would),
so that trimming the log cannot leave their rows behind for good.

Today's layout: `compact` merges a partition's per-video files into ``compact-<digest>.parquet``
(the digest names the merged inputs) and then deletes the inputs; the merged file records its
inputs, so a compaction interrupted between the two steps is finished (not repeated) by the next
one, and readers never see a video twice after it completes. An index of an older schema version
is compacted in its own schema. An index may hold tables of both layouts during the transition.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from exvad_ray import storage
from exvad_ray.errors import ExvadError
from exvad_ray.index import delta, idmap, merges
from exvad_ray.index.schemas import VIDEO_TABLES, arrow_schema
from exvad_ray.index.store import (
    COMPACT_PREFIX, PART_RE, VERSION_KEY, compacted_ids, index_version, list_files, remove, write_table_file,
)


DEFAULT_RETENTION_HOURS = 168  # Delta's own default (delta.deletedFileRetentionDuration, 7 days)
# z-order columns of each table: columns inside a partition (never a partition column: delta-rs
# refuses them), the ones readers filter on - time ranges within a camera's day and a video's rows
# by id. Not `class`: an older Delta `segments` is partitioned by it (one created now keeps it in
# its files, a camera-day's classes in one file after optimize)
ZORDER_COLUMNS: dict[str, tuple[str, ...]] = {
    "videos": ("recorded_at", "video_id"), "segments": ("start_at", "video_id"),
    "snippets": ("video_id", "start_s"), "captions": ("video_id", "window_index"),
    "errors": ("processed_at", "video_id"),
}


@dataclass(frozen=True)
class DeltaCompaction:
    """What compacting one Delta table did: data files in the snapshot before and after, files
    optimize added and removed from the snapshot, files vacuum deleted from storage."""

    files_before: int
    files_after: int
    added: int
    removed: int
    vacuumed: int
    z_order: tuple[str, ...] = ()

    def describe(self) -> str:
        how = f"z-ordered on {', '.join(self.z_order)}" if self.z_order else "optimized"
        return (f"{how}: {self.files_before} -> {self.files_after} files in the snapshot, "
                f"{self.vacuumed} files vacuumed")


def compact(index: str, tables: Iterable[str] = VIDEO_TABLES, min_files: int = 2,
            retention_hours: int = DEFAULT_RETENTION_HOURS, z_order: bool = False
            ) -> dict[str, int | DeltaCompaction]:
    """Compact each table (`exvad compact` passes `scorings.compact_tables`: the video tables and a
    Delta index's scoring tables): a Delta table by `compact_delta` (a `DeltaCompaction`), a table
    of today's layout by merging its partitions' per-video files (files merged, an int; superseded
    rows are deleted first). `retention_hours` and `z_order` apply to Delta tables only."""
    tables = list(tables)
    if retention_hours < 0:
        raise ExvadError(f"the retention is a number of hours >= 0 (got {retention_hours})")
    on_delta = [t for t in tables if delta.is_delta(index, t)]
    today = [t for t in tables if t not in on_delta]
    out: dict[str, int | DeltaCompaction] = {}
    if today:
        out.update(_compact_today(index, today, min_files))
    if on_delta:
        repair_killed_batches(index)
    for t in on_delta:
        out[t] = compact_delta(index, t, retention_hours, z_order)
    return {t: out[t] for t in tables}


def compact_delta(index: str, table: str, retention_hours: int = DEFAULT_RETENTION_HOURS,
                  z_order: bool = False) -> DeltaCompaction:
    """Optimize (or z-order on `ZORDER_COLUMNS`), vacuum with the retention, set the table's log
    and file retention to it, checkpoint and delete the log entries older than it: each a Delta
    operation committed with our commit metadata (`delta.optimize`, `delta.vacuum`,
    `delta.set_retention`, `delta.checkpoint`). Rows are unchanged: optimize rewrites files, never
    rows; deleted videos stay deleted (their rows are in no file of the snapshot).

    Why the log goes with the files: vacuum made the versions older than the retention unreadable
    (their files are gone), yet their commits would stay until `delta.logRetentionDuration` (30
    days by default) - at 16 videos a commit, more objects than the data itself. After this the
    log holds the checkpoint, ``_last_checkpoint`` and the commits younger than the retention.
    With a retention of 0 a reader opening the table at that very moment may miss a commit it
    listed (retry it): that retention is for tests and benchmarks, the default is 7 days."""
    before = len(delta.snapshot_files(index, table))
    cols = ZORDER_COLUMNS.get(table, ("video_id",)) if z_order else ()
    merged = None if cols else merges.merge_small_files(index, table)  # delta-rs's optimize is ~12x slower
    metrics = merged if merged is not None else delta.optimize(index, table, z_order=cols)
    stored = _stored_files(index, table)
    delta.vacuum(index, table, retention_hours)
    delta.set_retention(index, table, retention_hours)
    delta.checkpoint(index, table)
    if table.rsplit("/", 1)[-1] in idmap.WARM_TABLES:  # every file is new: record their ids now
        idmap.warm(index, [table])
    return DeltaCompaction(files_before=before, files_after=len(delta.snapshot_files(index, table)),
                           added=int(metrics.get("numFilesAdded") or 0),
                           removed=int(metrics.get("numFilesRemoved") or 0),
                           vacuumed=stored - _stored_files(index, table), z_order=cols)


def repair_killed_batches(index: str) -> dict[str, int]:
    """Repair the batches a killed run committed to some tables but not to `videos`
    (`index.batches.repair`, over the runs of the index's manifests: a run writes its manifest
    before its first batch) while the log still records their video ids. Returns what repair
    returns (videos whose rows were deleted, per table)."""
    from exvad_ray.index import batches
    from exvad_ray.index.runs import read_manifests

    if not all(delta.is_delta(index, t) for t in batches.BATCH_TABLES):
        return {}  # repair would create the missing tables; batches are committed to all of them
    runs = sorted({str(m["run_id"]) for m in read_manifests(index) if m.get("run_id")})
    return batches.repair(index, runs) if runs else {}


def _stored_files(index: str, table: str) -> int:
    """Data files stored under the table's folder (its log aside), listed: what vacuum deleted is
    the difference. Not vacuum's own list: its full mode lists every expired remove of the log
    again at each run, deleted long ago or not."""
    fs, path = storage.filesystem(delta.table_uri(index, table))
    if storage.is_remote(index):
        fs.invalidate_cache()
    return sum(1 for f in fs.find(path) if f.endswith(".parquet") and "/_delta_log/" not in f)


def _compact_today(index: str, tables: Iterable[str], min_files: int = 2) -> dict[str, int]:
    """Merge each partition's per-video files into one file, after deleting superseded rows
    (index/supersede.py); returns files merged per table."""
    from exvad_ray.index.supersede import purge

    purge(index)
    merged: dict[str, int] = {}
    version = index_version(index)
    for table in tables:
        by_dir: dict[str, list[str]] = defaultdict(list)
        for f in list_files(index, table):
            by_dir[f.rsplit("/", 1)[0]].append(f)
        count = 0
        for directory, files in by_dir.items():
            finished = _finish_interrupted(files)
            parts = [f for f in files if PART_RE.search(f) and f not in finished]
            if len(parts) < min_files:
                continue
            tables_, ids = [], []
            for f in parts:
                with storage.open_file(f) as fh:
                    tables_.append(pq.read_table(fh).cast(arrow_schema(table, version)))
                ids.append(PART_RE.search(f).group(1))
            fresh = pa.array(sorted(set(ids)))
            for f in files:
                if os.path.basename(f).startswith(COMPACT_PREFIX) and f not in finished:
                    with storage.open_file(f) as fh:
                        old = pq.read_table(fh).cast(arrow_schema(table, version))
                    # a video rewritten since the last compaction: its new file wins
                    old = old.filter(pc.invert(pc.is_in(old.column("video_id"), value_set=fresh)))
                    tables_.append(old.replace_schema_metadata(None))
                    ids.extend(compacted_ids(f))
            old_compacted = [f for f in files if os.path.basename(f).startswith(COMPACT_PREFIX)]
            ids = sorted(set(ids))
            digest = hashlib.sha1("\n".join(ids).encode()).hexdigest()[:16]
            merged_table = pa.concat_tables([t.replace_schema_metadata(None) for t in tables_])
            sources = [os.path.basename(f) for f in parts + old_compacted]
            merged_table = merged_table.replace_schema_metadata({
                **(merged_table.schema.metadata or {}),
                b"exvad.video_ids": json.dumps(ids).encode(),
                b"exvad.sources": json.dumps(sources).encode(),
                VERSION_KEY: str(version).encode(),
            })
            target = f"{directory}/{COMPACT_PREFIX}{digest}.parquet"
            write_table_file(target, merged_table)
            for f in parts + old_compacted:
                if f != target:
                    remove(f)
            count += len(parts)
        merged[table] = count
    return merged


def _finish_interrupted(files: list[str]) -> set[str]:
    """Delete inputs that an earlier, interrupted compaction already merged; return them."""
    done: set[str] = set()
    for f in files:
        if not os.path.basename(f).startswith(COMPACT_PREFIX):
            continue
        with storage.open_file(f) as fh:
            meta = pq.read_metadata(fh).metadata or {}
        sources = set(json.loads(meta.get(b"exvad.sources", b"[]")))
        for other in files:
            if other != f and os.path.basename(other) in sources:
                remove(other)
                done.add(other)
    return done
