"""Which videos each data file of a Delta table holds: a derived cache beside the index.

A rerun's planning needs the ids of every finished video, a rescoring's planning which snippets
file holds which videos. On a Delta table those ids are inside the data files (blocks of videos
under names that say nothing), so without help every planning opens every file of the snapshot:
at 1e6 videos in batches of 16, 71,250 files per table, about 0.6 ms each (68.7 s for a rerun's
planning, 127 s for a rescoring's; bench/RESULTS.md). Delta's add actions cannot carry the ids
(delta-rs writes no tags) and the commit metadata that does carry them is dropped by checkpoints.

So the ids are kept in a cache: Parquet fragments of (file, video_id) rows under
``INDEX/_ids/<table>/``, `file` being the data file's path relative to the table. A data file of a
Delta table is never rewritten under its name (an update or delete writes a new file and removes the
old one from the log), so a (file, ids) row, once read from the file itself, is true for as long as
the file exists. The cache is therefore never trusted beyond the log: a reader takes the snapshot's
file list from the log, uses the cached rows of the files in it, reads the files the cache does not
cover (and records them as a new fragment), and ignores rows of files the snapshot no longer has
(dropped when the fragments are merged). A lost, stale or unwritable cache costs time, never a wrong
id. Fragments have unique names, so two readers refreshing at once at worst both read the same new
files; merging writes the merged fragment before deleting the ones it merged.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from exvad_ray import storage

log = logging.getLogger(__name__)

MAP_DIR = "_ids"
FRAGMENT_PREFIX = "ids-"
MAX_FRAGMENTS = 8  # merged into one when a refresh finds more
PLANNED_TABLES = ("videos", "snippets", "errors")  # the tables whose ids planning reads (a rerun's, a rescoring's)
READ_THREADS = 4  # data files read at once when the cache misses (I/O bound on S3)
SCHEMA = pa.schema([("file", pa.string()), ("video_id", pa.string())])


def map_uri(index: str, table: str) -> str:
    """The cache folder of the table ``INDEX/<table>``: ``_ids/<name>`` beside it, so that a table
    path (``scorings/<id>/videos``) and the same table under its scoring's root share one cache.
    Outside the table's folder: a vacuum deletes what the log does not know."""
    parent, name = storage.join(index, table).rstrip("/").rsplit("/", 1)
    return storage.join(parent, MAP_DIR, name)


@dataclass
class Snapshot:
    """A Delta table's snapshot files: their URIs and the same as paths relative to the table (the
    cache's keys), both sorted by path."""

    uris: list[str]
    keys: pa.Array

    @classmethod
    def of(cls, index: str, table: str) -> Snapshot:
        from exvad_ray.index import delta

        uris = sorted(delta.snapshot_files(index, table))
        root = storage.normalize(delta.table_uri(index, table)).rstrip("/") + "/"
        return cls(uris, pa.array([u[len(root):] if u.startswith(root) else u for u in uris], pa.string()))


def _fragments(index: str, table: str) -> list[str]:
    return sorted(f for page in storage.iter_objects(map_uri(index, table), recursive=False, stat=False)
                  for f, _ in page if f.rsplit("/", 1)[-1].startswith(FRAGMENT_PREFIX) and f.endswith(".parquet"))


def _read_fragment(uri: str, columns: list[str] | None = None) -> pa.Table | None:
    """A fragment's rows; None when it is gone (merged by another reader meanwhile) or unreadable."""
    try:
        with storage.open_file(uri) as fh:
            return pq.read_table(fh, columns=columns, schema=SCHEMA)
    except Exception:  # noqa: BLE001 - the cache is an optimisation: its loss means reading the files
        return None


def _file_ids(uri: str) -> pa.Array:
    """The distinct video ids one data file holds, its `video_id` column read alone."""
    from exvad_ray.index import delta

    try:
        fs, path = storage.arrow_filesystem(uri)
        with fs.open_input_file(path) as fh:
            col = pq.ParquetFile(fh).read(columns=["video_id"], use_threads=False).column(0)
    except Exception as exc:  # noqa: BLE001
        raise delta._storage_error(uri.rsplit("/", 1)[0], exc) from exc
    return pc.unique(col.combine_chunks().cast(pa.string()))


def _write_fragment(index: str, table: str, rows: pa.Table) -> str | None:
    """Write rows as a new fragment; None when the index is not writable here (a read-only reader)."""
    uri = storage.join(map_uri(index, table), f"{FRAGMENT_PREFIX}{uuid.uuid4().hex}.parquet")
    sink = pa.BufferOutputStream()
    pq.write_table(rows.cast(SCHEMA), sink, compression="zstd")
    try:
        storage.write_bytes(uri, sink.getvalue().to_pybytes())
    except Exception:  # noqa: BLE001 - as _read_fragment: the next reader reads those files again
        return None
    return uri


Source = str | pa.Table  # a fragment's URI, or rows held in memory (the cache could not be written)


def _read_ids(snap: Snapshot, which: np.ndarray) -> pa.Table:
    """(file, video_id) rows of the snapshot files at positions `which`, read from the files
    themselves, a few at a time (`READ_THREADS`: on S3 each read is a few round trips)."""
    with ThreadPoolExecutor(READ_THREADS) as pool:
        ids = list(pool.map(_file_ids, [snap.uris[i] for i in which]))
    keys = snap.keys.take(pa.array(which, pa.int64())).to_numpy(zero_copy_only=False)
    return pa.table({"file": pa.array(np.repeat(keys, [len(a) for a in ids]), pa.string()),
                     "video_id": pa.concat_arrays(ids) if ids else pa.array([], pa.string())})


