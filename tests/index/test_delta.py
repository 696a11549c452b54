"""The index tables on Delta Lake (exvad_ray.index.delta): batches committed once whatever the
retries, replaced videos deleted for every reader of the snapshot, commit metadata, partitions;
on local disk and on the local S3 server (SeaweedFS)."""

from __future__ import annotations

import datetime as dt
import uuid

import duckdb
import pyarrow as pa
import pytest

from exvad_ray.errors import ExvadError
from exvad_ray.index import deletes, delta
from exvad_ray.index.schemas import SCHEMA_VERSION, arrow_schema

pytest.importorskip("deltalake")

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.timezone.utc)


def error_rows(ids: list[str], date: str = "2026-11-24") -> tuple[pa.Table, list[dict[str, str]]]:
    """Rows of the `errors` table (partitioned by date), one per video."""
    n = len(ids)
    cols = {"video_id": ids, "uri": [f"s3://archive/cam-1/{date}/{v}.mp4" for v in ids], "size_bytes": [10] * n,
            "stage": ["decode"] * n, "error_type": ["DecodeError"] * n, "reason": ["truncated"] * n,
            "message": ["ends early"] * n, "detail": [None] * n, "run_id": ["r1"] * n, "processed_at": [NOW] * n}
    return pa.table(cols, schema=arrow_schema("errors")), [{"date": date}] * n


def segment_rows(ids: list[str], label: str = "Fighting", camera: str = "cam-1") -> tuple[pa.Table, list[dict[str, str]]]:
    """Rows of `segments` (partitioned by class, date, camera), one per video."""
    n = len(ids)
    cols = {"segment_id": [f"{v}:0" for v in ids], "video_id": ids, "uri": [f"s3://a/{v}.mp4" for v in ids],
            "label": [label] * n, "score": [0.9] * n, "class_score": [0.8] * n, "start_s": [0.0] * n,
            "end_s": [1.28] * n, "first_snippet": [0] * n, "last_snippet": [1] * n, "peak_s": [0.64] * n,
            "start_at": [NOW] * n, "end_at": [NOW] * n, "explanation": ["two people fight"] * n,
            "thumbnail_jpeg": [b"\xff\xd8"] * n, "visual_embedding": [[0.1, 0.2]] * n,
            "explanation_embedding": [[0.3, 0.4]] * n}
    parts = [{"class": label, "date": "2026-11-24", "camera": camera}] * n
    return pa.table(cols, schema=arrow_schema("segments")), parts


def ids(n: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(n)]


def current_ids(index: str, table: str) -> list[str]:
    files = delta.snapshot_files(index, table)
    if not files:
        return []
    con = duckdb.connect()
    if index.startswith("s3://"):
        from exvad_ray import storage

        con.register_filesystem(storage.filesystem(index)[0])
    return sorted(r[0] for r in con.execute("SELECT video_id FROM read_parquet(?)", [files]).fetchall())


@pytest.fixture(params=["local", "s3"])
def index_uri(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "idx")
    bucket = request.getfixturevalue("s3_bucket")
    return f"{bucket}/idx"


def test_batches_commit_once_whatever_the_retries(index_uri):
    """A batch committed, then committed again (the driver killed after the commit and rerun), is
    in the table once; the next batch still goes in; the run's last batch is readable."""
    first, second = ids(3), ids(2)
    rows, parts = error_rows(first)
    files = delta.write_files(index_uri, "errors", rows, parts)
    assert delta.commit(index_uri, "errors", "run-a", 0, files) is True
    again = delta.write_files(index_uri, "errors", rows, parts)  # the retry rewrites its files
    assert delta.commit(index_uri, "errors", "run-a", 0, again) is False
    rows2, parts2 = error_rows(second, date="2026-11-25")
    assert delta.commit(index_uri, "errors", "run-a", 1, delta.write_files(index_uri, "errors", rows2, parts2))
    assert delta.committed_batch(index_uri, "errors", "run-a") == 1
    assert delta.committed_batch(index_uri, "errors", "run-b") is None
    assert current_ids(index_uri, "errors") == sorted(first + second)
    # the files of the skipped retry are in no snapshot (vacuum removes them)
    assert not {f.rsplit("/", 1)[-1] for f in delta.snapshot_files(index_uri, "errors")} & \
        {f["path"].rsplit("/", 1)[-1] for f in again}


