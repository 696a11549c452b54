"""The archive job's writes on a Delta index (exvad_ray.index.batches): blocks of videos become one
file per table and partition, a batch is committed once whatever the retries, a batch that a kill
left in some tables but not in `videos` is repaired before the rerun, and replaced videos are
deleted from every table (no reader sees them, not even one that ignores our read rules)."""

from __future__ import annotations

import json
import uuid

import pyarrow as pa
import pytest

from exvad_ray import index as idx
from exvad_ray.index import batches, delta
from exvad_ray.index.supersede import find_replaced, mark_superseded

pytest.importorskip("deltalake")

PART = {"date": "2026-11-24", "camera": "cam-1"}


def _filler(t: pa.DataType):
    """A value of the type, for the columns that must not be null."""
    if pa.types.is_string(t):
        return ""
    if pa.types.is_list(t):
        return []
    if pa.types.is_timestamp(t):
        import datetime as dt

        return dt.datetime(2026, 11, 24, tzinfo=dt.timezone.utc)
    return 0


def _rows(table: str, vid: str, n: int = 1, **values) -> dict:
    cols = {f.name: [None if f.nullable else _filler(f.type)] * n for f in idx.arrow_schema(table)}
    cols.update(video_id=[vid] * n, **{k: [v] * n for k, v in values.items()})
    return cols


def video(vid: str, n_snippets: int = 3, camera: str = "cam-1") -> dict:
    """One finished video's tables as the assembler makes them (columns mostly null)."""
    part = {**PART, "camera": camera}
    snippets = _rows("snippets", vid, n_snippets, uri=f"/a/{vid}.mp4")
    snippets["snippet_index"] = list(range(n_snippets))
    seg = _rows("segments", vid, segment_id=f"{vid}:0", label="Fighting")
    return {"snippets": (part, snippets), "captions": (part, _rows("captions", vid)),
            "segments": [({"class": "Fighting", **part}, seg)],
            "videos": (part, _rows("videos", vid, uri=f"/a/{vid}.mp4", name="a", status="ok"))}


def ids(n: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(n)]


def batch_index(tmp_path, n_batches: int, per: int = 4, cameras: tuple[str, ...] = ("cam-1",)) -> tuple[str, list[str]]:
    """A Delta index of `n_batches` committed batches of `per` new videos each (the i-th video of a
    batch on camera ``cameras[i % len(cameras)]``), and every video's id in commit order."""
    index = str(tmp_path / "idx")
    batches.create_tables(index)
    all_ids: list[str] = []
    for b in range(n_batches):
        vids = ids(per)
        adds = batches.write_batch(index, [video(v, camera=cameras[i % len(cameras)]) for i, v in enumerate(vids)])
        batches.commit_batch(index, "run1", b, adds, vids)
        all_ids += vids
    return index, all_ids


def stored_ids(index: str, table: str) -> list[str]:
    """Every row's video id in the table's snapshot, duplicates kept (what any engine reads)."""
    return sorted(delta.video_ids(index, table).to_pylist())


def test_a_batch_is_one_file_per_table_and_partition_and_commits_once(tmp_path):
    index = str(tmp_path / "index")
    batches.create_tables(index)
    vids = ids(4)
    adds = batches.write_batch(index, [video(v, camera="cam-1" if i < 3 else "cam-2") for i, v in enumerate(vids)])
    assert {t: len(a) for t, a in adds.items()} == {"snippets": 2, "captions": 2, "segments": 2, "videos": 2}
    batches.commit_batch(index, "run1", 0, adds, vids)
    batches.commit_batch(index, "run1", 0, adds, vids)  # a retried commit adds nothing
    assert stored_ids(index, "videos") == sorted(vids)
    assert stored_ids(index, "snippets") == sorted(v for v in vids for _ in range(3))
    assert idx.done_video_ids(index, ("videos",)) == set(vids)
    meta = delta.commit_metadata(index, "videos")
    assert json.loads(meta[batches.IDS_KEY]) == sorted(vids) and meta[batches.BATCH_KEY] == "0"
    assert batches.next_batch(index, "run1") == 1 and batches.next_batch(index, "other") == 0
    # readers of the package see the same rows through the snapshot's file list
    assert len(idx.list_files(index, "snippets")) == 2
    assert idx.read_table(index, "snippets", columns=["video_id"]).num_rows == 12


