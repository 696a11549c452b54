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

The same knowledge makes a delete of videos cheap (`index.deletes`, which finds the files with
`files_holding`): only the files the cache names are read and rewritten, where delta-rs's delete
reads every file of the table (random ids: min/max statistics prune nothing). Writers that make
new files (a delete's rewrites, a compaction's merges) record their ids at once (`record_files`).
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
ROW_GROUP = 65_536  # rows per row group of a fragment, and per batch when one is read (memory stays bounded)
# the tables whose cache the writers keep warm: planning reads videos, snippets and errors (a rerun's, a
# rescoring's), a delete of replaced videos any of them (`index.deletes`)
WARM_TABLES = ("videos", "snippets", "segments", "captions", "errors")
READ_THREADS = 4  # data files read at once when the cache misses (I/O bound on S3; and by `deletes`)
SCHEMA = pa.schema([("file", pa.string()), ("video_id", pa.string())])


def map_uri(index: str, table: str) -> str:
    """The cache folder of the table ``INDEX/<table>``: ``_ids/<name>`` beside it, so that a table
    path (``scorings/<id>/videos``) and the same table under its scoring's root share one cache.
    Outside the table's folder: a vacuum deletes what the log does not know."""
    parent, name = storage.join(index, table).rstrip("/").rsplit("/", 1)
    return storage.join(parent, MAP_DIR, name)


@dataclass
class Snapshot:
    """A Delta table's snapshot files as paths relative to the table (the cache's keys, sorted),
    and the table's root: a file's URI is root + key."""

    root: str
    keys: pa.Array

    @classmethod
    def of(cls, index: str, table: str) -> Snapshot:
        """From the log's paths alone (`from_log`), or, for a log that reader does not follow, from
        delta-rs's file list."""
        from exvad_ray.index import delta

        snap = cls.from_log(index, table)
        if snap is not None:
            return snap
        root = _root(index, table)
        uris = delta.snapshot_files(index, table)
        keys = pa.array([u[len(root):] if u.startswith(root) else u for u in uris], pa.string())
        return cls(root, keys.take(pc.sort_indices(keys)))

    @classmethod
    def from_log(cls, index: str, table: str) -> Snapshot | None:
        """From the log's paths alone (`delta.snapshot_paths`: about 100 bytes a file, each the
        file's name relative to the table); None for a log that reader does not follow (deletion
        vectors, v2 checkpoints...): a writer that rewrites files needs exactly this."""
        from exvad_ray.index import delta

        keys = delta.snapshot_paths(index, table)
        return None if keys is None else cls(_root(index, table), keys.take(pc.sort_indices(keys)))

    def __len__(self) -> int:
        return len(self.keys)

    def uri(self, i: int) -> str:
        key = self.keys[int(i)].as_py()
        return key if "://" in key or key.startswith("/") else self.root + key


def _root(index: str, table: str) -> str:
    from exvad_ray.index import delta

    return storage.normalize(delta.table_uri(index, table)).rstrip("/") + "/"


def _fragments(index: str, table: str) -> list[str]:
    return sorted(f for page in storage.iter_objects(map_uri(index, table), recursive=False, stat=False)
                  for f, _ in page if f.rsplit("/", 1)[-1].startswith(FRAGMENT_PREFIX) and f.endswith(".parquet"))


class _Gone(Exception):
    """A fragment that could not be read (merged away by another reader, damaged)."""


def _batches(source: Source, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """A source's rows a row group at a time, `file` dictionary-encoded (a fragment's `file` values
    repeat: as a dictionary a batch holds each name once and an int per row)."""
    if isinstance(source, pa.Table):
        for b in source.select(columns).to_batches(ROW_GROUP):
            yield b
        return
    try:
        with storage.open_file(source) as fh:
            pf = pq.ParquetFile(fh, read_dictionary=["file"])
            if pf.schema_arrow.names != SCHEMA.names:
                raise _Gone(f"{source}: not a fragment")
            yield from pf.iter_batches(batch_size=ROW_GROUP, columns=columns)
    except _Gone:
        raise
    except Exception as exc:  # noqa: BLE001 - the cache is an optimisation: its loss means reading the files
        raise _Gone(str(exc)) from exc


def _positions(col: pa.Array, snap: Snapshot) -> pa.Array:
    """Each row's file as its position in the snapshot (null: a file the snapshot no longer has),
    looked up once per distinct name."""
    if pa.types.is_dictionary(col.type):
        return pc.index_in(col.dictionary, value_set=snap.keys).take(col.indices)
    return pc.index_in(col, value_set=snap.keys)


def _file_ids(uri: str) -> pa.Array:
    """The distinct video ids one data file holds."""
    from exvad_ray.index import delta

    return pc.unique(delta.file_video_id_column(uri))


def write_fragment(index: str, table: str, parts: Iterator[pa.Table] | pa.Table) -> str | None:
    """Write rows (a table, or tables in turn) as a new fragment, in row groups of `ROW_GROUP`;
    None when the index is not writable here (a read-only reader)."""
    uri = storage.join(map_uri(index, table), f"{FRAGMENT_PREFIX}{uuid.uuid4().hex}.parquet")
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, SCHEMA, compression="zstd") as w:
        for t in [parts] if isinstance(parts, pa.Table) else parts:
            w.write_table(t.cast(SCHEMA), row_group_size=ROW_GROUP)
    try:
        storage.write_bytes(uri, sink.getvalue().to_pybytes())
    except Exception:  # noqa: BLE001 - as a lost fragment: the next reader reads those files again
        return None
    return uri


