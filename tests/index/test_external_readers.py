"""Engines outside the package read a Delta index and see exactly its current rows (issue 23).

An index is written with the package's own functions (`delta.write_files` + `delta.commit`), then two
videos are replaced (their old ids deleted in the log, the new content committed under new ids, as
the job does for changed content) and an error row is deleted (the video retried successfully).
The same query - the video ids of every table, and segments joined to videos counted per class -
is then run by DuckDB over the snapshot's file list, Polars, a pyarrow dataset and deltalake's own
reader (and Ray Data in the slow test). All must agree, no superseded id may appear, and every
current id must. A glob over the table folder is shown to see the superseded rows: why
docs/INDEX.md "External readers" tells readers to read the snapshot, never the folder.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from exvad_ray.index import deletes, delta
from exvad_ray.index.schemas import arrow_schema

pytest.importorskip("deltalake")

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.timezone.utc)
DATE = "2026-11-24"
TABLES = ("videos", "snippets", "segments", "errors")
Result = dict[str, Any]


def _camera(i: int) -> str:
    return f"cam-{i % 2 + 1}"


def _classes(i: int) -> list[str]:
    """The segment classes of the i-th video: one or two segments, three classes over the index."""
    return [("Fighting", "Robbery")[i % 2]] + (["Explosion"] if i % 3 == 0 else [])


def video_rows(vids: list[str], first: int) -> tuple[pa.Table, list[dict[str, str]]]:
    n, idx = len(vids), range(first, first + len(vids))
    cols = {f.name: [None] * n for f in arrow_schema("videos")}
    cols.update(video_id=vids, uri=[f"s3://archive/{_camera(i)}/{DATE}/clip{i}.mp4" for i in idx],
                name=[f"clip{i}.mp4" for i in idx], status=["ok"] * n, size_bytes=[1000 + i for i in idx],
                duration_s=[4.0] * n, n_snippets=[3] * n, n_segments=[len(_classes(i)) for i in idx],
                video_class=[_classes(i)[0] for i in idx], run_id=["r"] * n, processed_at=[NOW] * n)
    return pa.table(cols, schema=arrow_schema("videos")), [{"date": DATE, "camera": _camera(i)} for i in idx]


def snippet_rows(vids: list[str], first: int) -> tuple[pa.Table, list[dict[str, str]]]:
    rows = [(v, first + k, s) for k, v in enumerate(vids) for s in range(3)]
    cols = {"video_id": [v for v, _, _ in rows], "uri": [f"s3://archive/clip{i}.mp4" for _, i, _ in rows],
            "window_index": [0] * len(rows), "snippet_index": [s for _, _, s in rows],
            "start_s": [s * 1.28 for _, _, s in rows], "end_s": [(s + 1) * 1.28 for _, _, s in rows],
            "frame_index": [s * 32 for _, _, s in rows], "anomaly_score": [0.1 * s for _, _, s in rows],
            "class_probs": [[0.5, 0.5]] * len(rows), "visual_embedding": [[0.1, 0.2]] * len(rows),
            "thumbnail_jpeg": [b"\xff\xd8"] * len(rows)}
    return pa.table(cols, schema=arrow_schema("snippets")), [{"date": DATE, "camera": _camera(i)} for _, i, _ in rows]


def segment_rows(vids: list[str], first: int) -> tuple[pa.Table, list[dict[str, str]]]:
    rows = [(v, first + k, c) for k, v in enumerate(vids) for c in _classes(first + k)]
    n = len(rows)
    cols = {"segment_id": [f"{v}:{c}" for v, _, c in rows], "video_id": [v for v, _, _ in rows],
            "uri": [f"s3://archive/clip{i}.mp4" for _, i, _ in rows], "label": [c for _, _, c in rows],
            "score": [0.9] * n, "class_score": [0.8] * n, "start_s": [0.0] * n, "end_s": [1.28] * n,
            "first_snippet": [0] * n, "last_snippet": [1] * n, "peak_s": [0.64] * n, "start_at": [NOW] * n,
            "end_at": [NOW] * n, "explanation": ["something happens"] * n, "thumbnail_jpeg": [b"\xff\xd8"] * n,
            "visual_embedding": [[0.1, 0.2]] * n, "explanation_embedding": [[0.3, 0.4]] * n}
    parts = [{"class": c, "date": DATE, "camera": _camera(i)} for _, i, c in rows]
    return pa.table(cols, schema=arrow_schema("segments")), parts


def error_rows(vids: list[str]) -> tuple[pa.Table, list[dict[str, str]]]:
    n = len(vids)
    cols = {"video_id": vids, "uri": [f"s3://archive/bad/{v}.mp4" for v in vids], "size_bytes": [10] * n,
            "stage": ["decode"] * n, "error_type": ["DecodeError"] * n, "reason": ["truncated"] * n,
            "message": ["ends early"] * n, "detail": [None] * n, "run_id": ["r"] * n, "processed_at": [NOW] * n}
    return pa.table(cols, schema=arrow_schema("errors")), [{"date": DATE}] * n


ROWS = {"videos": video_rows, "snippets": snippet_rows, "segments": segment_rows}


@dataclass
class Index:
    uri: str
    current: dict[str, set[str]]  # the ids each table must hold
    superseded: set[str]  # ids no table may hold
    retried: str  # the error that was retried successfully: in no `errors` row


def build_index(index: str) -> Index:
    """Six videos and two errors (run 1, blocks of videos per file), then run 2: two videos replaced
    (their old ids deleted, the new content under new ids) and one error retried successfully (its
    error row deleted, its rows added)."""
    vids, errs = [str(uuid.uuid4()) for _ in range(6)], [str(uuid.uuid4()) for _ in range(2)]
    for table, rows in ROWS.items():
        delta.commit(index, table, "run-1", 0, delta.write_files(index, table, *rows(vids, 0)))
    delta.commit(index, "errors", "run-1", 0, delta.write_files(index, "errors", *error_rows(errs)))

    old, new = vids[:2], [str(uuid.uuid4()) for _ in range(2)]
    for table in (*ROWS, "errors"):
        deletes.delete_videos(index, table, old)
    assert deletes.delete_videos(index, "errors", [errs[0]]) == 1
    for table, rows in ROWS.items():
        delta.commit(index, table, "run-2", 0, delta.write_files(index, table, *rows(new + [errs[0]], 0)))
    done = set(vids[2:] + new + [errs[0]])
    return Index(index, {"videos": done, "snippets": done, "segments": done, "errors": {errs[1]}},
                 set(old), errs[0])


# ------------------------------------------------------------------------------------------ readers
# Each returns {"ids": {table: sorted ids}, "per_class": [(class, segments, videos)], "rows": {table: n}}:
# the ids of every table, and segments joined to videos on video_id, counted per class.

PER_CLASS_SQL = """
SELECT s.class, count(*) AS segments, count(DISTINCT s.video_id) AS videos
FROM read_parquet($segments, hive_partitioning = true, hive_types_autocast = false) s
JOIN read_parquet($videos, hive_partitioning = true, hive_types_autocast = false) v USING (video_id)
GROUP BY s.class ORDER BY s.class
"""


def read_duckdb(index: str) -> Result:
    """DuckDB over the snapshot's file list (no `delta` extension, nothing downloaded)."""
    con = duckdb.connect()
    if index.startswith("s3://"):
        from exvad_ray import storage

        con.register_filesystem(storage.filesystem(index)[0])
    files = {t: delta.snapshot_files(index, t) for t in TABLES}
    ids = {t: [r[0] for r in con.execute("SELECT video_id FROM read_parquet($f) ORDER BY 1", {"f": files[t]}).fetchall()]
           for t in TABLES}
    per_class = [tuple(r) for r in con.execute(PER_CLASS_SQL, {"segments": files["segments"],
                                                               "videos": files["videos"]}).fetchall()]
    return _result(ids, per_class)


