"""What a run has to do: the archive listing against the index, with every file accounted for.

Each listed video is new, changed since it was indexed (its old rows are superseded), done
before, or failed before (retried with ``--retry-errors``); every other object is ignored with a
reason. The counts go into the run summary so that a rerun never reports failures as "already
indexed" and never hides ignored files.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pyarrow as pa

from exvad_ray import storage
from exvad_ray import index as idx
from exvad_ray.index import scorings
from exvad_ray.index.partitions import PartitionRules
from exvad_ray.index.supersede import find_replaced, mark_superseded


@dataclasses.dataclass
class WorkCounts:
    """How the listing splits (all in videos, except `ignored`, in files by reason)."""

    new: int = 0
    changed: int = 0
    done_before: int = 0
    failed_before: int = 0
    retried: int = 0
    deferred: int = 0  # left for a later run by --limit
    ignored: dict[str, int] = dataclasses.field(default_factory=dict)
    retried_ids: set[str] = dataclasses.field(default_factory=set)  # which of the items failed before

    @property
    def skipped(self) -> int:
        return self.done_before + self.failed_before


def plan_work(cfg: Any, date: str, page: int = 10_000) -> tuple[list[dict[str, Any]], WorkCounts]:
    """Archive items still to process (per job.list_work's item layout) and the counts.

    Streamed and bounded: the archive is listed `page` objects at a time and each page's ids (their
    16 bytes; strings only for the videos still to do) are looked up in the done set, held as
    sorted 16-byte keys (`index.done_set`: ~16 bytes per indexed video, built once), so the driver
    keeps one page and the videos still to do, never a Python object per listed or indexed video.
    `find_replaced` sees only the URIs still to do: over an unchanged archive nothing is read but
    the listings."""
    ok = idx.done_set(cfg.index, "videos")
    failed = idx.done_set(cfg.index, "errors", exclude=ok)  # failed, never finished since
    counts = WorkCounts()
    ignored: dict[str, int] = {}
    todo: list[tuple[storage.VideoEntry, str, bool]] = []  # (entry, video id, failed before)
    for part in _archive_pages(cfg, page):
        for why, n in part.ignored.items():
            ignored[why] = ignored.get(why, 0) + n
        if not part.entries:
            continue
        keys = np.frombuffer(b"".join([e.key for e in part.entries]), np.uint8).reshape(-1, 16)
        is_ok = ok.contains_keys(keys)
        is_failed = failed.contains_keys(keys) & ~is_ok
        counts.done_before += int(is_ok.sum())
        if cfg.retry_errors:
            counts.retried += int(is_failed.sum())
            keep = ~is_ok
        else:
            counts.failed_before += int(is_failed.sum())
            keep = ~is_ok & ~is_failed
        for i in np.flatnonzero(keep):
            todo.append((part.entries[i], part.entries[i].video_id, bool(is_failed[i])))
    del ok, failed
    counts.ignored = dict(sorted(ignored.items()))
    replaced = find_replaced(cfg.index, {storage.normalize(e.uri): vid for e, vid, was_failed in todo
                                         if not was_failed})
    if replaced:
        mark_superseded(cfg.index, replaced)
        scorings.delete_videos(cfg.index, sorted(replaced))  # and from the rescorings' Delta tables
    new_ids = {new for _, new in replaced.values()}
    rules = PartitionRules(cfg.archive, date, cfg.date_pattern, cfg.camera_pattern)
    items = []
    for e, vid, was_failed in todo:
        counts.changed += vid in new_ids
        if was_failed:
            counts.retried_ids.add(vid)
        found = rules.path_time(e.uri)  # recording time in the path, if any (see decode.recorded_time)
        items.append({"uri": e.uri, "video_id": vid, "size": e.size, "etag": e.etag or "",
                      "date": rules.date(e.uri), "camera": rules.camera(e.uri), "processing_date": date,
                      "path_time": found[0].isoformat() if found else "", "path_has_time": bool(found and found[1])})
    counts.new = len(items) - counts.changed - counts.retried
    if cfg.limit is not None:
        counts.deferred = max(0, len(items) - cfg.limit)
        items = items[: cfg.limit]
    return items, counts


def _archive_pages(cfg: Any, page: int) -> Any:
    """The archive's pages: listed, or read from an S3 Inventory report (`--inventory`), which
    gives the same pages for the objects it holds without listing a bucket of 1e7 objects."""
    hash_content = getattr(cfg, "content_hash", False)
    inventory = getattr(cfg, "inventory", None)
    if inventory:
        return storage.iter_inventory(inventory, cfg.archive, extensions=cfg.extensions,
                                      hash_content=hash_content, page=page)
    return storage.iter_archive(cfg.archive, extensions=cfg.extensions, hash_content=hash_content, page=page)


def summary_counts(counts: WorkCounts) -> dict[str, Any]:
    return {"videos_new": counts.new, "videos_changed": counts.changed, "videos_retried": counts.retried,
            "videos_done_before": counts.done_before, "videos_failed_before": counts.failed_before,
            "videos_skipped": counts.skipped, "videos_deferred": counts.deferred,
            "files_ignored": dict(counts.ignored)}


def format_counts(s: dict[str, Any]) -> list[str]:
    """The summary lines about what was listed and what was left alone."""
    ign = s.get("files_ignored") or {}
    lines = [
        f"  listed:   {s.get('videos_new', 0)} new, {s.get('videos_changed', 0)} changed since indexed "
        f"(old rows superseded), {s.get('videos_retried', 0)} retried, {s.get('videos_deferred', 0)} left by --limit",
        f"  before:   {s.get('videos_done_before', 0)} done before, {s.get('videos_failed_before', 0)} failed before"
        + (" (rerun with --retry-errors to retry them)" if s.get("videos_failed_before") else ""),
        f"  ignored:  {sum(ign.values())} files" + (" (" + ", ".join(f"{n} {k}" for k, n in ign.items()) + ")"
                                                    if ign else ""),
    ]
    return lines


def final_snapshot(index: str, items: list[dict[str, Any]], progress: Any) -> dict[str, Any]:
    """The progress actor's last counts, with failures taken from the index (the truth even when
    the actor was lost with a node and restarted empty): this run's items that have an error row."""
    import ray

    try:
        snapshot = dict(ray.get(progress.snapshot.remote(), timeout=60))
        ray.kill(progress)
    except Exception:  # noqa: BLE001 - lost with its node: the index still knows
        snapshot = {"segments": {}, "done": 0}
    from exvad_ray.index.supersede import current_rows

    ids = sorted({i["video_id"] for i in items})
    # this run's videos' error rows only (never the whole table), under the read rules
    stored = idx.read_video_rows(index, "errors", ids, ["video_id", "stage", "reason", "processed_at"])
    failed = sorted(set(stored.column("video_id").to_pylist()))
    # which of those finished since (a retry that succeeded): the done set only when there is a failure
    hit = idx.done_set(index, "videos").contains(pa.array(failed, pa.string())) if failed else []
    ok = {v for v, h in zip(failed, hit) if h}
    mine = current_rows(index, "errors", stored, ok_ids=ok).to_pylist()
    reasons: dict[str, int] = {}
    for e in mine:
        key = f"{e['stage']}:{e['reason']}"
        reasons[key] = reasons.get(key, 0) + 1
    snapshot.update(failed=len(mine), errors=reasons)
    return snapshot
