"""Upgrade an index of today's per-video layout to Delta tables (issue 23; `exvad index upgrade`).

Each video table (``INDEX/<table>/<k>=<v>/part-<video_id>.parquet``, compacted files, tombstones)
becomes a Delta table at ``DST/<table>``, created as the job creates it (`segments` partitioned by
date and camera, the class of its class folders a column of the files), holding exactly the rows
today's readers serve
(`supersede.read_table`: no superseded video, no error row of a video that succeeded since, the
newest error row of a video that failed twice), under today's column names whatever schema version
wrote the source. One difference from `read_table`: in a partition folder, a video's part file wins
over its stale copy in a compacted file (as rescoring reads it), so no video is copied twice.

Why it is built this way:
- Bounded memory: the source is listed a page at a time and read a block of files at a time
  (`block_videos` videos, default 1000; a compacted file is read whole, as compaction wrote it).
  Only the `errors` table's id, date and time columns are held whole (a video retried on another
  day has error rows in two date folders, and only the newest is current).
- Safe to rerun after a kill: the blocks come from the listing alone (folders then file names, so
  video ids), and each block is one commit with the application transaction ("upgrade-" + a hash of
  the source, version = block number); a rerun skips the blocks the log holds. Before each commit
  the block's fingerprint (its files' names and sizes) and row count go to ``DST/_upgrade/``: a
  rerun checks that the committed blocks still hold the same files (a source changed in between
  would otherwise shift the blocks and copy rows twice or not at all) and counts their rows
  without reading them.
- Checked: per table, rows served in the source == rows in the Delta snapshot (the log's record
  counts), else an error naming the table and both counts.
- Rescorings (every ``scorings/<id>/`` with a scoring.json) become Delta tables too, as a Delta
  index's rescore writes them (`scorings.create_delta_tables`): ``DST/scorings/<id>/<table>`` holds
  exactly the rows `scorings.read_scoring` serves of the source (its per-video files read under the
  scoring's columns, an older file's missing ones null), cut into blocks by the same code as the
  video tables (a part file's name is its video id there too), with their own application
  transaction (`app_id` + ":" + scoring id, never the scoring id a later `exvad rescore` commits
  under) and row counts checked the same way. Left as per-video folders they would make a later
  rescore with the same detector fail ("holds files but no Delta log") and readers mix layouts.
  scoring.json is copied as is; ``scorings/CURRENT.json`` becomes the one-row Delta table
  ``scorings/current`` (`scorings.set_current`, written only when it does not already say so: a
  rerun commits nothing) and is not copied. The table files of a scoring folder without
  scoring.json (a rescore killed before writing it) are left out: no reader serves them.
  Rows of replaced videos stay in the scoring tables, as `read_scoring` serves them from the
  source; the copied tombstones hide them from the search as before.
- The run manifests (``runs/run-<id>.json``) become rows of DST's run log (``DST/run_log``, where a
  Delta index keeps them: `runs.write_manifests`), all in one commit, a run whose newest row already
  says the same left out (a rerun appends nothing); the run ids read back from DST are checked
  against the source's. Left as JSON they would stay in the old form for good, beside the run log.
  A manifest of an older schema version gets today's ``index_schema_version`` (the tables are
  today's now) and keeps the old one in ``upgraded_from``.
- Everything else under the source (settings, labels, scoring manifests, the search sidecar,
  tombstones, other files under ``runs/``) is copied byte for byte. Tombstones are copied
  although their videos' rows are not in the video tables: the search hides replaced videos by
  them, and the upgraded rescorings still hold such
  videos' rows (a Delta index's own replacements delete them: `scorings.delete_videos`).
  The source is only read.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from exvad_ray import storage
from exvad_ray.errors import ExvadError
from exvad_ray.index import delta, runs
from exvad_ray.index import scorings as sc
from exvad_ray.index.runs import RUNS_DIR
from exvad_ray.index.schemas import SCHEMA_VERSION, VIDEO_TABLES, partition_cols
from exvad_ray.index.store import (
    COMPACT_PREFIX, IdSet, PART_RE, done_set, file_video_ids, index_version, is_table_file, read_files,
)
from exvad_ray.index.supersede import superseded_ids

STATE_DIR = "_upgrade"  # in DST: what this upgrade is of, and each table's committed blocks
SOURCE_FILE = "source.json"
LEASE_FILE = "lease.json"  # a job's lease (pipeline/lease.py): a lock, not content
BLOCK_VIDEOS = 1000

Progress = Callable[[str], None]


@dataclasses.dataclass
class TableUpgrade:
    table: str
    rows: int = 0  # rows served in the source = rows in the Delta snapshot (checked)
    files: int = 0  # data files in the Delta snapshot
    batches: int = 0  # blocks committed by this call
    skipped: int = 0  # blocks an earlier, interrupted call had committed
    seconds: float = 0.0
    complete: bool = True  # False: stopped at `max_batches` (tests, or a caller's own pacing)


@dataclasses.dataclass
class UpgradeResult:
    src: str
    dst: str
    tables: dict[str, TableUpgrade]
    copied: int  # other files copied (settings, labels, scoring manifests, sidecar, tombstones)
    seconds: float
    current: str | None = None  # the current scoring written to DST/scorings/current (None: no CURRENT.json)
    runs: int = 0  # run manifests in DST's run log (= the source's run ids, checked)


def app_id(src: str) -> str:
    """The application transaction id of an upgrade of `src` (the same on every rerun)."""
    return "upgrade-" + hashlib.sha1(storage.normalize(src).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------ checks


def check(src: str, dst: str) -> int:
    """Refuse what cannot be upgraded, before anything is written; returns the source's schema
    version. Raises ExvadError naming what to do."""
    s, d = storage.normalize(src).rstrip("/"), storage.normalize(dst).rstrip("/")
    if s == d:
        raise ExvadError(f"--out is the source {s}: write the Delta index to a new location (the source is not modified)")
    if d.startswith(s + "/") or s.startswith(d + "/"):
        raise ExvadError(f"{d} and {s} are inside one another: write the Delta index to a location outside the source")
    for table in VIDEO_TABLES:
        if delta.is_delta(s, table):
            raise ExvadError(f"{s} already holds Delta tables ({table}/_delta_log): nothing to upgrade")
    has_tables = any(_any_object(storage.join(s, t)) for t in VIDEO_TABLES)
    if not has_tables and not _any_object(storage.join(s, RUNS_DIR)):
        raise ExvadError(f"no index at {s} (no videos, snippets, segments, captions or errors table, no runs)")
    version = index_version(s)  # refuses an index of a newer exvad-ray, or one mixing versions
    names = [n for n in _top_level(d) if n != LEASE_FILE]
    if names:
        doc = _read_json(storage.join(d, STATE_DIR, SOURCE_FILE))
        if doc is None:
            shown = ", ".join(sorted(names)[:5]) + (", ..." if len(names) > 5 else "")
            raise ExvadError(f"{d} already holds files ({shown}) that are not an upgrade of {s}: give a new or "
                             "empty --out location, or remove that folder first")
        if doc.get("app_id") != app_id(s):
            raise ExvadError(f"{d} holds an upgrade of {doc.get('source')}, not of {s}: give a new or empty --out "
                             "location")
    return version


def _any_object(uri: str) -> bool:
    return next(iter(storage.iter_objects(uri, page=1, stat=False)), None) is not None


def _top_level(uri: str) -> list[str]:
    """Names of the entries (files and folders) directly under `uri`; none when it does not exist."""
    fs, path = storage.filesystem(uri)
    try:
        fs.invalidate_cache(path)  # s3fs keeps listings; Delta files are written behind its back
        if not fs.exists(path):
            return []
        return [e.rstrip("/").rsplit("/", 1)[-1] for e in fs.ls(path, detail=False)]
    except FileNotFoundError:
        return []
    except Exception as exc:  # noqa: BLE001 - storage trouble, in one line
        if storage.is_unreachable(exc):
            raise storage.unavailable(uri, exc) from exc
        raise


def _read_json(uri: str) -> dict[str, Any] | None:
    if not storage.exists(uri):
        return None
    try:
        return json.loads(storage.read_bytes(uri))
    except ValueError as exc:
        raise ExvadError(f"{uri} is not JSON: remove it and the folder it describes, then upgrade again") from exc


# ---------------------------------------------------------------------------------------- upgrade


def upgrade(src: str, dst: str, block_videos: int | None = None, progress: Progress | None = None,
            every: int = 10, tables: tuple[str, ...] = VIDEO_TABLES, max_batches: int | None = None,
            scorings: bool = True) -> UpgradeResult:
    """Upgrade the index at `src` (today's per-video layout) to Delta tables at `dst` (its video
    tables, then, with `scorings`, every rescoring's tables), then copy the rest of its content,
    write its run manifests to DST's run log, make CURRENT.json the current-scoring table and check
    the row and run counts (module docstring). Safe
    to rerun after an interruption: it goes on where the last call stopped. `block_videos`: videos
    per commit (default 1000, or what the interrupted call used); `progress` gets a line per table
    and every `every` blocks; `max_batches`: stop each table after that many new commits (no check,
    no copy)."""
    started = time.time()
    say = progress or (lambda _line: None)
    src, dst = storage.normalize(src).rstrip("/"), storage.normalize(dst).rstrip("/")
    version = check(src, dst)
    state = _start(src, dst, version, block_videos)
    ctx = _Source(src, version)
    out: dict[str, TableUpgrade] = {}
    for table in tables:
        out[table] = upgrade_table(ctx, dst, table, state["block_videos"], say, every, max_batches)
    if any(not r.complete for r in out.values()):
        return UpgradeResult(src, dst, out, 0, time.time() - started)
    for sid in rescorings(src) if scorings else []:
        out.update(upgrade_scoring(src, dst, sid, state["block_videos"], say, every, max_batches))
        if any(not r.complete for r in out.values()):
            return UpgradeResult(src, dst, out, 0, time.time() - started)
    copied = copy_other(src, dst, say)
    say(f"other content: {copied} files copied")
    n_runs = upgrade_runs(src, dst, say)
    current = upgrade_current(src, dst, say)
    state.update(finished_at=_now(), tables={t: {"rows": r.rows, "files": r.files} for t, r in out.items()},
                 other_files=copied, runs=n_runs)
    _write_json(storage.join(dst, STATE_DIR, SOURCE_FILE), state)
    return UpgradeResult(src, dst, out, copied, time.time() - started, current, n_runs)


def _start(src: str, dst: str, version: int, block_videos: int | None) -> dict[str, Any]:
    """The upgrade's record in DST (written first: it is what tells a rerun that DST is ours)."""
    uri = storage.join(dst, STATE_DIR, SOURCE_FILE)
    state = _read_json(uri)
    if state is not None:
        if block_videos is not None and block_videos != state["block_videos"]:
            raise ExvadError(f"this upgrade was started with blocks of {state['block_videos']} videos: rerun without "
                             f"--block-videos (or with {state['block_videos']}), or remove {dst} to start over")
        return state
    n = BLOCK_VIDEOS if block_videos is None else int(block_videos)
    if n < 1:
        raise ExvadError(f"--block-videos must be at least 1 (got {n})")
    state = {"source": src, "app_id": app_id(src), "source_schema_version": version,
             "schema_version": SCHEMA_VERSION, "block_videos": n, "started_at": _now(), "finished_at": None}
    _write_json(uri, state)
    return state


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _write_json(uri: str, doc: dict[str, Any]) -> None:
    storage.write_bytes(uri, json.dumps(doc, indent=1).encode())


@dataclasses.dataclass
class Block:
    """Consecutive table files of the listing, about `block_videos` videos; a compacted file comes
    with the ids of the part files beside it (their rows win over its copies)."""

    files: list[str]
    sizes: list[int]
    shadowed: dict[str, frozenset[str]]
    root: str

    def fingerprint(self) -> str:
        h = hashlib.sha1()
        for f, size in zip(self.files, self.sizes):
            h.update(f"{f[len(self.root) + 1:]}\t{size}\n".encode())
        return h.hexdigest()


def blocks(src: str, table: str, block_videos: int) -> Iterator[Block]:
    """The table's files in listing order (partition folder, then file name: a part file's name is
    its video id), cut into blocks of at least `block_videos` videos. A folder's names are held
    while it is cut (to know which of a compacted file's videos have a part file beside it)."""
    root = storage.join(src, table)
    files: list[str] = []
    sizes: list[int] = []
    shadowed: dict[str, frozenset[str]] = {}
    videos = 0

    def folder_done(entries: list[tuple[str, int]]) -> Iterator[Block]:
        nonlocal files, sizes, shadowed, videos
        parts = frozenset(m.group(1) for f, _ in entries for m in [PART_RE.search(f)] if m)
        for f, size in entries:
            files.append(f)
            sizes.append(size)
            if not PART_RE.search(f):
                if f.rsplit("/", 1)[-1].startswith(COMPACT_PREFIX):
                    shadowed[f] = parts
                    videos += max(1, len(file_video_ids(f)))
                else:
                    shadowed[f] = frozenset()
                    videos += 1
            else:
                videos += 1
            if videos >= block_videos:
                yield Block(files, sizes, shadowed, root)
                files, sizes, shadowed, videos = [], [], {}, 0

    folder, entries = None, []
    for page in storage.iter_objects(root):
        for f, info in page:
            if not is_table_file(f):
                continue
            here = f.rsplit("/", 1)[0]
            if here != folder:
                yield from folder_done(entries)
                folder, entries = here, []
            entries.append((f, int(info.get("size") or 0)))
    yield from folder_done(entries)
    if files:
        yield Block(files, sizes, shadowed, root)


class _Source:
    """What deciding a row's currency needs of the source, loaded once and only when needed."""

    def __init__(self, src: str, version: int):
        self.src, self.version = src, version
        self.gone = IdSet(pa.array(sorted(superseded_ids(src)), pa.string()))
        self._ok: IdSet | None = None
        self._winners: dict[str, tuple[str | None, Any]] | None = None

    @property
    def ok(self) -> IdSet:
        """Videos with a `videos` row: their error rows are not current."""
        if self._ok is None:
            self._ok = done_set(self.src, "videos")
        return self._ok

    def read(self, table: str, block: Block, columns: list[str] | None = None) -> pa.Table:
        """The block's stored rows (a compacted file's copies of videos that have a part file beside
        it left out), under today's column names."""
        plain = [f for f in block.files if f not in block.shadowed]
        parts = [read_files(self.src, table, plain, columns, self.version)] if plain else []
        for f, shadow in block.shadowed.items():
            t = read_files(self.src, table, [f], columns, self.version)
            if shadow and "video_id" in t.column_names:
                t = t.filter(pc.invert(pc.is_in(t.column("video_id"), pa.array(sorted(shadow), pa.string()))))
            parts.append(t)
        return pa.concat_tables(parts) if len(parts) > 1 else parts[0]

    def current(self, table: str, rows: pa.Table, blocks_of: Callable[[], Iterator[Block]]) -> pa.Table:
        """The rows `supersede.read_table` serves, of one block."""
        if "video_id" not in rows.column_names or rows.num_rows == 0:
            return rows
        ids = rows.column("video_id")
        drop = self.gone.contains(ids) if len(self.gone) else None
        if table == "errors":
            stale = self.ok.contains(ids)
            drop = stale if drop is None else drop | stale
        if drop is not None and drop.any():
            rows = rows.filter(pa.array(~drop))
        if table == "errors" and rows.num_rows:
            rows = self._newest(rows, blocks_of)
        return rows

    def _newest(self, rows: pa.Table, blocks_of: Callable[[], Iterator[Block]]) -> pa.Table:
        """One error row per video: the newest; among equals the first in listing order."""
        winners = self.error_winners(blocks_of)
        order = pc.sort_indices(rows, sort_keys=[("video_id", "ascending"), ("processed_at", "descending")])
        rows = rows.take(order)
        ids = rows.column("video_id").to_pylist()
        dates = rows.column("date").to_pylist()
        times = rows.column("processed_at").to_pylist()
        keep = []
        for i, v in enumerate(ids):
            if i and ids[i - 1] == v:
                continue
            w = winners.get(v)
            if w is not None and w != (dates[i], times[i]):
                continue  # its newest row is in another block (another date folder)
            keep.append(i)
        return rows.take(pa.array(keep, pa.int64()))

    def error_winners(self, blocks_of: Callable[[], Iterator[Block]]) -> dict[str, tuple[str | None, Any]]:
        """{video id: (date folder, processed_at) of its current row} for the videos with more than
        one current-candidate error row: read once, three columns of the whole `errors` table."""
        if self._winners is not None:
            return self._winners
        cols = ["video_id", "processed_at", "date"]
        parts = []
        for block in blocks_of():
            t = self.read("errors", block, cols)
            ids = t.column("video_id")
            drop = self.gone.contains(ids) | self.ok.contains(ids)
            parts.append(t.filter(pa.array(~drop)) if drop.any() else t)
        narrow = pa.concat_tables(parts) if parts else pa.table({c: [] for c in cols})
        narrow = narrow.append_column("order", pa.array(range(narrow.num_rows), pa.int64()))
        counts = narrow.group_by("video_id").aggregate([("video_id", "count")])
        dup = counts.filter(pc.greater(counts.column("video_id_count"), 1)).column("video_id")
        self._winners = {}
        if len(dup):
            rows = narrow.filter(pc.is_in(narrow.column("video_id"), dup))
            rows = rows.take(pc.sort_indices(rows, sort_keys=[("video_id", "ascending"),
                                                               ("processed_at", "descending"), ("order", "ascending")]))
            for r in rows.to_pylist():
                self._winners.setdefault(r["video_id"], (r["date"], r["processed_at"]))
        return self._winners


def upgrade_table(ctx: _Source, dst: str, table: str, block_videos: int, say: Progress = print, every: int = 10,
                  max_batches: int | None = None) -> TableUpgrade:
    """Copy one video table's current rows into the Delta table ``DST/<table>``, a block per commit,
    skipping the blocks an earlier call committed (checked against their fingerprints), then check
    its row count. With `max_batches`, stop after that many new commits (nothing checked)."""
    def rows_of(block: Block, blocks_of: Callable[[], Iterator[Block]]) -> pa.Table:
        return ctx.current(table, ctx.read(table, block), blocks_of)

    return copy_blocks(ctx.src, dst, table, app_id(ctx.src), partition_cols(table), rows_of, block_videos, say,
                       every, max_batches)


def copy_blocks(src: str, dst: str, table: str, run: str, part: list[str],
                rows_of: Callable[[Block, Callable[[], Iterator[Block]]], pa.Table], block_videos: int,
                say: Progress = print, every: int = 10, max_batches: int | None = None) -> TableUpgrade:
    """The block loop of a table at a path under the index (a video table, or a rescoring's
    ``scorings/<id>/<table>``): its source files cut into blocks (`blocks`), each block's rows
    (`rows_of`) written and committed with the application transaction (`run`, block number), the
    blocks an earlier call committed skipped, then the row count checked."""
    started = time.time()
    res = TableUpgrade(table)
    state_uri = storage.join(dst, STATE_DIR, f"{table}.json")
    state = _read_json(state_uri) or {"app_id": run, "block_videos": block_videos, "batches": []}
    done = delta.open_table(dst, table).transaction_version(run)
    done = -1 if done is None else int(done)
    served = 0

    def blocks_of() -> Iterator[Block]:
        return blocks(src, table, block_videos)

    say(f"{table}: upgrading" + (f" (blocks 0-{done} committed by an earlier run)" if done >= 0 else ""))
    for batch, block in enumerate(blocks_of()):
        fp = block.fingerprint()
        if batch <= done:
            have = state["batches"][batch] if batch < len(state["batches"]) else None
            if have is None or have["fingerprint"] != fp:
                raise ExvadError(f"{table}: the source {src} changed since this upgrade began (block {batch} holds "
                                 f"other files now): remove {dst} and upgrade again")
            served += int(have["rows"])
            res.skipped += 1
            continue
        if max_batches is not None and res.batches >= max_batches:
            res.complete = False
            break
        rows = rows_of(block, blocks_of)
        if part:
            rows = rows.sort_by([(c, "ascending") for c in part] + [("video_id", "ascending")])
        values = _partition_values(rows, part)
        files = delta.write_files(dst, table, rows.drop_columns(part), values) if rows.num_rows else []
        del state["batches"][batch:]
        state["batches"].append({"fingerprint": fp, "rows": rows.num_rows, "files": len(block.files)})
        _write_json(state_uri, state)  # before the commit: a committed block always has its record
        delta.commit(dst, table, run, batch, files)
        served += rows.num_rows
        res.batches += 1
        if res.batches % every == 0:
            say(f"{table}: {batch + 1} blocks, {served:,} rows, {time.time() - started:.0f} s")
    if res.complete:
        res.rows, res.files = _check_counts(src, dst, table, served)
    res.seconds = time.time() - started
    if res.complete:
        say(f"{table}: {res.rows:,} rows in {res.files:,} files ({res.batches} blocks committed, "
            f"{res.skipped} already there), {res.seconds:.1f} s")
    return res


def _partition_values(rows: pa.Table, part: list[str]) -> list[dict[str, str]]:
    cols = [rows.column(c).to_pylist() for c in part]
    return [dict(zip(part, vals)) for vals in zip(*cols)] if part else [{}] * rows.num_rows


def snapshot_counts(dst: str, table: str) -> tuple[int, int]:
    """(rows, files) of the Delta table's current snapshot, from the log's record counts."""
    adds = pa.table(delta.open_table(dst, table, create=False).get_add_actions(flatten=True))
    if adds.num_rows == 0:
        return 0, 0
    counts = adds.column("num_records")
    if counts.null_count:
        raise ExvadError(f"{dst}/{table}: files without record counts in the Delta log; cannot check the upgrade")
    return int(pc.sum(counts).as_py()), adds.num_rows


def _check_counts(src: str, dst: str, table: str, served: int) -> tuple[int, int]:
    rows, files = snapshot_counts(dst, table)
    if rows != served:
        raise ExvadError(f"{table}: {served:,} rows served in {src} but {rows:,} in the Delta table "
                         f"{storage.join(dst, table)}: remove {dst} and upgrade again")
    return rows, files


# ---------------------------------------------------------------------------------------- scorings


def rescorings(src: str) -> list[str]:
    """Ids of the source's rescorings: every ``scorings/<id>/`` with a scoring.json (what
    `scorings.list_scorings` lists besides "process")."""
    root = storage.join(src, sc.SCORINGS_DIR)
    return [n for n in sorted(_top_level(root)) if n not in (sc.CURRENT, sc.CURRENT_TABLE)
            and storage.exists(storage.join(root, n, "scoring.json"))]


def scoring_app_id(src: str, scoring_id: str) -> str:
    """The application transaction id of a rescoring's upgrade (not the scoring id, which a later
    `exvad rescore` of DST commits its batches under, counting from 0)."""
    return f"{app_id(src)}:{scoring_id}"


def upgrade_scoring(src: str, dst: str, scoring_id: str, block_videos: int, say: Progress = print,
                    every: int = 10, max_batches: int | None = None) -> dict[str, TableUpgrade]:
    """Copy one rescoring's tables into the Delta tables ``DST/scorings/<id>/<table>`` (created
    with the scoring's columns and partitions, as a Delta index's rescore creates them), a block
    per commit, row counts checked; keyed by table path. Stops at the first incomplete table."""
    sc.create_delta_tables(dst, scoring_id)
    out: dict[str, TableUpgrade] = {}
    for table in sc.TABLES:
        path = sc.table_path(scoring_id, table)
        read = _scoring_reader(src, scoring_id, table)
        out[path] = copy_blocks(src, dst, path, scoring_app_id(src, scoring_id), sc.PARTITIONS[table],
                                lambda block, _blocks_of: read(block), block_videos, say, every, max_batches)
        if not out[path].complete:
            break
    return out


def _scoring_reader(src: str, scoring_id: str, table: str) -> Callable[[Block], pa.Table]:
    """A block's rows of a per-video scoring table as `scorings.read_scoring` serves them: the
    scoring's columns (missing ones null), partition columns from the folder names."""
    full = pa.schema(list(sc.schema(table)) + [pa.field(c, pa.string()) for c in sc.PARTITIONS[table]])
    part = pads.partitioning(pa.schema([(c, pa.string()) for c in sc.PARTITIONS[table]]), flavor="hive")
    root = storage.join(src, sc.table_path(scoring_id, table))
    fs, base = storage.arrow_filesystem(root)

    def read(block: Block) -> pa.Table:
        files = [base + f[len(root):] for f in block.files]
        return pads.dataset(files, schema=full, format="parquet", filesystem=fs, partitioning=part,
                            partition_base_dir=base).to_table()

    return read


def upgrade_current(src: str, dst: str, say: Progress = print) -> str | None:
    """The source's ``scorings/CURRENT.json`` as DST's current-scoring table (`scorings.set_current`,
    one commit, only when DST's table does not say so already); returns that scoring (None: the
    source has no CURRENT.json, so "process" is current in both)."""
    if not storage.exists(storage.join(src, sc.SCORINGS_DIR, sc.CURRENT)):
        return None
    sid = sc.current_scoring(src)
    table = f"{sc.SCORINGS_DIR}/{sc.CURRENT_TABLE}"
    if not (delta.is_delta(dst, table) and sc.current_scoring(dst) == sid):
        sc.set_current(dst, sid)
    say(f"current scoring: {sid} ({table})")
    return sid


# ------------------------------------------------------------------------------------ run manifests


def upgrade_runs(src: str, dst: str, say: Progress = print) -> int:
    """The source's run manifests as rows of DST's run log (`runs.write_manifests`: one commit, the
    runs DST already holds as they are left out), a manifest of an older schema version stamped
    with today's and the old one kept in ``upgraded_from``; then the run ids read back from DST
    checked against the source's. Returns the number of runs."""
    docs = [_upgraded_manifest(src, d) for d in runs.read_manifests(src)]
    written = runs.write_manifests(dst, docs)
    want = {str(d["run_id"]) for d in docs}
    got = {str(d["run_id"]) for d in runs.read_manifests(dst)}
    if got != want:
        diff = "; ".join(f"{what}: {', '.join(sorted(ids)[:5])}{', ...' if len(ids) > 5 else ''}"
                         for what, ids in (("missing", want - got), ("not in the source", got - want)) if ids)
        raise ExvadError(f"runs: {len(want):,} run manifests in {src} but {len(got):,} runs read back from "
                         f"{storage.join(dst, runs.RUN_LOG)} ({diff}): remove {dst} and upgrade again")
    say(f"runs: {len(got):,} run manifests in {runs.RUN_LOG} ({written} written, {len(docs) - written} "
        "already there)")
    return len(got)


def _upgraded_manifest(src: str, doc: dict[str, Any]) -> dict[str, Any]:
    """A manifest of an older schema version says today's (the tables are today's now) and what it
    was; one of today's stays as it is."""
    old = int(doc.get("index_schema_version") or 1)
    if old == SCHEMA_VERSION:
        return doc
    return {**doc, "index_schema_version": SCHEMA_VERSION,
            "upgraded_from": {"index": src, "index_schema_version": doc.get("index_schema_version", 1)}}


def _is_manifest(rel: str) -> bool:
    """A run manifest as `runs.read_manifests` finds one (``runs/run-*.json``, directly in runs/)."""
    parts = rel.split("/")
    return len(parts) == 2 and parts[0] == RUNS_DIR and runs.is_manifest_name(parts[1])


# ------------------------------------------------------------------------------------ other content


def copy_other(src: str, dst: str, say: Progress | None = None) -> int:
    """Copy everything under `src` that is not a video table, a scoring table, CURRENT.json, a run
    manifest (`upgrade_runs`) or a lease (settings, labels, scoring manifests, the search sidecar,
    tombstones, other files under runs/); returns files copied."""
    skip = {*VIDEO_TABLES, LEASE_FILE, STATE_DIR}
    converted = set(rescorings(src))
    orphans: set[str] = set()
    n = 0
    for name in sorted(_top_level(src)):
        if name in skip:
            continue
        for page in storage.iter_objects(storage.join(src, name), stat=False):
            for f, _ in page:
                if "/.tmp-" in f:
                    continue
                if name == sc.SCORINGS_DIR:
                    parts = f[len(src) + 1:].split("/")
                    if parts[1:] == [sc.CURRENT]:
                        continue  # becomes the table scorings/current (upgrade_current)
                    if len(parts) > 3 and parts[2] in sc.TABLES:
                        if parts[1] not in converted:
                            orphans.add(parts[1])
                        continue  # Delta tables now (upgrade_scoring), or files no reader serves
                if _is_manifest(f[len(src) + 1:]):
                    continue  # a row of DST's run log now (upgrade_runs)
                _copy(f, storage.join(dst, f[len(src) + 1:]))
                n += 1
        if _is_file(src, name):  # a file at the top level (settings.json)
            _copy(storage.join(src, name), storage.join(dst, name))
            n += 1
    for sid in sorted(orphans) if say else []:
        say(f"{sc.SCORINGS_DIR}/{sid}: no scoring.json (a rescore killed before writing it): its table files "
            "were not copied")
    return n


def _is_file(src: str, name: str) -> bool:
    fs, path = storage.filesystem(storage.join(src, name))
    try:
        return bool(fs.isfile(path))
    except FileNotFoundError:
        return False


def _copy(a: str, b: str) -> None:
    with storage.open_file(a, "rb") as fa, storage.open_file(b, "wb") as fb:
        shutil.copyfileobj(fa, fb, 1 << 20)
