"""Deleting videos from a Delta table by rewriting only the files that hold them.

delta-rs's delete (``DELETE ... WHERE video_id IN (...)``) finds its files by statistics, and video
ids are random: every file's min/max range covers them, so it reads the `video_id` column of every
file of the table before rewriting the few that hold a match (77 s and 1.3 GB for 1% of a 1e5-video
archive replaced; bench/RESULTS.md). The id cache (`index.idmap`) already says which file holds
which video, so the files are known without reading the others: each is read whole, written again
beside itself without the videos' rows, and the removes and adds are one commit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa

from exvad_ray.errors import StorageUnavailable
from exvad_ray.index import delta, idmap

log = logging.getLogger(__name__)


def delete_videos(index: str, table: str, video_ids: Iterable[str]) -> int:
    """Delete every row of these videos from the Delta table (replaced content, an error row
    retried successfully); returns the rows deleted. Idempotent: deleting absent videos commits
    nothing.

    The files holding them are found through the cache (`_files_holding`), each is rewritten
    without their rows beside itself (`delta.rewrite_without`; none when no row remains), and one
    commit per `delta.FILES_PER_COMMIT` files removes them and adds the rewrites
    (`delta.commit_rewrites`); the rewrites' ids are recorded as a fragment, so the next reader does
    not open them. A table the cache cannot map (a log the log walk does not follow, such as
    deletion vectors; a file without `video_id`; a file outside the folders of its partition
    values) is deleted from by delta-rs's predicate delete (`delta.delete_by_predicate`): never a lost
    row. One writer at a time (the index lease), as for every commit of the index."""
    ids = delta.check_video_ids(video_ids)
    if not ids:
        return 0
    t = delta.open_table(index, table)
    want = pa.array(ids, pa.string())
    plan = _files_holding(index, table, delta.partition_columns(t), want)
    if plan is None:
        return delta.delete_by_predicate(index, table, ids)
    deleted = 0
    for a in range(0, len(plan), delta.FILES_PER_COMMIT):
        if a:
            t.update_incremental()  # the next commit reads the version the previous one made
        deleted += _rewrite_and_commit(index, table, t, plan[a:a + delta.FILES_PER_COMMIT], want)
    return deleted


def _files_holding(index: str, table: str, part: Sequence[str], want: pa.Array
                   ) -> list[tuple[str, str, str, dict[str, str | None]]] | None:
    """(file URI, path relative to the table, its folder, its partition values) of each snapshot
    file holding rows of the ids `want`; only the matching rows are kept while the cache's rows
    stream by (memory grows with the matches, not the table). None when the cache cannot map the
    table's files: the caller deletes by predicate."""
    try:
        snap = idmap.Snapshot.from_log(index, table)
        if snap is None:  # deletion vectors, a v2 checkpoint...: delta-rs knows what the files mean
            log.info("%s: a log the id cache does not follow; deleting by predicate", table)
            return None
        _, found = idmap.files_holding(index, table, want, snap)
    except StorageUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. a file without a video_id column
        log.warning("%s: the id cache cannot map its files (%s); deleting by predicate", table, exc)
        return None
    out = []
    for pos in found:
        key = snap.keys[int(pos)].as_py()
        where = delta.file_partition(key, part)
        if where is None:
            log.warning("%s: file %s is not in the folder of its partition values; deleting by predicate", table, key)
            return None
        out.append((snap.uri(int(pos)), key, *where))
    return out


def _rewrite_and_commit(index: str, table: str, t: Any, files: list[tuple[str, str, str, dict[str, str | None]]],
                        want: pa.Array) -> int:
    """Rewrite these files without the rows of `want` (`idmap.READ_THREADS` at once), commit their
    removes and the rewrites' adds in one commit, record the rewrites' ids. Returns the rows
    deleted."""
    with ThreadPoolExecutor(idmap.READ_THREADS) as pool:
        done = list(pool.map(lambda f: delta.rewrite_without(index, table, f[0], f[2], f[3], want), files))
    removed = [(key, size, values) for (_, key, _, values), (dropped, size, _, _) in zip(files, done) if dropped]
    if not removed:  # the cache named files holding none of the ids (not expected: files never change)
        return 0
    adds = [add for _, _, add, _ in done if add is not None]
    delta.commit_rewrites(index, table, t, removed, adds)
    idmap.record_files(index, table, [(add["path"], vids) for _, _, add, vids in done if add is not None])
    return sum(dropped for dropped, _, _, _ in done)
