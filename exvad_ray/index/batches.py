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

from exvad_ray.index import delta
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


def write_batch(index: str, videos: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Write a batch of finished videos' rows; returns each table's add actions for `commit_batch`.

    `videos`: one dict per video, table -> (partition values, columns) or a list of such pairs
    (`segments`: one per class), as `assemble.build_video_tables` makes them."""
    rows: dict[str, list[pa.Table]] = {}
    parts: dict[str, list[dict[str, str]]] = {}
    for tables in videos:
        for table, items in tables.items():
            for values, cols in (items if isinstance(items, list) else [items]):
                t = conform(table, cols)
                rows.setdefault(table, []).append(t)
                parts.setdefault(table, []).extend([values] * t.num_rows)
    out: dict[str, list[dict[str, Any]]] = {}
    for table, chunks in rows.items():
        body = pa.concat_tables(chunks)
        out[table] = delta.write_files(index, table, body, parts[table]) if body.num_rows else []
    return out


def next_batch(index: str, run_id: str) -> int:
    """The number of the run's next batch: one past the highest any table holds (a rerun of a killed
    run goes on counting, so that no batch number is ever reused)."""
    done = [delta.committed_batch(index, t, run_id) for t in BATCH_TABLES]
    return max([d for d in done if d is not None], default=-1) + 1


def commit_batch(index: str, run_id: str, batch: int, adds: dict[str, list[dict[str, Any]]],
                 video_ids: Sequence[str]) -> None:
    """Commit one batch to every batch table, `videos` last. A table that already holds the batch
    (a retried commit) is skipped, so calling this twice adds nothing."""
    meta = {IDS_KEY: json.dumps(sorted(video_ids))}
    for table in BATCH_TABLES:
        delta.commit(index, table, run_id, batch, adds.get(table, []), metadata=meta)


def repair(index: str, run_ids: Iterable[str]) -> dict[str, int]:
    """Delete the rows of batches that a killed run committed to some tables but not to `videos`;
    returns the videos whose rows were deleted, per table."""
    out: dict[str, int] = {}
    for run_id in run_ids:
        done = delta.committed_batch(index, "videos", run_id)
        done = -1 if done is None else done
        for table in BATCH_TABLES[:-1]:
            held = delta.committed_batch(index, table, run_id)
            if held is None or held <= done:
                continue
            ids: set[str] = set()
            for entry in delta.open_table(index, table).history(REPAIR_HISTORY):
                if entry.get(RUN_KEY) == run_id and int(entry.get(BATCH_KEY, -1)) > done:
                    ids.update(json.loads(entry.get(IDS_KEY) or "[]"))
            if ids:
                delta.delete_videos(index, table, ids)
                out[table] = out.get(table, 0) + len(ids)
    return out