def _not_in(snap: Snapshot, names: pa.Array) -> np.ndarray:
    """Positions of the snapshot files whose names are not in `names`."""
    return np.flatnonzero(~pc.is_in(snap.keys, value_set=names).to_numpy(zero_copy_only=False))


def warm(index: str, tables: Sequence[str]) -> None:
    """`refresh` the caches of these tables (those that exist), for the writer at the end of its
    run or every so many batches, so that the next planning finds the ids cached. Never fails the
    writer: the cache is an optimisation."""
    from exvad_ray.index import delta

    for table in tables:
        try:
            if delta.is_delta(index, table):
                refresh(index, table)
        except Exception as exc:  # noqa: BLE001
            log.warning("id cache of %s not refreshed: %s", table, exc)


def refresh(index: str, table: str, snapshot: Snapshot | None = None) -> tuple[Snapshot, list[Source]]:
    """Bring the table's cache up to its snapshot: the snapshot files no fragment covers are read
    (their `video_id` column) and recorded as one new fragment; more than `MAX_FRAGMENTS` fragments
    are merged into one, without the rows of files the snapshot no longer has. Returns the snapshot
    and the sources of its rows. Memory: the snapshot's file names and the covered names (tens of
    bytes per data file: a few bytes per video), and the new rows."""
    snap = snapshot or Snapshot.of(index, table)
    covered: list[pa.Array] = []
    sources: list[Source] = []
    for frag in _fragments(index, table):
        t = _read_fragment(frag, ["file"])
        if t is not None:
            covered.append(pc.unique(t.column("file")))
            sources.append(frag)
    have = pc.unique(pa.chunked_array(covered, pa.string())) if covered else pa.array([], pa.string())
    missing = _not_in(snap, have)
    stale = len(have) - (len(snap.keys) - len(missing))  # cached files the snapshot no longer has
    if len(missing):
        rows = _read_ids(snap, missing)
        sources.append(_write_fragment(index, table, rows) or rows)
    if len(sources) > MAX_FRAGMENTS or (len(sources) > 1 and stale > len(snap.keys) // 2):  # after a compaction
        sources = _merge(index, table, snap, sources)
    return snap, sources


def _rows(source: Source) -> pa.Table | None:
    return source if isinstance(source, pa.Table) else _read_fragment(source)


def _merge(index: str, table: str, snap: Snapshot, sources: list[Source]) -> list[Source]:
    """One fragment holding the rows of `sources` whose files are in the snapshot, sorted by file;
    the merged fragments deleted after it is written (a reader that listed them meanwhile and finds
    one gone reads those files itself)."""
    parts = [t.filter(pc.is_in(t.column("file"), value_set=snap.keys)) for s in sources if (t := _rows(s)) is not None]
    merged = (pa.concat_tables(parts) if parts else SCHEMA.empty_table()).sort_by([("file", "ascending"), ("video_id", "ascending")])
    new = _write_fragment(index, table, merged)
    if new is None:
        return sources
    for s in sources:
        if isinstance(s, str):
            try:
                fs, path = storage.filesystem(s)
                fs.rm(path)
            except Exception:  # noqa: BLE001 - a fragment left behind is merged again next time
                pass
    return [new]


def iter_file_rows(index: str, table: str, snapshot: Snapshot | None = None) -> Iterator[pa.Table]:
    """(file, video_id) rows of every data file of the table's snapshot (current unless given), a
    source at a time, after `refresh`. A file's rows may come from two fragments (two readers that
    refreshed at once): callers treat the ids as a set. `file` is relative to the table."""
    snap, sources = refresh(index, table, snapshot)
    seen: list[pa.Array] = []
    for source in sources:
        t = _rows(source)
        if t is None:  # merged away by another reader meanwhile: the files not yet served are read
            served = pc.unique(pa.chunked_array(seen, pa.string())) if seen else pa.array([], pa.string())
            yield _read_ids(snap, _not_in(snap, served))
            return
        t = t.filter(pc.is_in(t.column("file"), value_set=snap.keys))
        seen.append(pc.unique(t.column("file")))
        yield t


def iter_video_ids(index: str, table: str) -> Iterator[pa.Array]:
    """The `video_id`s of the table's current snapshot, a chunk at a time (an id may repeat): the
    done set of a rerun's planning, from the cache after `refresh`."""
    for t in iter_file_rows(index, table):
        if t.num_rows:
            yield t.column("video_id").combine_chunks()


def file_rows(index: str, table: str) -> pa.Table:
    """(file URI, video_id) of every data file of the table's current snapshot, each pair once,
    sorted by file then id: a rescoring's planning places videos by the snippets file holding
    them, filtering these rows in Arrow (about 60 bytes per video, no Python object per video)."""
    snap = Snapshot.of(index, table)
    parts = list(iter_file_rows(index, table, snap))
    rows = pa.concat_tables(parts) if parts else SCHEMA.empty_table()
    rows = rows.group_by(["file", "video_id"]).aggregate([])
    where = pc.index_in(rows.column("file"), value_set=snap.keys)
    rows = pa.table({"file": pa.array(snap.uris, pa.string()).take(where), "video_id": rows.column("video_id")})
    return rows.sort_by([("file", "ascending"), ("video_id", "ascending")])


def runs(column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the runs of equal values of a sorted column (a file's rows)."""
    col = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(col)
    if n == 0:
        return np.array([], np.int64), np.array([], np.int64)
    cut = np.flatnonzero(pc.not_equal(col.slice(1), col.slice(0, n - 1)).to_numpy(zero_copy_only=False)) + 1
    return np.r_[0, cut].astype(np.int64), np.r_[cut, n].astype(np.int64)