def read_polars(index: str) -> Result:
    import polars as pl

    frames = {t: pl.scan_delta(delta.table_uri(index, t), storage_options=_options(index, t)) for t in TABLES}
    ids = {t: frames[t].select("video_id").sort("video_id").collect()["video_id"].to_list() for t in TABLES}
    per_class = (frames["segments"].select("class", "video_id")
                 .join(frames["videos"].select("video_id"), on="video_id")
                 .group_by("class").agg(pl.len().alias("segments"), pl.col("video_id").n_unique().alias("videos"))
                 .sort("class").collect())
    return _result(ids, [tuple(r) for r in per_class.iter_rows()])


def read_deltalake(index: str) -> Result:
    """deltalake's own reader: `DeltaTable.to_pyarrow_table()`."""
    return _arrow_result({t: _table(index, t).to_pyarrow_table(columns=_columns(t)) for t in TABLES})


def read_pyarrow_dataset(index: str) -> Result:
    """A pyarrow dataset of the snapshot (`DeltaTable.to_pyarrow_dataset()`): what Ray's `read_delta`
    and other Arrow-based engines scan."""
    return _arrow_result({t: _table(index, t).to_pyarrow_dataset().to_table(columns=_columns(t)) for t in TABLES})


def read_ray(index: str) -> Result:
    import ray

    tables = {}
    for t in TABLES:
        ds = ray.data.read_delta(delta.table_uri(index, t), storage_options=_options(index, t), columns=_columns(t))
        tables[t] = pa.concat_tables(ray.get(ds.to_arrow_refs()))
    return _arrow_result(tables)


def _table(index: str, table: str) -> Any:
    from deltalake import DeltaTable

    return DeltaTable(delta.table_uri(index, table), storage_options=_options(index, table))


def _options(index: str, table: str) -> dict[str, str] | None:
    """The S3 options every Delta reader takes (endpoint, credentials, region); None on local disk."""
    return delta.storage_options(delta.table_uri(index, table))


