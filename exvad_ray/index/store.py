"""The Parquet index tables: per-video files with deterministic names, the done set, reading.

Layout: ``INDEX/<table>/<k>=<v>/.../part-<video_id>.parquet``. A retried task or a rerun writes the
same names, so it replaces rather than duplicates. A video's `videos` file is written last: its
presence means every other table holds the video. Every file records the schema version it was
written with (``exvad.schema_version`` in the Parquet metadata), as does every run manifest; readers
check it (`index_version`), read older indexes under today's column names and refuse newer ones.
Compaction is in `exvad_ray.index.compaction`.
"""

from __future__ import annotations

import io
import json
import os
import re
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from exvad_ray import storage
from exvad_ray.errors import ExvadError
from exvad_ray.index.schemas import (
    SCHEMA_VERSION, VIDEO_TABLES, added_columns, arrow_schema, conform, partition_cols, renamed_columns,
)

PART_RE = re.compile(r"part-([0-9a-f-]{36})(?:-[^/]*)?\.parquet$")
COMPACT_PREFIX = "compact-"
VERSION_KEY = b"exvad.schema_version"


def partition_path(table: str, values: dict[str, str]) -> str:
    return "/".join(f"{k}={values[k]}" for k in partition_cols(table))


def file_uri(index: str, table: str, values: dict[str, str], video_id: str, suffix: str = "") -> str:
    parts = [table, partition_path(table, values), f"part-{video_id}{suffix}.parquet"]
    return storage.join(index, *[p for p in parts if p])


def _to_bytes(table: pa.Table) -> bytes:
    meta = dict(table.schema.metadata or {})
    meta.setdefault(VERSION_KEY, str(SCHEMA_VERSION).encode())
    table = table.replace_schema_metadata(meta)
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


def is_delta_index(index: str) -> bool:
    """Whether the index holds Delta tables (its `videos` table has a log) rather than today's
    per-video files. An index is one or the other; `exvad index upgrade` turns the old into the new."""
    from exvad_ray.index import delta

    return delta.is_delta(index, "videos")


def list_files(index: str, table: str) -> list[str]:
    """A table's data files: a Delta table's current snapshot (from its log: no listing, and never a
    file of a deleted row or of an uncommitted batch), else every part and compacted file listed."""
    from exvad_ray.index import delta

    if delta.is_delta(index, table):
        return sorted(delta.snapshot_files(index, table))
    root = storage.join(index, table)
    fs, path = storage.filesystem(root)
    try:
        if not fs.exists(path):
            return []
        files = fs.find(path)
    except FileNotFoundError:
        return []
    prefix = "s3://" if storage.is_remote(root) else ""
    return sorted(prefix + f for f in files if is_table_file(f))


def is_table_file(uri: str) -> bool:
    """A table's data file (not an unfinished write's temporary file)."""
    return uri.endswith(".parquet") and "/.tmp-" not in uri


def iter_table_files(index: str, table: str, page: int = 10_000) -> Iterator[list[str]]:
    """A table's data files a page at a time, in path order (so a partition folder's files are
    together): a Delta table's snapshot, else the listing, paged."""
    from exvad_ray.index import delta

    if delta.is_delta(index, table):
        files = sorted(delta.snapshot_files(index, table))
        for start in range(0, len(files), page):
            yield files[start:start + page]
        return
    for found in storage.iter_objects(storage.join(index, table), page=page, stat=False):
        yield [f for f, _ in found if is_table_file(f)]


def folder_files(index: str, table: str, rel: str, delta_table: bool | None = None) -> list[str]:
    """The data files of one partition folder (`rel`: ``k=v/k=v`` under the table): for a Delta
    table the snapshot's files with those partition values (a value the table keeps in its files,
    not in folders, selects by the files' statistics: filter the rows), else the folder's listing."""
    from exvad_ray.index import delta

    if delta_table if delta_table is not None else delta.is_delta(index, table):
        values = dict(part.split("=", 1) for part in rel.split("/") if "=" in part)
        return sorted(delta.snapshot_files(index, table, partitions=values or None))
    return [f for page in storage.iter_objects(storage.join(index, table, rel), recursive=False, stat=False)
            for f, _ in page if is_table_file(f)]


def file_video_ids(uri: str) -> list[str]:
    """The videos a per-video layout's table file holds: a part file's id from its name, a compacted
    file's recorded ids (its footer read); none for any other file. (A Delta table's files hold
    blocks of videos under names that say nothing: `index.idmap` knows their ids.)"""
    m = PART_RE.search(uri)
    if m:
        return [m.group(1)]
    return compacted_ids(uri) if os.path.basename(uri).startswith(COMPACT_PREFIX) else []


