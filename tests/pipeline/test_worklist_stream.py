"""Streamed rerun planning (issue 23): the archive listed page by page and each page looked up in the
done set held in Arrow/numpy gives the same items and counts as one page; a Delta index's done set
is today's; replaced content is still 'changed'; ignored files are counted by reason on every page."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os

import pyarrow as pa
import pytest

from exvad_ray import index as idx
from exvad_ray import storage
from exvad_ray.pipeline.job import ProcessConfig
from exvad_ray.pipeline.worklist import plan_work

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.timezone.utc)


def _video_row(vid: str, uri: str) -> dict:
    cols = {f.name: [None] for f in idx.arrow_schema("videos")}
    cols.update(video_id=[vid], uri=[uri], name=["a"], status=["ok"])
    return cols


def _error_row(vid: str, uri: str) -> dict:
    return {"video_id": [vid], "uri": [uri], "size_bytes": [1], "stage": ["decode"], "error_type": ["E"],
            "reason": ["truncated"], "message": ["m"], "detail": [None], "run_id": ["r"], "processed_at": [NOW]}


def _archive(tmp_path, n: int = 10) -> tuple[ProcessConfig, dict[str, storage.VideoEntry]]:
    """n videos over two cameras (plus a hidden file and two notes), 3 done, 2 failed before."""
    root = tmp_path / "archive"
    for k in range(n):
        p = root / f"cam-{k % 2}" / "2026-01-01" / f"v{k:02d}.mp4"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x" * (k + 1))
    (root / "cam-0" / "notes.txt").write_bytes(b"n")
    (root / "cam-1" / "2026-01-01" / "readme.md").write_bytes(b"r")
    (root / "cam-1" / ".thumbs.mp4").write_bytes(b"h")
    cfg = ProcessConfig(archive=str(root), index=str(tmp_path / "index"), profile="tiny")
    entries = {os.path.basename(e.uri): e for e in storage.list_videos(str(root))}
    part = {"date": "2026-01-01", "camera": "c"}
    for name in ("v00.mp4", "v03.mp4", "v07.mp4"):
        e = entries[name]
        idx.write_video_tables(cfg.index, e.video_id, {"videos": (part, _video_row(e.video_id, e.uri))})
    for name in ("v01.mp4", "v08.mp4"):
        e = entries[name]
        idx.write_video_tables(cfg.index, e.video_id, {"errors": ({"date": "2026-01-01"}, _error_row(e.video_id, e.uri))})
    return cfg, entries


@pytest.mark.parametrize("retry", [False, True])
def test_pages_of_three_plan_like_one_page(tmp_path, retry):
    cfg, _ = _archive(tmp_path)
    cfg = dataclasses.replace(cfg, retry_errors=retry)
    one_items, one = plan_work(cfg, "2026-01-02", page=10_000)
    paged_items, paged = plan_work(cfg, "2026-01-02", page=3)
    assert paged_items == one_items and paged == one
    assert one.done_before == 3 and one.ignored == {"hidden": 1, "not a video extension": 2}
    if retry:
        assert (one.new, one.retried, one.failed_before, len(one_items)) == (5, 2, 0, 7)
    else:
        assert (one.new, one.retried, one.failed_before, len(one_items)) == (5, 0, 2, 5)
    assert [i["uri"] for i in one_items] == sorted(i["uri"] for i in one_items)  # URI order across pages
    limited_items, limited = plan_work(dataclasses.replace(cfg, limit=2), "2026-01-02", page=3)
    assert limited_items == one_items[:2] and limited.deferred == len(one_items) - 2


def test_unchanged_archive_plans_nothing(tmp_path):
    cfg, entries = _archive(tmp_path)
    part = {"date": "2026-01-01", "camera": "c"}
    for name, e in entries.items():
        if name not in ("v01.mp4", "v08.mp4"):
            idx.write_video_tables(cfg.index, e.video_id, {"videos": (part, _video_row(e.video_id, e.uri))})
    items, c = plan_work(cfg, "2026-01-02", page=3)
    assert items == [] and (c.done_before, c.failed_before, c.new, c.changed) == (8, 2, 0, 0)


def test_replaced_content_is_changed_across_pages(tmp_path):
    cfg, entries = _archive(tmp_path)
    old = entries["v03.mp4"]
    with open(old.uri, "wb") as f:  # same URI, other bytes
        f.write(b"y" * 400)
    items, c = plan_work(cfg, "2026-01-02", page=3)
    changed = [i for i in items if i["uri"] == old.uri]
    assert len(changed) == 1 and changed[0]["video_id"] != old.video_id
    assert (c.changed, c.new, c.done_before) == (1, 5, 2)
    assert old.video_id not in idx.read_table(cfg.index, "videos", columns=["video_id"]).column("video_id").to_pylist()


def test_iter_archive_pages_match_the_whole_listing(tmp_path):
    cfg, _ = _archive(tmp_path)
    whole, ignored = storage.list_archive(cfg.archive)
    pages = list(storage.iter_archive(cfg.archive, page=3))
    assert all(sum(len(p.entries) for p in [pg]) + sum(pg.ignored.values()) <= 3 for pg in pages)
    assert [e for p in pages for e in p.entries] == whole
    got: dict[str, int] = {}
    for p in pages:
        for k, v in p.ignored.items():
            got[k] = got.get(k, 0) + v
    assert got == ignored == {"hidden": 1, "not a video extension": 2}


def test_delta_done_set_is_todays(tmp_path):
    """The same videos in today's layout and as Delta tables give the same done sets and plans."""
    pytest.importorskip("deltalake")
    from exvad_ray.index import delta

    cfg, entries = _archive(tmp_path)
    today = cfg.index
    lake = str(tmp_path / "lake")
    for table in ("videos", "errors"):
        rows = idx.read_table(today, table, current=False)
        part = idx.partition_cols(table)
        values = [{c: rows.column(c)[i].as_py() for c in part} for i in range(rows.num_rows)]
        body = rows.drop_columns(part)
        files = delta.write_files(lake, table, body, values)
        assert delta.commit(lake, table, "run-1", 0, files)
        assert delta.is_delta(lake, table) and not delta.is_delta(today, table)
        a, b = idx.done_ids(today, table), idx.done_ids(lake, table)
        assert isinstance(b, pa.Array) and sorted(a.to_pylist()) == sorted(b.to_pylist()) and len(a) > 0
    assert idx.done_video_ids(today) == idx.done_video_ids(lake)
    assert plan_work(cfg, "2026-01-02", page=3) == plan_work(dataclasses.replace(cfg, index=lake), "2026-01-02", page=3)


