"""Deleting videos from a Delta table through the id cache (exvad_ray.index.deletes.delete_videos)
rewrites only the files that hold them: the other files stay in the snapshot under their
names, every reader (delta-rs, DuckDB over the file list) sees the same rows, partition values
survive the rewrite (also ones delta-rs percent-encodes in folder names), the rewrites' ids are
cached, older versions still hold the rows; on local disk and on the local S3 server."""

from __future__ import annotations

import os

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from exvad_ray import storage
from exvad_ray.index import deletes, delta, idmap
from test_delta import ids, segment_rows

pytest.importorskip("deltalake")

CAMERAS = ["cam-1", "cam-2", "cam 3:x"]  # the last one is percent-encoded in the log's paths


@pytest.fixture(params=["local", "s3"])
def index_uri(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "idx")
    return f"{request.getfixturevalue('s3_bucket')}/idx"


def _build(index: str) -> list[list[str]]:
    """`segments` with two files per camera, four videos per file, two rows per video; returns the
    video ids of each file in commit order."""
    files = []
    for b in range(2 * len(CAMERAS)):
        vids = ids(4)
        rows, parts = segment_rows(vids * 2, camera=CAMERAS[b % len(CAMERAS)])
        assert delta.commit(index, "segments", "run1", b, delta.write_files(index, "segments", rows, parts))
        files.append(vids)
    return files


def _keys(index: str) -> set[str]:
    return set(delta.snapshot_paths(index, "segments").to_pylist())


def _delta_rows(index: str, version: int | None = None) -> list[tuple[str, str]]:
    """(video_id, camera) of every row as delta-rs reads the table (partition values from the log)."""
    from deltalake import DeltaTable

    uri = delta.table_uri(index, "segments")
    t = DeltaTable(storage.normalize(uri), version=version, storage_options=delta.storage_options(uri))
    got = t.to_pyarrow_table(columns=["video_id", "camera"])
    return sorted(zip(got.column("video_id").to_pylist(), got.column("camera").to_pylist()))


def _duckdb_ids(index: str) -> list[str]:
    import urllib.parse

    con = duckdb.connect()
    files = delta.snapshot_files(index, "segments")
    if index.startswith("s3://"):
        con.register_filesystem(storage.filesystem(index)[0])
        # delta-rs gives S3 URLs percent-encoded where the object's key is not (docs/ENVIRONMENT.md;
        # the index's own partition values are sanitised): decoded, they name the objects
        files = [urllib.parse.unquote(f) for f in files]
    return sorted(r[0] for r in con.execute("SELECT video_id FROM read_parquet(?)", [files]).fetchall())


def _cached_keys(index: str) -> set[str]:
    """The files the id cache holds rows of, read from its fragments without refreshing it."""
    out: set[str] = set()
    for frag in idmap._fragments(index, "segments"):
        with storage.open_file(frag) as fh:
            out.update(pq.read_table(fh, columns=["file"]).column(0).to_pylist())
    return out