def test_a_batch_killed_between_its_commits_is_repaired_before_the_rerun(tmp_path):
    index = str(tmp_path / "index")
    batches.create_tables(index)
    first, second = ids(2), ids(2)
    batches.commit_batch(index, "run1", 0, batches.write_batch(index, [video(v) for v in first]), first)
    # batch 1: snippets and segments committed, then the driver was killed before captions and videos
    adds = batches.write_batch(index, [video(v) for v in second])
    meta = {batches.IDS_KEY: json.dumps(sorted(second))}
    for table in ("snippets", "segments"):
        delta.commit(index, table, "run1", 1, adds[table], metadata=meta)
    assert set(second) <= set(stored_ids(index, "snippets"))
    assert idx.done_video_ids(index, ("videos",)) == set(first)  # not done: the rerun redoes them
    assert batches.repair(index, ["run1", "never-ran"]) == {"snippets": 2, "segments": 2}
    assert stored_ids(index, "snippets") == sorted(v for v in first for _ in range(3))
    assert stored_ids(index, "segments") == sorted(first)
    assert batches.repair(index, ["run1"]) == {"snippets": 2, "segments": 2}  # idempotent: nothing left to delete
    assert stored_ids(index, "segments") == sorted(first)
    # the rerun goes on counting: batch 2 holds the redone videos, once
    nxt = batches.next_batch(index, "run1")
    assert nxt == 2
    batches.commit_batch(index, "run1", nxt, batches.write_batch(index, [video(v) for v in second]), second)
    assert stored_ids(index, "snippets") == sorted(v for v in first + second for _ in range(3))
    assert batches.repair(index, ["run1"]) == {}


def test_replaced_videos_are_deleted_from_every_table(tmp_path):
    index = str(tmp_path / "index")
    batches.create_tables(index)
    old, keep, new = ids(3)
    batches.commit_batch(index, "run1", 0, batches.write_batch(index, [video(old), video(keep)]), [old, keep])
    # the rerun's planning finds the replaced video by its URI (a file of the snapshot at a time)
    found = find_replaced(index, {f"/a/{old}.mp4": new, "/a/never-indexed.mp4": ids(1)[0]})
    assert found == {old: (f"/a/{old}.mp4", new)}
    mark_superseded(index, found)
    for table in ("videos", "snippets", "segments", "captions"):
        assert old not in stored_ids(index, table) and keep in stored_ids(index, table)
    assert old not in idx.read_table(index, "snippets", columns=["video_id"], current=False).column("video_id").to_pylist()


def test_a_failed_video_is_one_commit_of_its_own_in_errors(tmp_path):
    from exvad_ray.pipeline.decode import write_error

    index = str(tmp_path / "index")
    batches.create_tables(index)
    vid = ids(1)[0]
    item = {"video_id": vid, "uri": "/a/bad.mp4", "size": 3, "processing_date": "2026-11-24"}
    write_error(index, "run1", item, "decode", ValueError("not a video"))
    assert stored_ids(index, "errors") == [vid]
    assert idx.done_video_ids(index, ("errors",)) == {vid}
    assert not list((tmp_path / "index" / "errors").rglob("part-" + vid + "*"))  # no per-video file name
    rows = idx.read_table(index, "errors").to_pylist()
    assert rows[0]["stage"] == "decode" and rows[0]["date"] == "2026-11-24"


def test_packed_rows_travel_unchanged(tmp_path):
    """The assembler hands a video's rows to the batch writer as Arrow IPC bytes (`pack`), never a
    pickle; the writer stores the same rows as from the tables themselves."""
    index = str(tmp_path / "index")
    batches.create_tables(index)
    vid = ids(1)[0]
    data = batches.pack(video(vid, camera="cam-2"))
    assert isinstance(data, bytes) and b"pickle" not in data
    back = batches.unpack(data)
    rows, parts = back["segments"]
    assert rows.column_names == idx.arrow_schema("segments").names
    assert parts == [{"class": "Fighting", "date": "2026-11-24", "camera": "cam-2"}]
    batches.commit_batch(index, "run1", 0, batches.write_batch(index, [data]), [vid])
    got = idx.read_table(index, "snippets", columns=["video_id", "snippet_index", "camera"]).to_pylist()
    assert got == [{"video_id": vid, "snippet_index": i, "camera": "cam-2"} for i in range(3)]


def test_rows_of_some_videos_only(tmp_path):
    """`read_video_rows`: the rows of the videos asked for, from a Delta table and from per-video files."""
    delta_index, files_index = str(tmp_path / "delta"), str(tmp_path / "files")
    batches.create_tables(delta_index)
    vids = ids(5)
    batches.commit_batch(delta_index, "run1", 0, batches.write_batch(delta_index, [video(v) for v in vids]), vids)
    for v in vids:
        idx.write_video_tables(files_index, v, {t: x for t, x in video(v).items() if t != "segments"})
    for index in (delta_index, files_index):
        got = idx.read_video_rows(index, "snippets", [vids[1], vids[3], "not-indexed"], ["snippet_index"])
        assert got.column_names == ["snippet_index"] and got.num_rows == 6
        both = idx.read_video_rows(index, "snippets", vids[1:2], ["video_id", "camera"]).to_pylist()
        assert both == [{"video_id": vids[1], "camera": "cam-1"}] * 3
        assert idx.read_video_rows(index, "videos", []).num_rows == 0