def done_video_ids(index: str, tables: Iterable[str] = ("videos", "errors")) -> set[str]:
    """Ids of videos already finished (a `videos` row, or an `errors` row), as a Python set (small
    indexes, tests); `done_ids` is the bounded form a rerun's planning uses."""
    ids: set[str] = set()
    for table in tables:
        ids.update(done_ids(index, table).to_pylist())
    return ids


def done_ids(index: str, table: str) -> pa.Array:
    """The video ids a table holds, as one Arrow string array (an id may repeat): ~40 bytes per
    video instead of a Python string and a set slot (~150). `done_set` is the planner's form."""
    chunks = list(iter_done_ids(index, table))
    return pa.concat_arrays(chunks) if chunks else pa.array([], pa.string())


def done_set(index: str, table: str, exclude: IdSet | None = None) -> IdSet:
    """The video ids a table holds as an `IdSet` (16 bytes per video), built from `iter_done_ids`
    a chunk at a time so that no string array of the whole table is ever held; ids in `exclude`
    left out (the videos that failed and were not finished since)."""
    return IdSet.from_chunks(iter_done_ids(index, table), exclude)


def iter_done_ids(index: str, table: str, page: int = 10_000) -> Iterator[pa.Array]:
    """The video ids a table holds, a chunk (Arrow strings) at a time. The one place that tells
    the layouts apart: a Delta table (``<table>/_delta_log``) gives its snapshot's `video_id`
    column (that column only, a file at a time); today's layout gives the ids in its file names
    and, for compacted files, the ids their metadata records, listed a page of files at a time
    (no Parquet data read)."""
    from exvad_ray.index import delta

    if delta.is_delta(index, table):
        from exvad_ray.index import idmap

        yield from idmap.iter_video_ids(index, table)
        return
    for files in storage.iter_objects(storage.join(index, table), page=page, stat=False):
        yield pa.array([v for f, _ in files if is_table_file(f) for v in file_video_ids(f)], pa.string())


_HEX = np.full(256, 255, np.uint8)
_HEX[np.frombuffer(b"0123456789abcdef", np.uint8)] = np.arange(16, dtype=np.uint8)
_HEX_POS = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])
_DASH_POS = np.array([8, 13, 18, 23])