def test_replaced_videos_are_gone_for_readers_of_the_snapshot(index_uri):
    """Deleting a replaced video's rows: no reader of the snapshot's file list sees them, the other
    videos of the same file stay, and deleting it again deletes nothing."""
    vids = ids(4)
    rows, parts = segment_rows(vids)
    delta.commit(index_uri, "segments", "run-a", 0, delta.write_files(index_uri, "segments", rows, parts))
    assert deletes.delete_videos(index_uri, "segments", [vids[1]]) == 1
    assert current_ids(index_uri, "segments") == sorted(v for v in vids if v != vids[1])
    assert deletes.delete_videos(index_uri, "segments", [vids[1]]) == 0
    assert deletes.delete_videos(index_uri, "segments", []) == 0


def test_partitions_and_pruned_file_lists(tmp_path):
    """Files land in hive folders of the table's partition columns (`segments`: date and camera;
    its class is a column of the files); the snapshot's file list can be cut to partitions without
    listing; the values read back from the folder names, the class from the files."""
    index = str(tmp_path / "idx")
    a, b = ids(2), ids(3)
    for batch, (vids, camera) in enumerate([(a, "cam-1"), (b, "cam-2")]):
        rows, parts = segment_rows(vids, camera=camera)
        delta.commit(index, "segments", "run-a", batch, delta.write_files(index, "segments", rows, parts))
    files = delta.snapshot_files(index, "segments")
    assert len(files) == 2 and all("/segments/date=2026-11-24/camera=cam-" in f for f in files)
    assert not any("class=" in f for f in files)
    only = delta.snapshot_files(index, "segments", partitions={"camera": "cam-2"})
    assert len(only) == 1 and "camera=cam-2" in only[0]
    got = duckdb.connect().execute(
        "SELECT class, camera, count(*) FROM read_parquet(?, hive_partitioning = true, hive_types = "
        "{'camera': 'VARCHAR'}) GROUP BY class, camera ORDER BY camera", [files]).fetchall()
    assert got == [("Fighting", "cam-1", 2), ("Fighting", "cam-2", 3)]


def test_commits_carry_schema_and_package_version(tmp_path):
    from exvad_ray import __version__

    index = str(tmp_path / "idx")
    rows, parts = error_rows(ids(1))
    delta.commit(index, "errors", "run-z", 7, delta.write_files(index, "errors", rows, parts))
    meta = delta.commit_metadata(index, "errors")
    assert meta[delta.SCHEMA_VERSION_KEY] == str(SCHEMA_VERSION)
    assert meta[delta.PACKAGE_VERSION_KEY] == __version__
    assert meta["exvad.run_id"] == "run-z" and meta["exvad.batch"] == "7"


def test_user_mistakes_are_one_line_errors(tmp_path):
    index = str(tmp_path / "idx")
    rows, parts = error_rows(ids(2))
    with pytest.raises(ExvadError, match="partition values for 2 rows"):
        delta.write_files(index, "errors", rows, parts[:1])
    with pytest.raises(ExvadError, match="not a video id"):
        deletes.delete_videos(index, "errors", ["x' OR '1'='1"])
    with pytest.raises(ExvadError, match="no schema for table"):
        delta.open_table(index, "nonsense")
    with pytest.raises(ExvadError, match="no Delta table"):
        delta.snapshot_files(index, "videos")
    # a folder of today's per-video layout is not turned into a Delta table
    (tmp_path / "old" / "errors" / "date=2026-11-24").mkdir(parents=True)
    (tmp_path / "old" / "errors" / "date=2026-11-24" / "part-x.parquet").write_bytes(b"x")
    with pytest.raises(ExvadError, match="no Delta log"):
        delta.open_table(str(tmp_path / "old"), "errors")
