"""Findings 3, 5, 7, 8 at the index level (no Ray): superseded rows are not served and compaction
removes them; a retried video's old error row is superseded; the index refuses other settings;
the lease lets one job write an index at a time and expires when its holder dies."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import time

import pytest

from exvad_ray import storage
from exvad_ray.errors import ConfigError
from exvad_ray import index as idx
from exvad_ray.pipeline.identity import check_index_settings, update_index_settings
from exvad_ray.pipeline.job import ProcessConfig
from exvad_ray.pipeline.lease import IndexLease, LeaseHeld
from exvad_ray.index.supersede import find_replaced, mark_superseded
from exvad_ray.pipeline.worklist import plan_work

OLD, NEW, OTHER = ("00000000-0000-0000-0000-0000000000a1", "00000000-0000-0000-0000-0000000000a2",
                   "00000000-0000-0000-0000-0000000000b1")


def _error_row(vid: str, uri: str, when: str) -> dict:
    import datetime as dt

    return {"video_id": [vid], "uri": [uri], "size_bytes": [1], "stage": ["decode"], "error_type": ["E"],
            "reason": ["truncated"], "message": ["m"], "detail": [None], "run_id": ["r"],
            "processed_at": [dt.datetime.fromisoformat(when)]}


def _video_row(vid: str, uri: str) -> dict:
    cols = {f.name: [None] for f in idx.arrow_schema("videos")}
    cols.update(video_id=[vid], uri=[uri], name=["a"], status=["ok"])
    return cols


def test_changed_content_supersedes_old_rows_and_compact_removes_them(tmp_path):
    index = str(tmp_path / "index")
    uri = str(tmp_path / "archive" / "a.mp4")
    part = {"date": "2026-01-01", "camera": "c"}
    for vid in (OLD, OTHER):
        u = uri if vid == OLD else uri.replace("a.mp4", "b.mp4")
        idx.write_video_tables(index, vid, {"videos": (part, _video_row(vid, u))})
    replaced = find_replaced(index, {storage.normalize(uri): NEW})
    assert replaced == {OLD: (uri, NEW)}
    mark_superseded(index, replaced)
    idx.write_video_tables(index, NEW, {"videos": (part, _video_row(NEW, uri))})
    served = idx.read_table(index, "videos", columns=["video_id"]).column("video_id").to_pylist()
    assert sorted(served) == sorted([NEW, OTHER])  # the old content's row is not served
    assert idx.read_table(index, "videos", current=False).num_rows == 3
    idx.compact(index, tables=["videos"])
    assert sorted(idx.read_table(index, "videos", current=False).column("video_id").to_pylist()) == sorted([NEW, OTHER])


def test_compact_purges_superseded_ids_inside_merged_files(tmp_path):
    index = str(tmp_path / "index")
    part = {"date": "2026-01-01", "camera": "c"}
    for vid in (OLD, OTHER):
        idx.write_video_tables(index, vid, {"videos": (part, _video_row(vid, f"/a/{vid}.mp4"))})
    idx.compact(index, tables=["videos"])
    mark_superseded(index, {OLD: ("/a/x.mp4", NEW)})
    idx.compact(index, tables=["videos"])
    assert idx.read_table(index, "videos", current=False).column("video_id").to_pylist() == [OTHER]
    assert idx.done_video_ids(index, ("videos",)) == {OTHER}


def test_retry_success_supersedes_the_error_row(tmp_path):
    """Finding 5: a video that failed, then succeeded with --retry-errors, is not also 'failed'."""
    index = str(tmp_path / "index")
    uri = "/archive/a.mp4"
    idx.write_video_tables(index, OLD, {"errors": ({"date": "2026-01-01"}, _error_row(OLD, uri, "2026-01-01T00:00:00+00:00"))})
    idx.write_video_tables(index, OLD, {"errors": ({"date": "2026-01-02"}, _error_row(OLD, uri, "2026-01-02T00:00:00+00:00"))})
    errs = idx.read_table(index, "errors")
    assert errs.num_rows == 1 and str(errs.column("date")[0]) == "2026-01-02"  # newest failure only
    idx.write_video_tables(index, OLD, {"videos": ({"date": "2026-01-02", "camera": "c"}, _video_row(OLD, uri))})
    assert idx.read_table(index, "errors").num_rows == 0
    assert idx.read_table(index, "videos").num_rows == 1
    idx.compact(index)
    assert idx.read_table(index, "errors", current=False).num_rows == 0


def _cfg(tmp_path, **kw) -> ProcessConfig:
    return ProcessConfig(archive=str(tmp_path / "archive"), index=str(tmp_path / "index"), **{"profile": "tiny", **kw})


def test_rerun_with_other_settings_refuses(tmp_path):
    """Finding 7: a rerun with another label set or threshold used to skip everything silently."""
    from exvad_ray.detector.localize import LocalizationConfig

    base = _cfg(tmp_path, label_set="synthetic")
    check_index_settings(base)
    check_index_settings(dataclasses.replace(base, limit=3, decode_tasks=1))  # not output-changing
    with pytest.raises(ConfigError, match="label_set 'synthetic' \\(now 'ucf-crime'\\).*new --index"):
        check_index_settings(dataclasses.replace(base, label_set="ucf-crime"))
    with pytest.raises(ConfigError, match="threshold 0.5 \\(now 0.7\\).*exvad rescore"):
        check_index_settings(dataclasses.replace(base, localization=LocalizationConfig(threshold=0.7)))
    update_index_settings(base.index, threshold=0.7)  # what `exvad rescore` records
    check_index_settings(dataclasses.replace(base, localization=LocalizationConfig(threshold=0.7)))


def test_summary_counts_split_the_listing(tmp_path):
    """Finding 7: failed videos are 'failed before' (not 'already indexed'); ignored files counted."""
    archive = tmp_path / "archive"
    archive.mkdir()
    for name in ("ok.mp4", "bad.mp4", "new.mp4", "readme.txt"):
        (archive / name).write_bytes(name.encode())
    cfg = _cfg(tmp_path)
    ids = {os.path.basename(e.uri): e.video_id for e in storage.list_videos(str(archive))}
    idx.write_video_tables(cfg.index, ids["ok.mp4"], {"videos": ({"date": "d", "camera": "c"},
                                                                 _video_row(ids["ok.mp4"], str(archive / "ok.mp4")))})
    idx.write_video_tables(cfg.index, ids["bad.mp4"], {"errors": ({"date": "d"}, _error_row(
        ids["bad.mp4"], str(archive / "bad.mp4"), "2026-01-01T00:00:00+00:00"))})
    items, c = plan_work(cfg, "2026-01-01")
    assert [os.path.basename(i["uri"]) for i in items] == ["new.mp4"]
    assert (c.new, c.done_before, c.failed_before, c.changed, c.ignored) == (1, 1, 1, 0, {"not a video extension": 1})
    items, c = plan_work(dataclasses.replace(cfg, retry_errors=True), "2026-01-01")
    assert sorted(os.path.basename(i["uri"]) for i in items) == ["bad.mp4", "new.mp4"] and c.retried == 1
    from exvad_ray.pipeline.worklist import format_counts, summary_counts

    text = "\n".join(format_counts(summary_counts(plan_work(cfg, "2026-01-01")[1])))
    assert "1 failed before (rerun with --retry-errors to retry them)" in text and "1 not a video extension" in text


def test_changed_file_is_listed_as_changed_and_old_rows_superseded(tmp_path):
    archive = tmp_path / "archive"
    archive.mkdir()
    f = archive / "a.mp4"
    f.write_bytes(b"A" * 100)
    os.utime(f, (1_700_000_000, 1_700_000_000))
    cfg = _cfg(tmp_path)
    (e,) = storage.list_videos(str(archive))
    idx.write_video_tables(cfg.index, e.video_id, {"videos": ({"date": "d", "camera": "c"}, _video_row(e.video_id, e.uri))})
    f.write_bytes(b"B" * 100)  # same size, new bytes
    items, c = plan_work(cfg, "2026-01-01")
    assert len(items) == 1 and items[0]["video_id"] != e.video_id and c.changed == 1 and c.new == 0
    assert idx.read_table(cfg.index, "videos").num_rows == 0  # the stale row is no longer served


def _hold(index: str, ready, release) -> None:
    with IndexLease(index, ttl_s=30):
        ready.set()
        release.wait(30)


def test_second_job_refuses_then_waits_and_killed_lease_expires(tmp_path):
    """Finding 8: two jobs on one index."""
    index = str(tmp_path / "index")
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(index, ready, release))
    holder.start()
    assert ready.wait(60)
    with pytest.raises(LeaseHeld, match=f"pid {holder.pid}.*--wait"):
        IndexLease(index).acquire()
    waiter = IndexLease(index, wait=True, poll_s=0.2)
    t0 = time.time()
    release.set()
    waiter.acquire()  # returns once the holder releases
    assert time.time() - t0 < 30
    waiter.release()
    # a killed holder: its lease is stale at once on this host (pid gone) ...
    ready.clear()
    release.clear()
    holder = ctx.Process(target=_hold, args=(index, ready, release))
    holder.start()
    assert ready.wait(60)
    holder.kill()
    holder.join()
    with IndexLease(index):
        pass
    # ... and a lease from another host expires when its time is up
    import json

    storage.write_bytes(storage.join(index, "lease.json"), json.dumps(
        {"owner": "x", "host": "elsewhere", "pid": 1, "expires_at": time.time() + 1.5}).encode())
    with pytest.raises(LeaseHeld):
        IndexLease(index).acquire()
    time.sleep(1.6)
    with IndexLease(index):
        pass