def uuid_keys(ids: pa.Array | pa.ChunkedArray, chunk: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
    """Video ids (canonical lowercase uuid strings) as (n, 2) uint64 keys whose order is the ids'
    order, and a mask of the ids that are such strings (the others get zero keys). Vectorised."""
    arr = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    arr = arr.cast(pa.string())
    n = len(arr)
    keys = np.zeros((n, 2), np.uint64)
    ok = np.zeros(n, bool)
    for start in range(0, n, chunk):
        part = arr.slice(start, chunk)
        is36 = pc.fill_null(pc.equal(pc.binary_length(part), 36), False).to_numpy(zero_copy_only=False)
        if not is36.any():
            continue
        sel = part.filter(pa.array(is36)) if not is36.all() else part
        first = int(np.frombuffer(sel.buffers()[1], np.int32)[sel.offset])  # 36-byte rows, back to back
        raw = np.frombuffer(sel.buffers()[2], np.uint8, count=36 * len(sel), offset=first).reshape(-1, 36)
        nib = _HEX[raw[:, _HEX_POS]]
        good = (nib != 255).all(axis=1) & (raw[:, _DASH_POS] == ord("-")).all(axis=1)
        packed = ((nib[:, 0::2] << 4) | nib[:, 1::2]).astype(np.uint8)
        k = np.ascontiguousarray(packed).view(">u8").astype(np.uint64)
        k[~good] = 0
        where = np.flatnonzero(is36) + start
        keys[where] = k
        ok[where] = good
    return keys, ok


class IdSet:
    """A set of video ids held as one sorted array of their 16 bytes (numpy ``S16``, big-endian
    halves: byte order is the ids' order), looked up a page at a time with a binary search: built
    once, unlike `pyarrow.compute.is_in`, which rebuilds its hash table from the whole value set at
    every call (0.7 s per page against 1e6 ids). Built into one buffer grown in place and sorted in
    place, so that the driver's peak is about 16 bytes per id, not the ~50 of sorting two key
    columns through an index array (measured on 1e6 ids). Ids that are not uuid strings (none the
    package writes) are kept in a small Python set."""

    GROW = 1.5  # the buffer's growth factor (numpy's resize reallocates in place where it can)

    def __init__(self, ids: pa.Array | pa.ChunkedArray | None = None):
        self._keys = np.zeros(0, "S16")
        self._other: set[str] = set()
        if ids is not None:
            self._fill([ids])

    @classmethod
    def from_chunks(cls, chunks: Iterable[pa.Array], exclude: IdSet | None = None) -> IdSet:
        """The set of the ids of every chunk, less those in `exclude`: each chunk becomes keys
        as it comes (the strings are not kept)."""
        out = cls()
        out._fill(chunks, exclude)
        return out

    def _fill(self, chunks: Iterable[pa.Array | pa.ChunkedArray], exclude: IdSet | None = None,
              batch: int = 65_536) -> None:
        buf = np.zeros(0, "S16")
        n = 0
        pending: list[pa.Array] = []
        size = 0

        def flush() -> None:
            nonlocal buf, n
            arr = pa.concat_arrays([c for p in pending for c in (p.chunks if isinstance(p, pa.ChunkedArray) else [p])])
            pending.clear()
            keys, ok = _s16(*uuid_keys(arr))
            keep = ok if exclude is None else ok & ~exclude._search(keys)
            got = keys[keep]
            if n + len(got) > len(buf):
                buf.resize(max(n + len(got), int(len(buf) * self.GROW), batch), refcheck=False)
            buf[n:n + len(got)] = got
            n += len(got)
            if not ok.all():
                rest = arr.filter(pa.array(~ok)).drop_null()
                if exclude is not None:
                    rest = rest.filter(pa.array(~exclude.contains(rest)))
                self._other.update(rest.to_pylist())

        for chunk in chunks:
            pending.append(chunk)
            size += len(chunk)
            if size >= batch:
                flush()
                size = 0
        if pending:
            flush()
        buf.resize(n, refcheck=False)
        buf.sort()  # in place
        self._keys = buf

    def __len__(self) -> int:
        return len(self._keys) + len(self._other)

    def contains_keys(self, raw: np.ndarray) -> np.ndarray:
        """A boolean mask: which of these ids, given as their 16 bytes ((n, 16) uint8, e.g.
        `storage.VideoEntry.key`), are in the set."""
        return self._search(np.ascontiguousarray(raw, dtype=np.uint8).view("S16").reshape(-1))

    def contains(self, ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """A boolean mask: which of `ids` (strings) are in the set."""
        keys, ok = _s16(*uuid_keys(ids))
        hit = self._search(keys) & ok
        if self._other and not ok.all():
            rest = np.flatnonzero(~ok)
            values = ids.take(pa.array(rest)).to_pylist()
            hit[rest] = [v in self._other for v in values]
        return hit

    def _search(self, keys: np.ndarray) -> np.ndarray:
        if not len(self._keys):
            return np.zeros(len(keys), bool)
        at = np.searchsorted(self._keys, keys).clip(max=len(self._keys) - 1)
        return self._keys[at] == keys


def _s16(keys: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`uuid_keys`' (n, 2) uint64 keys as n ``S16`` values (big-endian halves: byte order = key order)."""
    return np.ascontiguousarray(keys.astype(">u8")).view("S16").reshape(-1), ok


def compacted_ids(uri: str) -> list[str]:
    with storage.open_file(uri) as f:
        meta = pq.read_metadata(f).metadata or {}
    return json.loads(meta.get(b"exvad.video_ids", b"[]"))


def read_stored(index: str, table: str, columns: list[str] | None = None) -> pa.Table:
    """Read every stored row of a table with its hive partition columns (empty table with the schema if
    none), under today's column names whatever schema version wrote the index. Superseded rows
    included: `read_table` (index/supersede.py) is the reader that serves only current rows."""
    return read_files(index, table, list_files(index, table), columns)


def read_files(index: str, table: str, files: list[str], columns: list[str] | None = None,
               version: int | None = None) -> pa.Table:
    """`read_stored` of some of a table's files only (a task's share: one partition's files), with
    their hive partition columns, under today's column names. A partition value that is not in a
    file's path is read from the file: a Delta `segments` table created by date and camera keeps
    `class` in its files (`delta.table_partition_cols`), an older one in its folders, and both
    give the same columns here."""
    version = index_version(index) if version is None else version
    fs, root = storage.arrow_filesystem(storage.join(index, table))
    part = partition_cols(table)
    current = pa.schema(list(arrow_schema(table)) + [pa.field(c, pa.string()) for c in part])
    if columns is not None:
        unknown = [c for c in columns if c not in current.names]
        if unknown:
            raise ExvadError(f"table {table} has no column(s) {unknown} (schema version {SCHEMA_VERSION}: "
                             f"{', '.join(current.names)})")
    if not files:
        return current.empty_table() if columns is None else current.empty_table().select(columns)
    old = renamed_columns(table, version)
    stored = pa.schema(list(arrow_schema(table, version)) + [pa.field(c, pa.string()) for c in part])
    paths = [storage.arrow_filesystem(f)[1] for f in files]
    partitioning = pads.partitioning(pa.schema([(c, pa.string()) for c in part]), flavor="hive") if part else None
    ds = pads.dataset(paths, schema=stored, format="parquet", filesystem=fs, partitioning=partitioning,
                      partition_base_dir=root)
    want = current.names if columns is None else columns
    added = added_columns(table, version)  # not in that version's files: nulls
    out = ds.to_table(columns=[old.get(c, c) for c in want if c not in added])
    out = out.rename_columns([{v: k for k, v in old.items()}.get(c, c) for c in out.column_names])
    return pa.table({c: out.column(c) if c not in added else pa.nulls(out.num_rows, current.field(c).type)
                     for c in want}) if added & set(want) else out


def read_video_rows(index: str, table: str, video_ids: Iterable[str], columns: list[str] | None = None,
                    page: int = 256) -> pa.Table:
    """The rows of these videos only (stored rows: the supersede rules are the caller's), read a
    page of the table's files at a time and filtered before the next page, so that the driver
    holds the videos' rows and never the whole table. Per-video files of other videos are not
    opened (their names say whose they are); of a Delta table only the files the id cache
    (`idmap`) says hold one of the videos: a few thousand videos cost their files, not the table's."""
    from exvad_ray.index import delta

    wanted = sorted(set(video_ids))
    cols = None if columns is None else list(dict.fromkeys(["video_id", *columns]))
    version = index_version(index)
    keep, value_set = set(wanted), pa.array(wanted, pa.string())
    if not wanted:
        pages: Iterable[list[str]] = []
    elif delta.is_delta(index, table):
        found = id_files(index, table, value_set)
        pages = (found[i:i + page] for i in range(0, len(found), page))
    else:
        pages = ([f for f in files if (m := PART_RE.search(f)) is None or m.group(1) in keep]
                 for files in iter_table_files(index, table, page))
    parts = []
    for files in pages:
        if files:
            t = read_files(index, table, files, cols, version)
            parts.append(t.filter(pc.is_in(t.column("video_id"), value_set=value_set)))
    out = pa.concat_tables(parts) if parts else read_files(index, table, [], cols, version)
    return out if columns is None else out.select(columns)


def id_files(index: str, table: str, video_ids: pa.Array) -> list[str]:
    """The files of a Delta table's snapshot that hold any of these video ids, in path order, from
    the id cache a row group at a time: the driver keeps the matching files' positions only."""
    from exvad_ray.index import idmap

    snap, found = idmap.files_holding(index, table, video_ids)
    return [snap.uri(p) for p in found]


def index_version(index: str) -> int:
    """The schema version the index was written with: from its run manifests (absent field: 1), else
    from a data file's metadata, else (an empty index) the current one. Raises a clear error for an
    index this version cannot read: one written by a newer exvad-ray, or one mixing versions."""
    from exvad_ray.index.runs import read_manifests

    versions = {int(m.get("index_schema_version") or 1) for m in read_manifests(index)}
    if not versions:
        from exvad_ray.index import delta

        for table in VIDEO_TABLES:
            if delta.is_delta(index, table):  # every commit records the version that wrote it
                versions = {int(delta.commit_metadata(index, table).get(delta.SCHEMA_VERSION_KEY, SCHEMA_VERSION))}
                break
            files = list_files(index, table)
            if files:
                with storage.open_file(files[0]) as f:
                    meta = pq.read_metadata(f).metadata or {}
                versions = {int(meta.get(VERSION_KEY, b"1"))}
                break
    if len(versions) > 1:
        raise ExvadError(f"index {storage.normalize(index)} mixes schema versions {sorted(versions)} "
                         "(runs of different exvad-ray versions wrote to it); write to a new index")
    version = versions.pop() if versions else SCHEMA_VERSION
    if version > SCHEMA_VERSION:
        raise ExvadError(f"index {storage.normalize(index)} was written with schema version {version}; this "
                         f"exvad-ray ({_pkg_version()}) reads versions up to {SCHEMA_VERSION}: upgrade exvad-ray")
    return version


def check_writable(index: str) -> None:
    """Refuse to add videos to an index written with another schema version (its readers would see
    two sets of column names)."""
    version = index_version(index)
    if version != SCHEMA_VERSION:
        raise ExvadError(f"index {storage.normalize(index)} was written with schema version {version} "
                         f"(renamed since: {_renames_since(version)}); this exvad-ray writes version "
                         f"{SCHEMA_VERSION} and can read that index but not add to it: write to a new index")


def _renames_since(version: int) -> str:
    from exvad_ray.index.schemas import RENAMED

    pairs = [f"{t}.{old} -> {new}" for v in sorted(RENAMED) if v >= version
             for t, m in sorted(RENAMED[v].items()) for new, old in sorted(m.items())]
    return ", ".join(pairs) or "nothing"


def _pkg_version() -> str:
    from exvad_ray import __version__

    return __version__


def remove(uri: str) -> None:
    fs, path = storage.filesystem(uri)
    fs.rm(path)
