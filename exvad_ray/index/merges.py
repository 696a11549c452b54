"""Merging a Delta table's small files, one partition folder at a time, without delta-rs's optimize.

delta-rs 1.6.6's `optimize.compact` spends about 24 ms per file it merges whatever their size
(measured on the job's `captions` table at 1e6 videos: one date's 100 camera folders, 712 files,
16.9 s; the whole table about 28 minutes), so `exvad compact` on a 1e6-video index had not finished
two of its five tables after 45 minutes. The files and their folders are known from the log's paths
(`idmap.Snapshot`), so the merge is plain Parquet: each folder's small files are read whole,
written as one file (or several of at most TARGET_BYTES), and the removes and adds go into one
commit per `delta.FILES_PER_COMMIT` merged files, marked as an optimize (data_change false: no row
changes). The same date took 1.4 s. The new files' ids are recorded in the id cache, so no reader
opens them to learn which videos they hold.

A table whose log the id cache's walk does not follow (deletion vectors, a v2 checkpoint), or
whose files are not in the folders of their partition values, is merged by delta-rs's optimize
(`merge_small_files` returns None and the caller falls back); so is z-ordering.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from exvad_ray.index import delta, idmap

log = logging.getLogger(__name__)

TARGET_BYTES = 128 * 2**20  # a merged file's size at most (delta-rs's optimize aims at 100 MiB); larger files stay

Folder = tuple[str, dict[str, str | None], list[str]]  # (folder, its partition values, its files' keys)
Small = tuple[str, dict[str, str | None], list[tuple[str, int]]]  # (folder, values, its small files' (key, size))


def merge_small_files(index: str, table: str, min_files: int = 2, target_bytes: int = TARGET_BYTES
                      ) -> dict[str, int] | None:
    """Merge each partition folder's files smaller than `target_bytes` when it has at least
    `min_files` of them; returns delta-rs's metric names (numFilesRemoved, numFilesAdded), or None
    when the table must go through delta-rs's optimize instead (module docstring). Idempotent: a
    folder of one small file is left as it is. One writer at a time (the index lease)."""
    snap = idmap.Snapshot.from_log(index, table)
    if snap is None:
        log.info("%s: a log the id cache does not follow; merging with delta-rs's optimize", table)
        return None
    t = delta.open_table(index, table, create=False)
    folders = _folders(snap, delta.partition_columns(t))
    if folders is None:
        log.info("%s: a file outside the folder of its partition values; merging with delta-rs's optimize", table)
        return None
    removed = added = pending = 0
    batch: list[Small] = []
    for f in _small(snap, folders, min_files, target_bytes):
        batch.append(f)
        pending += len(f[2])
        if pending >= delta.FILES_PER_COMMIT:
            r, a = _merge_and_commit(index, table, t, snap, batch, target_bytes)
            removed, added, batch, pending = removed + r, added + a, [], 0
            t.update_incremental()  # the next commit reads the version this one made
    if batch:
        r, a = _merge_and_commit(index, table, t, snap, batch, target_bytes)
        removed, added = removed + r, added + a
    return {"numFilesRemoved": removed, "numFilesAdded": added}


def _folders(snap: idmap.Snapshot, part: list[str]) -> list[Folder] | None:
    """The snapshot's files grouped by folder (its keys are sorted, so a folder's files are
    consecutive), with the folder's partition values; None when a file is not where its values say."""
    out: list[Folder] = []
    for key in snap.keys.to_pylist():
        where = delta.file_partition(key, part)
        if where is None:
            return None
        if out and out[-1][0] == where[0]:
            out[-1][2].append(key)
        else:
            out.append((*where, [key]))
    return out


def _small(snap: idmap.Snapshot, folders: list[Folder], min_files: int, target_bytes: int) -> Iterator[Small]:
    """Each folder worth merging with its small files' (key, size): sizes are asked only for
    folders of at least `min_files` files."""
    for folder, values, keys in folders:
        if len(keys) < min_files:
            continue
        sizes = delta.file_sizes([snap.root + k for k in keys])
        small = [(k, s) for k, s in zip(keys, sizes) if s < target_bytes]
        if len(small) >= min_files:
            yield folder, values, small


def _bins(files: list[tuple[str, int]], target_bytes: int) -> list[list[tuple[str, int]]]:
    """Consecutive runs of files whose sizes add up to at most `target_bytes` (at least one file each)."""
    out: list[list[tuple[str, int]]] = [[]]
    total = 0
    for f in files:
        if out[-1] and total + f[1] > target_bytes:
            out.append([])
            total = 0
        out[-1].append(f)
        total += f[1]
    return out


def _merge_and_commit(index: str, table: str, t: Any, snap: idmap.Snapshot, batch: list[Small],
                      target_bytes: int) -> tuple[int, int]:
    """Merge these folders' files (`idmap.READ_THREADS` bins at once), one commit removing them and
    adding the merged files, their ids recorded in the cache. Returns (files removed, files added)."""
    jobs = [(folder, values, b) for folder, values, files in batch for b in _bins(files, target_bytes) if len(b) > 1]
    if not jobs:
        return 0, 0
    with ThreadPoolExecutor(idmap.READ_THREADS) as pool:
        done = list(pool.map(lambda j: delta.merge_files(index, table, [snap.root + k for k, _ in j[2]], j[0], j[1]),
                             jobs))
    removed = [(k, s, values) for _, values, b in jobs for k, s in b]
    delta.commit_rewrites(index, table, t, removed, [add for add, _ in done], operation="optimize")
    idmap.record_files(index, table, [(add["path"], ids) for add, ids in done])
    return len(removed), len(done)
