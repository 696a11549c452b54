"""The index's id cache (exvad_ray.index.idmap): which videos each data file of a Delta table holds,
read once from the files and then from the cache, never trusted beyond the table's log."""

from __future__ import annotations

import os

import pyarrow.parquet as pq
import pytest

from exvad_ray.index import batches, deletes, delta, idmap
from test_batches import batch_index, ids, stored_ids, video

pytest.importorskip("deltalake")


def _index(tmp_path, n_batches: int = 3, per: int = 4) -> tuple[str, list[str]]:
    return batch_index(tmp_path, n_batches, per, cameras=("cam-0", "cam-1"))


def _cached(index: str, table: str) -> list[str]:
    return sorted(v for a in idmap.iter_video_ids(index, table) for v in a.to_pylist())


def test_ids_come_from_the_files_once_then_from_the_cache(tmp_path):
    index, vids = _index(tmp_path)
    assert _cached(index, "videos") == sorted(vids) == stored_ids(index, "videos")
    assert len(idmap._fragments(index, "videos")) == 1
    # the data files are not opened again: garbled, the ids still come (from the cache)
    for f in delta.snapshot_files(index, "videos"):
        with open(f, "r+b") as fh:
            fh.write(b"garbage!" * 4)
    assert _cached(index, "videos") == sorted(vids)
    assert len(idmap._fragments(index, "videos")) == 1  # nothing new to record


def test_new_commits_are_read_and_deleted_rows_are_gone(tmp_path):
    index, vids = _index(tmp_path)
    assert sorted(set(_cached(index, "snippets"))) == sorted(vids)  # each file's distinct ids
    more = ids(4)
    batches.commit_batch(index, "run1", 3, batches.write_batch(index, [video(v) for v in more]), more)
    gone = vids[:2] + more[:1]
    for t in batches.BATCH_TABLES:
        deletes.delete_videos(index, t, gone)  # files rewritten: the cache's rows of the old ones are stale
    want = sorted(set(vids + more) - set(gone))
    assert _cached(index, "videos") == want == stored_ids(index, "videos")
    assert sorted(set(_cached(index, "snippets"))) == want


def test_fragments_are_merged_without_rows_of_removed_files(tmp_path):
    index, vids = _index(tmp_path, n_batches=1)
    _cached(index, "videos")
    for b in range(1, idmap.MAX_FRAGMENTS + 2):  # one new fragment per refresh
        more = ids(2)
        batches.commit_batch(index, "run1", b, batches.write_batch(index, [video(v) for v in more]), more)
        vids += more
        if b == 3:
            deletes.delete_videos(index, "videos", more)
            vids = [v for v in vids if v not in more]
        assert _cached(index, "videos") == sorted(vids)
    frags = idmap._fragments(index, "videos")
    assert len(frags) <= idmap.MAX_FRAGMENTS
    rows = pq.read_table(frags[0]) if len(frags) == 1 else None
    if rows is not None:  # the merged fragment holds only files of the snapshot
        keys = set(idmap.Snapshot.of(index, "videos").keys.to_pylist())
        assert set(rows.column("file").to_pylist()) <= keys


def test_an_unwritable_cache_costs_time_not_ids(tmp_path):
    index, vids = _index(tmp_path)
    os.makedirs(os.path.join(index, idmap.MAP_DIR), exist_ok=True)
    with open(os.path.join(index, idmap.MAP_DIR, "videos"), "w") as fh:  # a file where its folder goes
        fh.write("not a folder")
    assert _cached(index, "videos") == sorted(vids)
    assert _cached(index, "videos") == sorted(vids)


def test_each_files_ids(tmp_path):
    index, vids = _index(tmp_path)
    snap, rows = idmap.file_rows(index, "snippets")
    uris = [snap.uri(i) for i in range(len(snap))]
    assert uris == sorted(delta.snapshot_files(index, "snippets"))
    got = dict(idmap.by_file(snap, rows))
    assert sorted(got) == uris
    for f, held in got.items():
        assert held == sorted(set(pq.read_table(f, columns=["video_id"]).column(0).to_pylist()))
    assert sorted(v for held in got.values() for v in held) == sorted(vids)


def test_after_a_compaction_the_cache_holds_the_new_files_only(tmp_path):
    from exvad_ray.index import compact

    index, vids = _index(tmp_path, n_batches=4)
    assert _cached(index, "videos") == sorted(vids)
    compact(index, retention_hours=0)
    frags = idmap._fragments(index, "videos")
    assert len(frags) == 1  # the stale rows merged away at once
    keys = set(idmap.Snapshot.of(index, "videos").keys.to_pylist())
    assert set(pq.read_table(frags[0]).column("file").to_pylist()) == keys
    assert _cached(index, "videos") == sorted(vids)


def test_a_damaged_or_vanished_fragment_costs_reads_not_ids(tmp_path):
    index, vids = _index(tmp_path)
    assert _cached(index, "videos") == sorted(vids)
    (frag,) = idmap._fragments(index, "videos")
    with open(frag, "wb") as fh:
        fh.write(b"not parquet")
    assert _cached(index, "videos") == sorted(vids)  # read from the files, recorded again
    snap, rows = idmap.iter_positions(index, "videos")
    for f in idmap._fragments(index, "videos"):
        os.remove(f)  # merged away by another reader between the refresh and the read
    assert sorted(v for _, ids in rows for v in ids.to_pylist()) == sorted(vids)


@pytest.fixture(params=["local", "s3"])
def any_index(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "idx")
    return f"{request.getfixturevalue('s3_bucket')}/idx"


def test_the_logs_paths_are_the_snapshots_files(any_index):
    """`delta.snapshot_paths` (the log read for paths alone) lists what delta-rs lists, through
    commits past a checkpoint, deletes, odd partition values, optimize, vacuum and a trimmed log."""
    from exvad_ray.index import compact

    index = any_index
    batches.create_tables(index)

    def same() -> None:
        root = delta.table_uri(index, "videos").rstrip("/") + "/"
        if root.startswith("s3://") is False:
            root = os.path.normpath(root) + "/"
        want = sorted(u[len(root):] if u.startswith(root) else u for u in delta.snapshot_files(index, "videos"))
        got = delta.snapshot_paths(index, "videos")
        assert got is not None and sorted(got.to_pylist()) == want

    all_ids: list[str] = []
    for b in range(104 if not index.startswith("s3://") else 12):  # locally past delta-rs's checkpoint at 100
        vids = ids(1)
        # a partition value the log URL-encodes (locally: on S3 delta-rs's own list gives URLs, still encoded)
        cam = ("cam 1:x" if not index.startswith("s3://") else "cam-1") if b % 3 == 0 else "cam-2"
        batches.commit_batch(index, "run1", b, batches.write_batch(index, [video(v, camera=cam) for v in vids]), vids)
        all_ids += vids
    same()
    deletes.delete_videos(index, "videos", all_ids[:5])
    same()
    compact(index, tables=["videos"], retention_hours=0)
    same()
    # commits after a checkpoint this process read, then a new checkpoint (`_last_checkpoint`
    # rewritten): on S3 the client must not answer from what it remembers of the log's folder
    for b in range(104, 107):
        vids = ids(1)
        batches.commit_batch(index, "run1", b, batches.write_batch(index, [video(v) for v in vids]), vids)
        all_ids += vids
        same()
    compact(index, tables=["videos"], retention_hours=0)
    same()
    assert sorted(set(_cached(index, "videos"))) == sorted(all_ids[5:])
