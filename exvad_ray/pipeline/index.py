"""The Parquet indexes: per-video files with deterministic names, done-set listing, compaction.

Layout: ``INDEX/<table>/<k>=<v>/.../part-<video_id>.parquet``. A retried task or a rerun writes the
same names, so it replaces rather than duplicates. A video's `videos` file is written last: its
presence means every other table holds the video. `compact` merges a partition's small files into
``compact-<digest>.parquet`` (the digest names the merged inputs) and then deletes the inputs; the
merged file records its inputs, so a compaction interrupted between the two steps is finished (not
repeated) by the next one, and readers never see a video twice after it completes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import uuid
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from exvad_ray import storage
from exvad_ray.pipeline.schemas import arrow_schema, conform, partition_cols

PART_RE = re.compile(r"part-([0-9a-f-]{36})(?:-[^/]*)?\.parquet$")
COMPACT_PREFIX = "compact-"


def partition_path(table: str, values: dict[str, str]) -> str:
    return "/".join(f"{k}={values[k]}" for k in partition_cols(table))


def file_uri(index: str, table: str, values: dict[str, str], video_id: str, suffix: str = "") -> str:
    parts = [table, partition_path(table, values), f"part-{video_id}{suffix}.parquet"]
    return storage.join(index, *[p for p in parts if p])


def _to_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def write_table_file(uri: str, table: pa.Table) -> None:
    """Write one Parquet file atomically (S3 PUT is atomic; locally write-then-rename)."""
    data = _to_bytes(table)
    if storage.is_remote(uri):
        storage.write_bytes(uri, data)
        return
    path = storage.normalize(uri)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = os.path.join(os.path.dirname(path), f".tmp-{uuid.uuid4().hex}")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def write_video_tables(index: str, video_id: str, tables: dict[str, tuple[dict[str, str], Any]]) -> None:
    """Write a video's rows: `tables` maps table -> (partition values, columns). `videos` goes last.

    `segments` may be given as a list of (values, columns) pairs (one file per class partition).
    """
    order = sorted(tables, key=lambda t: t == "videos")
    for table in order:
        items = tables[table]
        for values, cols in (items if isinstance(items, list) else [items]):
            write_table_file(file_uri(index, table, values, video_id), conform(table, cols))


def _list_files(index: str, table: str) -> list[str]:
    root = storage.join(index, table)
    fs, path = storage.filesystem(root)
    try:
        if not fs.exists(path):
            return []
        files = fs.find(path)
    except FileNotFoundError:
        return []
    prefix = "s3://" if storage.is_remote(root) else ""
    return sorted(prefix + f for f in files if f.endswith(".parquet") and "/.tmp-" not in f)


def done_video_ids(index: str, tables: Iterable[str] = ("videos", "errors")) -> set[str]:
    """Ids of videos already finished (a `videos` row, or an `errors` row), from file names and,
    for compacted files, their recorded inputs: no Parquet data is read."""
    ids: set[str] = set()
    for table in tables:
        for f in _list_files(index, table):
            m = PART_RE.search(f)
            if m:
                ids.add(m.group(1))
            elif os.path.basename(f).startswith(COMPACT_PREFIX):
                ids.update(_compacted_ids(f))
    return ids


def _compacted_ids(uri: str) -> list[str]:
    with storage.open_file(uri) as f:
        meta = pq.read_metadata(f).metadata or {}
    return json.loads(meta.get(b"exvad.video_ids", b"[]"))


def read_table(index: str, table: str, columns: list[str] | None = None, current: bool = True) -> pa.Table:
    """Read a whole table with its hive partition columns (empty table with the schema if none).

    `current`: only the rows that still describe the archive (supersede rules, pipeline/supersede.py)."""
    if current and "video_id" in arrow_schema(table).names:
        from exvad_ray.pipeline.supersede import current_rows

        want = None if columns is None else list(dict.fromkeys(columns + ["video_id"] + (
            ["processed_at"] if table == "errors" else [])))
        rows = current_rows(index, table, read_table(index, table, want, current=False))
        return rows if columns is None else rows.select(columns)
    files = _list_files(index, table)
    fs, root = storage.arrow_filesystem(storage.join(index, table))
    schema = arrow_schema(table)
    part = partition_cols(table)
    if not files:
        fields = list(schema) + [pa.field(c, pa.string()) for c in part]
        return pa.schema(fields).empty_table() if columns is None else pa.schema(fields).empty_table().select(columns)
    paths = [storage.arrow_filesystem(f)[1] for f in files]
    partitioning = pads.partitioning(pa.schema([(c, pa.string()) for c in part]), flavor="hive") if part else None
    ds = pads.dataset(paths, schema=pa.schema(list(schema) + [pa.field(c, pa.string()) for c in part]),
                      format="parquet", filesystem=fs, partitioning=partitioning, partition_base_dir=root)
    return ds.to_table(columns=columns)


def compact(index: str, tables: Iterable[str] = ("videos", "snippets", "segments", "captions", "errors"),
            min_files: int = 2) -> dict[str, int]:
    """Merge each partition's per-video files into one file, after deleting superseded rows
    (pipeline/supersede.py); returns files merged per table."""
    from exvad_ray.pipeline.supersede import purge

    purge(index)
    merged: dict[str, int] = {}
    for table in tables:
        by_dir: dict[str, list[str]] = defaultdict(list)
        for f in _list_files(index, table):
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
                    tables_.append(pq.read_table(fh).cast(arrow_schema(table)))
                ids.append(PART_RE.search(f).group(1))
            fresh = pa.array(sorted(set(ids)))
            for f in files:
                if os.path.basename(f).startswith(COMPACT_PREFIX) and f not in finished:
                    with storage.open_file(f) as fh:
                        old = pq.read_table(fh).cast(arrow_schema(table))
                    # a video rewritten since the last compaction: its new file wins
                    old = old.filter(pc.invert(pc.is_in(old.column("video_id"), value_set=fresh)))
                    tables_.append(old.replace_schema_metadata(None))
                    ids.extend(_compacted_ids(f))
            old_compacted = [f for f in files if os.path.basename(f).startswith(COMPACT_PREFIX)]
            ids = sorted(set(ids))
            digest = hashlib.sha1("\n".join(ids).encode()).hexdigest()[:16]
            merged_table = pa.concat_tables([t.replace_schema_metadata(None) for t in tables_])
            sources = [os.path.basename(f) for f in parts + old_compacted]
            merged_table = merged_table.replace_schema_metadata({
                **(merged_table.schema.metadata or {}),
                b"exvad.video_ids": json.dumps(ids).encode(),
                b"exvad.sources": json.dumps(sources).encode(),
            })
            target = f"{directory}/{COMPACT_PREFIX}{digest}.parquet"
            write_table_file(target, merged_table)
            for f in parts + old_compacted:
                if f != target:
                    _remove(f)
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
                _remove(other)
                done.add(other)
    return done


def _remove(uri: str) -> None:
    fs, path = storage.filesystem(uri)
    fs.rm(path)
