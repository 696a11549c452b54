"""The archive job's writes on Delta tables: batches of videos written by workers, committed by
the driver, exactly once whatever is killed when.

A batch is the rows of K finished videos (`write_batch`, on a worker): one Parquet file per table
and partition, not one per video per table. The driver commits it as batch b of the run
(`commit_batch`): one commit per table with the application transaction (app id = run id, version
= b), `videos` last, because a `videos` row is what makes a video done for the next run's
planning. Each commit also records the batch's video ids in its metadata.

Killed between two of a batch's commits, a run leaves rows in `snippets` (say) of videos that are
not done: the rerun would process them again and add their rows twice. `repair` finds such
batches before planning (a table holding batch b of a run whose `videos` does not) and deletes
those videos' rows from the tables that hold them, using the ids the commits recorded. Files a
killed worker wrote but no commit added are never read (readers follow the log) and vacuum
removes them (`exvad compact`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.ipc  # noqa: F401 - pa.ipc

from exvad_ray.index import delta, deletes
from exvad_ray.index.schemas import conform

# commit order of a batch: `videos` last (its row marks a video done)
BATCH_TABLES = ("snippets", "segments", "captions", "videos")
IDS_KEY = "exvad.video_ids"
RUN_KEY = "exvad.run_id"
BATCH_KEY = "exvad.batch"
# how far back in a table's history `repair` looks for a killed run's last commits: a kill leaves
# at most one partial batch per table, and only commits after it can push it further back
REPAIR_HISTORY = 500


def create_tables(index: str, tables: Iterable[str] = (*BATCH_TABLES, "errors")) -> None:
    """Create the index's Delta tables that do not exist yet (the driver does, before workers write)."""
    for table in tables:
        delta.open_table(index, table)


PART_PREFIX = "_partition."  # a packed table's partition-value columns


def pack(tables: dict[str, Any]) -> bytes:
    """One finished video's rows as bytes that travel from the assembler to the batch writer:
    per table an Arrow IPC stream of its rows (conformed to the schema) with the partition values
    as extra string columns, after a one-line JSON header of the tables and their lengths. Arrow,
    not pickle: nothing that reads these bytes can run code from them."""
    blobs: list[tuple[str, bytes]] = []
    for table, items in tables.items():
        rows, values = _rows_and_partitions(table, items)
        for col in sorted({k for v in values for k in v}):
            rows = rows.append_column(PART_PREFIX + col, pa.array([v[col] for v in values], pa.string()))
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, rows.schema) as w:
            w.write_table(rows)
        blobs.append((table, sink.getvalue().to_pybytes()))
    head = json.dumps([[t, len(b)] for t, b in blobs]).encode() + b"\n"
    return head + b"".join(b for _, b in blobs)


def unpack(data: bytes) -> dict[str, tuple[pa.Table, list[dict[str, str]]]]:
    """`pack`'s bytes back: table -> (rows, each row's partition values)."""
    head, _, rest = data.partition(b"\n")
    out: dict[str, tuple[pa.Table, list[dict[str, str]]]] = {}
    at = 0
    for table, size in json.loads(head):
        t = pa.ipc.open_stream(pa.py_buffer(rest[at:at + size])).read_all()
        at += size
        cols = [c for c in t.column_names if c.startswith(PART_PREFIX)]
        values = [{c[len(PART_PREFIX):]: r[c] for c in cols} for r in t.select(cols).to_pylist()] if cols \
            else [{}] * t.num_rows
        out[table] = (t.drop_columns(cols), values)
    return out


def _rows_and_partitions(table: str, items: Any) -> tuple[pa.Table, list[dict[str, str]]]:
    """A video's rows of one table, given as (partition values, columns) or a list of such pairs."""
    chunks, values = [], []
    for v, cols in (items if isinstance(items, list) else [items]):
        t = conform(table, cols)
        chunks.append(t)
        values.extend([dict(v)] * t.num_rows)
    return pa.concat_tables(chunks), values


def write_batch(index: str, videos: Sequence[bytes | dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Write a batch of finished videos' rows; returns each table's add actions for `commit_batch`.

    `videos`: one item per video, `pack`'s bytes or the dict it packs (table -> (partition values,
    columns) or a list of such pairs, `segments` one per class, as `assemble.build_video_tables`
    makes them)."""
    pending: dict[str, tuple[list[pa.Table], list[dict[str, str]]]] = {}
    for item in videos:
        tables = unpack(item) if isinstance(item, (bytes, bytearray)) else {
            t: _rows_and_partitions(t, x) for t, x in item.items()}
        for table, (t, values) in tables.items():
            chunks, parts = pending.setdefault(table, ([], []))
            chunks.append(t)
            parts.extend(values)
    return write_rows(index, pending)


def write_rows(index: str, pending: dict[str, tuple[list[pa.Table], list[dict[str, str]]]],
               prefix: str = "") -> dict[str, list[dict[str, Any]]]:
    """Each table's gathered rows (chunks, each row's partition values) as one file per partition
    (`delta.write_files`); returns the add actions by table name (as given, without `prefix`, the
    tables' path under the index: a rescoring's ``scorings/<id>/``). Tables without rows: none."""
    return {table: delta.write_files(index, prefix + table, pa.concat_tables(chunks), parts)
            for table, (chunks, parts) in pending.items() if sum(t.num_rows for t in chunks)}


def next_batch(index: str, run_id: str, tables: Sequence[str] = BATCH_TABLES) -> int:
    """The number of the run's next batch: one past the highest any table holds (a rerun of a killed
    run goes on counting, so that no batch number is ever reused). `tables`: the batch tables in
    commit order (a rescoring's: ``scorings/<id>/<table>``, run id = scoring id)."""
    done = [delta.committed_batch(index, t, run_id) for t in tables]
    return max([d for d in done if d is not None], default=-1) + 1


def commit_batch(index: str, run_id: str, batch: int, adds: dict[str, list[dict[str, Any]]],
                 video_ids: Sequence[str], tables: Sequence[str] = BATCH_TABLES) -> None:
    """Commit one batch to every batch table (`tables`, in order: the last one's row marks a video
    done), `adds` keyed by table. A table that already holds the batch (a retried commit) is
    skipped, so calling this twice adds nothing."""
    meta = {IDS_KEY: json.dumps(sorted(video_ids))}
    for table in tables:
        delta.commit(index, table, run_id, batch, adds.get(table, []), metadata=meta)


def repair(index: str, run_ids: Iterable[str], tables: Sequence[str] = BATCH_TABLES) -> dict[str, int]:
    """Delete the rows of batches that a killed run committed to some of `tables` but not to the
    last one (`videos`); returns the videos whose rows were deleted, per table."""
    out: dict[str, int] = {}
    for run_id in run_ids:
        done = delta.committed_batch(index, tables[-1], run_id)
        done = -1 if done is None else done
        for table in tables[:-1]:
            held = delta.committed_batch(index, table, run_id)
            if held is None or held <= done:
                continue
            ids: set[str] = set()
            for entry in delta.open_table(index, table).history(REPAIR_HISTORY):
                if entry.get(RUN_KEY) == run_id and int(entry.get(BATCH_KEY, -1)) > done:
                    ids.update(json.loads(entry.get(IDS_KEY) or "[]"))
            if ids:
                deletes.delete_videos(index, table, ids)
                out[table] = out.get(table, 0) + len(ids)
    return out