def _columns(table: str) -> list[str]:
    return ["video_id", "class"] if table == "segments" else ["video_id"]


def _arrow_result(tables: dict[str, pa.Table]) -> Result:
    """The query over Arrow tables (join and group by in pyarrow)."""
    ids = {t: sorted(tables[t].column("video_id").to_pylist()) for t in TABLES}
    seg = tables["segments"].select(["class", "video_id"])
    joined = seg.join(tables["videos"].select(["video_id"]), keys="video_id", join_type="inner")
    grouped = joined.group_by("class").aggregate([("video_id", "count"), ("video_id", "count_distinct")])
    per_class = sorted(zip(grouped.column("class").to_pylist(), grouped.column("video_id_count").to_pylist(),
                           grouped.column("video_id_count_distinct").to_pylist()))
    return _result(ids, per_class)


def _result(ids: dict[str, list[str]], per_class: list[tuple]) -> Result:
    return {"ids": ids, "per_class": [(str(c), int(n), int(v)) for c, n, v in per_class],
            "rows": {t: len(v) for t, v in ids.items()}}


# ------------------------------------------------------------------------------------------- checks


def expected_per_class() -> list[tuple[str, int, int]]:
    """Per class: the segments of the current videos (run 1's videos 2..5, run 2's three) and how
    many videos they belong to, from the rows written, not from a reader."""
    classes = [c for i in [2, 3, 4, 5, 0, 1, 2] for c in _classes(i)]
    return sorted((c, classes.count(c), classes.count(c)) for c in set(classes))


def check_current(idx: Index, got: Result, reader: str) -> None:
    for t in TABLES:
        seen = set(got["ids"][t])
        assert not seen & idx.superseded, f"{reader}: superseded ids in {t}"
        assert seen == idx.current[t], f"{reader}: {t} ids differ from the current ones"
    assert idx.retried not in got["ids"]["errors"], f"{reader}: the retried error is still an error row"
    assert got["rows"]["videos"] == 7 and got["rows"]["snippets"] == 21, reader


def run_readers(idx: Index, readers: dict[str, Any]) -> dict[str, Result]:
    results = {name: fn(idx.uri) for name, fn in readers.items()}
    for name, got in results.items():
        check_current(idx, got, name)
    first = next(iter(results.values()))
    assert all(r == first for r in results.values()), {n: r["per_class"] for n, r in results.items()}
    return results


READERS = {"duckdb": read_duckdb, "deltalake": read_deltalake, "pyarrow dataset": read_pyarrow_dataset}


@pytest.fixture(params=["local", "s3"])
def index_uri(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "idx")
    return f"{request.getfixturevalue('s3_bucket')}/idx"


def test_every_reader_sees_only_current_rows(index_uri):
    """DuckDB (file list), deltalake, a pyarrow dataset and Polars give the same answer, on local disk
    and on the S3 server: the replaced videos' old ids nowhere, every current id present."""
    idx = build_index(index_uri)
    results = run_readers(idx, READERS)
    assert results["duckdb"]["per_class"] == expected_per_class() == [
        ("Explosion", 2, 2), ("Fighting", 4, 4), ("Robbery", 3, 3)]


def test_polars_agrees(index_uri):
    """Polars (`scan_delta`, the S3 options of `delta.storage_options`) gives the same answer."""
    pytest.importorskip("polars", reason="polars is not installed (pip install -e '.[test]')")
    idx = build_index(index_uri)
    results = run_readers(idx, {"duckdb": read_duckdb, "polars": read_polars})
    assert results["polars"]["per_class"] == expected_per_class()


def test_a_glob_sees_the_superseded_rows(tmp_path):
    """Why readers must read the snapshot: until vacuum, the folder still holds the files the deletes
    rewrote, so a glob over it returns the replaced videos' old rows (and rows twice)."""
    idx = build_index(str(tmp_path / "idx"))
    glob = f"{delta.table_uri(idx.uri, 'videos')}/**/*.parquet"
    seen = [r[0] for r in duckdb.connect().execute("SELECT video_id FROM read_parquet(?)", [glob]).fetchall()]
    assert set(seen) & idx.superseded and len(seen) > len(idx.current["videos"])


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One local Ray for the module's Ray tests, shut down after them."""
    ray = pytest.importorskip("ray")
    if not hasattr(ray.data, "read_delta"):
        pytest.skip("this Ray has no ray.data.read_delta (the pyarrow-dataset reader covers its path)")
    ray.init(num_cpus=1, include_dashboard=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_ray_read_delta_agrees(index_uri, local_ray):
    """Ray Data's `read_delta` (a local Ray) gives the same answer as DuckDB over the file list."""
    idx = build_index(index_uri)
    results = run_readers(idx, {"duckdb": read_duckdb, "ray": read_ray})
    assert results["ray"]["per_class"] == expected_per_class()