def record_files(index: str, table: str, files: Sequence[tuple[str, pa.Array]]) -> None:
    """Record the video ids of files a writer just made ((path relative to the table, its distinct
    ids): a delete's rewrites, a merge's files) as a fragment, so that no reader opens them to learn
    their ids. Never fails the writer: a fragment not written costs the next reader those reads."""
    if not files:
        return
    rows = pa.table({"file": pa.array([path for path, ids in files for _ in range(len(ids))], pa.string()),
                     "video_id": pa.concat_arrays([ids for _, ids in files])})
    try:
        if write_fragment(index, table, rows) is None:
            log.warning("%s: the new files' ids were not cached (the next reader reads them)", table)
    except Exception as exc:  # noqa: BLE001 - the cache is an optimisation
        log.warning("%s: the new files' ids were not cached: %s", table, exc)


Source = str | pa.Table  # a fragment's URI, or rows held in memory (the cache could not be written)


def _read_ids(snap: Snapshot, which: np.ndarray) -> pa.Table:
    """(file, video_id) rows of the snapshot files at positions `which`, read from the files
    themselves, a few at a time (`READ_THREADS`: on S3 each read is a few round trips)."""
    with ThreadPoolExecutor(READ_THREADS) as pool:
        ids = list(pool.map(_file_ids, [snap.uri(i) for i in which]))
    keys = snap.keys.take(pa.array(which, pa.int64())).to_numpy(zero_copy_only=False)
    return pa.table({"file": pa.array(np.repeat(keys, [len(a) for a in ids]), pa.string()),
                     "video_id": pa.concat_arrays(ids) if ids else pa.array([], pa.string())})


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
    (their `video_id` column) and recorded as one new fragment; more than `MAX_FRAGMENTS` fragments,
    or fragments mostly about files the snapshot no longer has (after a compaction), are merged into
    one without those rows. Returns the snapshot and the sources of its rows. Memory: the
    snapshot's file names, a flag per snapshot file, a row group at a time, and the new rows."""
    snap = snapshot or Snapshot.of(index, table)
    covered = np.zeros(len(snap), bool)
    stale: set[str] = set()
    sources: list[Source] = []
    for frag in _fragments(index, table):
        try:
            for b in _batches(frag, ["file"]):
                col = b.column(0)
                names = col.dictionary if pa.types.is_dictionary(col.type) else pc.unique(col)
                where = pc.index_in(names, value_set=snap.keys)
                covered[where.drop_null().to_numpy()] = True
                stale.update(names.filter(where.is_null()).to_pylist())
        except _Gone:
            continue
        sources.append(frag)
    missing = np.flatnonzero(~covered)
    if len(missing):
        rows = _read_ids(snap, missing)
        sources.append(write_fragment(index, table, rows) or rows)
    if len(sources) > MAX_FRAGMENTS or (len(sources) > 1 and len(stale) > len(snap) // 2):
        sources = _merge(index, table, snap, sources)
    return snap, sources


def _merge(index: str, table: str, snap: Snapshot, sources: list[Source]) -> list[Source]:
    """One fragment holding the rows of `sources` whose files are in the snapshot, in the
    snapshot's file order, written a row group at a time; the merged fragments deleted after it is
    written (a reader that listed them meanwhile and finds one gone reads those files itself)."""
    try:
        pos, ids = _gather(snap, sources)
    except _Gone:
        return sources
    order = np.lexsort((ids.to_numpy(zero_copy_only=False), pos)) if len(pos) else np.array([], np.int64)

    def parts() -> Iterator[pa.Table]:
        for a in range(0, len(order), ROW_GROUP):
            take = pa.array(order[a:a + ROW_GROUP], pa.int64())
            yield pa.table({"file": snap.keys.take(pa.array(pos[order[a:a + ROW_GROUP]], pa.int64())),
                            "video_id": ids.take(take)})

    new = write_fragment(index, table, parts())
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


def _source_rows(snap: Snapshot, source: Source) -> Iterator[tuple[np.ndarray, pa.Array]]:
    """(positions in the snapshot, video ids) of a source's rows whose files the snapshot has, a
    row group at a time; raises `_Gone` when the source cannot be read."""
    for b in _batches(source, ["file", "video_id"]):
        p = _positions(b.column(0), snap)
        keep = p.is_valid()
        yield p.filter(keep).to_numpy().astype(np.int64), b.column(1).filter(keep)


def _pairs(rows: Iterator[tuple[np.ndarray, pa.Array]]) -> pa.Table:
    """(pos, video_id) of `rows`, each pair once: about 45 bytes a video."""
    pos_parts, id_parts = [], []
    for pos, ids in rows:
        pos_parts.append(pos.astype(np.int32))
        id_parts.append(ids)
    t = pa.table({"pos": np.concatenate(pos_parts) if pos_parts else np.array([], np.int32),
                  "video_id": pa.concat_arrays(id_parts) if id_parts else pa.array([], pa.string())})
    return t.group_by(["pos", "video_id"]).aggregate([])


def _gather(snap: Snapshot, sources: list[Source]) -> tuple[np.ndarray, pa.Array]:
    """Every (snapshot position, video id) of the sources, each pair once."""
    t = _pairs(r for s in sources for r in _source_rows(snap, s))
    return t.column("pos").to_numpy(), t.column("video_id").combine_chunks()


def iter_positions(index: str, table: str, snapshot: Snapshot | None = None
                   ) -> tuple[Snapshot, Iterator[tuple[np.ndarray, pa.Array]]]:
    """The table's snapshot, and (positions in it, video ids) of every data file's rows, a row
    group at a time, after `refresh`. A file's rows may come from two fragments (two readers that
    refreshed at once): callers treat the ids as a set. A fragment that vanishes meanwhile (merged
    by another reader): the files not yet served are read from themselves."""
    snap, sources = refresh(index, table, snapshot)

    def rows() -> Iterator[tuple[np.ndarray, pa.Array]]:
        served = np.zeros(len(snap), bool)
        for source in sources:
            try:
                for pos, ids in _source_rows(snap, source):
                    served[pos] = True
                    yield pos, ids
            except _Gone:
                yield from _source_rows(snap, _read_ids(snap, np.flatnonzero(~served)))
                return

    return snap, rows()


def files_holding(index: str, table: str, video_ids: pa.Array, snapshot: Snapshot | None = None
                  ) -> tuple[Snapshot, np.ndarray]:
    """The snapshot, and the sorted positions in it of the files holding any of these ids (strings),
    from the cache a row group at a time: only the matching positions are kept (memory grows with
    the matches, not the table)."""
    snap, rows = iter_positions(index, table, snapshot)
    hits = [pos[pc.fill_null(pc.is_in(ids.cast(pa.string()), value_set=video_ids), False)
                .to_numpy(zero_copy_only=False)] for pos, ids in rows]
    return snap, (np.unique(np.concatenate(hits)) if hits else np.array([], np.int64))


def iter_video_ids(index: str, table: str) -> Iterator[pa.Array]:
    """The `video_id`s of the table's current snapshot, a row group at a time (an id may repeat):
    the done set of a rerun's planning, from the cache after `refresh`."""
    _, rows = iter_positions(index, table)
    for _, ids in rows:
        if len(ids):
            yield ids


def file_rows(index: str, table: str) -> tuple[Snapshot, pa.Table]:
    """The snapshot, and (pos: the file's position in it, `Snapshot.uri`, video_id) for each
    video of each file, once, sorted by file then id: planning filters these rows in Arrow (about
    45 bytes per video) and takes them a file at a time with `by_file`."""
    snap, rows = iter_positions(index, table)
    return snap, _pairs(rows).sort_by([("pos", "ascending"), ("video_id", "ascending")])


def by_file(snap: Snapshot, rows: pa.Table) -> Iterator[tuple[str, list[str]]]:
    """(file URI, its video ids) for each file of `file_rows`' rows (filtered or not), in order."""
    pos = rows.column("pos").to_numpy()
    ids = rows.column("video_id").combine_chunks()
    if len(pos) == 0:
        return
    cut = np.flatnonzero(pos[1:] != pos[:-1]) + 1
    for a, b in zip(np.r_[0, cut], np.r_[cut, len(pos)]):
        yield snap.uri(pos[a]), ids.slice(int(a), int(b - a)).to_pylist()