def test_id_set_matches_a_python_set():
    import uuid

    import numpy as np

    ids = [str(uuid.uuid4()) for _ in range(500)] + ["not-a-uuid", "00000000-0000-0000-0000-000000000001",
                                                     "00000000-0000-0000-0000-000000000002"]
    s = idx.IdSet(pa.array(ids + [None]))
    probe = ids[::3] + [str(uuid.uuid4()) for _ in range(50)] + ["not-a-uuid2", None,
                                                                   "00000000-0000-0000-0000-000000000003",
                                                                   "00000000-0000-0000-0000-000000000002",
                                                                   ids[0].upper()]
    want = np.array([p in set(ids) for p in probe])
    assert (s.contains(pa.array(probe)) == want).all() and len(s) == len(ids)


def test_done_set_from_chunks_leaves_out_the_excluded():
    import uuid

    import numpy as np

    ids = [str(uuid.uuid4()) for _ in range(300)]
    chunks = [pa.array(ids[:100]), pa.array(ids[100:250] + ["odd-id"]), pa.array(ids[250:] + [None])]
    finished = idx.IdSet(pa.array(ids[:50] + ["odd-id"]))
    s = idx.IdSet.from_chunks(chunks, exclude=finished)
    probe = pa.array(ids + ["odd-id", str(uuid.uuid4())])
    assert (s.contains(probe) == np.array([i >= 50 for i in range(300)] + [False, False])).all()
    assert len(s) == 250 and len(idx.IdSet.from_chunks(iter(chunks))) == 301
