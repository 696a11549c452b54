"""Compaction: merge a partition's per-video files into one file, safely under interruption.

`compact` merges a partition's small files into ``compact-<digest>.parquet`` (the digest names the
merged inputs) and then deletes the inputs; the merged file records its inputs, so a compaction
interrupted between the two steps is finished (not repeated) by the next one, and readers never see
a video twice after it completes. An index of an older schema version is compacted in its own schema.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from exvad_ray import storage
from exvad_ray.index.schemas import VIDEO_TABLES, arrow_schema
from exvad_ray.index.store import (
    COMPACT_PREFIX, PART_RE, VERSION_KEY, compacted_ids, index_version, list_files, remove, write_table_file,
)


def compact(index: str, tables: Iterable[str] = VIDEO_TABLES,
            min_files: int = 2) -> dict[str, int]:
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