def test_only_the_files_holding_the_videos_are_rewritten(index_uri):
    index = index_uri
    files = _build(index)
    idmap.refresh(index, "segments")  # the cache as the job leaves it
    before_keys = _keys(index)
    before = _delta_rows(index)
    v0 = delta.log_version(index, "segments")
    # one video of file 0 (cam-1), two of file 2 (cam 3:x), every video of file 4 (cam-2)
    gone = [files[0][1], files[2][0], files[2][3], *files[4]]
    assert deletes.delete_videos(index, "segments", gone) == 2 * len(gone)
    assert delta.log_version(index, "segments") == v0 + 1  # one commit
    want = [r for r in before if r[0] not in gone]
    assert _delta_rows(index) == want
    assert _duckdb_ids(index) == sorted(v for v, _ in want)
    after = _keys(index)
    assert len(before_keys - after) == 3  # the three files that held them
    assert len(after - before_keys) == 2  # file 4 lost every row: no new file for it
    assert all(("camera=cam 3:x/" in k) or ("camera=cam-1/" in k) for k in after - before_keys)
    assert _cached_keys(index) >= after - before_keys  # the rewrites' ids cached: no reading next time
    assert sorted(v for a in idmap.iter_video_ids(index, "segments") for v in a.to_pylist()) == \
        sorted({v for v, _ in want})  # the cache holds each file's distinct ids
    # statistics of the rewrites as `write_files` records them
    uri = delta.table_uri(index, "segments")
    from deltalake import DeltaTable

    adds = DeltaTable(storage.normalize(uri), storage_options=delta.storage_options(uri)).get_add_actions(flatten=True)
    counts = dict(zip(adds.column("path").to_pylist(), adds.column("num_records").to_pylist()))
    assert sorted(n for p, n in counts.items() if any(p.endswith(k.rsplit("/", 1)[1]) for k in after - before_keys)) \
        == [4, 6]
    # again: nothing to delete, no commit
    assert deletes.delete_videos(index, "segments", gone) == 0
    assert delta.log_version(index, "segments") == v0 + 1
    assert _keys(index) == after
    # time travel: the version before the delete still holds the rows
    assert _delta_rows(index, version=v0) == before


def test_files_delta_rs_wrote_in_percent_encoded_folders(tmp_path):
    """After delta-rs's optimize a partition's file sits in a folder whose name delta-rs encoded
    (``camera=cam%203%3Ax``): its rewrite lands beside it with the partition value decoded."""
    index = str(tmp_path / "idx")
    files = _build(index)
    delta.optimize(index, "segments")
    assert any("%3A" in k for k in _keys(index))
    before, before_keys = _delta_rows(index), _keys(index)
    gone = [files[2][0], files[5][2]]  # both cam 3:x, now one file
    assert deletes.delete_videos(index, "segments", gone) == 4
    assert _delta_rows(index) == [r for r in before if r[0] not in gone]
    assert _duckdb_ids(index) == sorted(v for v, _ in before if v not in gone)
    new = sorted(_keys(index) - before_keys)
    assert len(new) == 1 and new[0].startswith("date=2026-11-24/camera=cam%203%3Ax/")


def test_many_files_go_in_several_commits(tmp_path, monkeypatch):
    index = str(tmp_path / "idx")
    files = _build(index)
    monkeypatch.setattr(delta, "FILES_PER_COMMIT", 2)  # one limit for deletes and merges
    v0 = delta.log_version(index, "segments")
    gone = [f[0] for f in files[:5]]
    assert deletes.delete_videos(index, "segments", gone) == 10
    assert delta.log_version(index, "segments") == v0 + 3
    assert _duckdb_ids(index) == sorted(v for f in files for v in f * 2 if v not in gone)


def test_a_file_the_cache_cannot_place_falls_back_to_delta_rs(tmp_path, caplog):
    """A file outside the folders of its partition values (committed by another writer): delta-rs's
    predicate delete does the work, no row is lost or kept."""
    index = str(tmp_path / "idx")
    files = _build(index)
    vids = ids(3)
    rows, parts = segment_rows(vids, camera="cam-9")
    odd = storage.join(delta.table_uri(index, "segments"), "elsewhere", "odd.parquet")
    os.makedirs(odd.rsplit("/", 1)[0], exist_ok=True)
    body = rows.append_column("class", pa.array(["Fighting"] * 3))
    pq.write_table(body, odd)
    delta.append(index, "segments", [{"path": "elsewhere/odd.parquet", "size": os.path.getsize(odd),
                                      "partition_values": {"date": "2026-11-24", "camera": "cam-9"},
                                      "modification_time": 0, "data_change": True,
                                      "stats": '{"numRecords": 3}'}])
    gone = [vids[1], files[0][0]]
    with caplog.at_level("WARNING", logger="exvad_ray.index.idmap"):
        assert deletes.delete_videos(index, "segments", gone) == 3
    assert "deleting by predicate" in caplog.text
    assert _duckdb_ids(index) == sorted([v for f in files for v in f * 2 if v not in gone] + [vids[0], vids[2]])
