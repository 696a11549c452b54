"""The index package: schema versions on write and read, an index written by the previous version
(tests/index/data/index_v1, written by `exvad process` at 6cab58d) read the same through today's
readers, typed table readers/writers, run manifests."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from exvad_ray import index
from exvad_ray.errors import ExvadError
from exvad_ray.index.schemas import RENAMED, added_columns, renamed_columns

DATA = Path(__file__).parent / "data"


def canonical(table) -> str:
    """Order-independent digest of a table's rows (as the v1 fixture's expected file records it)."""
    rows = [{k: (v.hex() if isinstance(v, bytes) else (v.isoformat() if hasattr(v, "isoformat") else v))
             for k, v in r.items()} for r in table.to_pylist()]
    rows.sort(key=lambda r: json.dumps(r, sort_keys=True, default=str))
    return hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()


ADDED_SINCE_V1 = {"videos": {"timing"}, "errors": {"detail"}}  # reliability: timing flag, library message


@pytest.fixture()
def index_v1(tmp_path) -> str:
    dst = tmp_path / "index_v1"
    shutil.copytree(DATA / "index_v1", dst)
    return str(dst)


def test_v1_index_reads_the_same_under_new_names(index_v1):
    expected = json.loads((DATA / "index_v1.expected.json").read_text())
    assert index.index_version(index_v1) == 1
    for table, exp in expected.items():
        got = index.read_table(index_v1, table)
        added = sorted(added_columns(table, 1))  # columns v1 files lack: read as nulls
        assert all(got.column(c).null_count == got.num_rows for c in added)
        got = got.drop_columns(added)
        old = renamed_columns(table, 1)
        added = [c for c in got.column_names if old.get(c, c) not in exp["columns"]]
        assert set(added) <= ADDED_SINCE_V1.get(table, set()), added  # new nullable columns: null in v1 files
        assert all(got.column(c).null_count == got.num_rows for c in added)
        got = got.drop_columns(added)
        assert got.column_names == [next((n for n, o in old.items() if o == c), c) for c in exp["columns"]]
        back = got.rename_columns([old.get(c, c) for c in got.column_names])
        assert back.num_rows == exp["rows"] and canonical(back) == exp["sha256"], table
    emb = index.read_snippet_embeddings(index_v1)
    assert len(emb) == expected["videos"]["rows"] and all(e.shape[1] == 64 for e in emb.values())
    # selecting renamed columns by their new names works on the old files
    t = index.read_table(index_v1, "segments", ["segment_id", "visual_embedding"])
    assert t.num_rows == expected["segments"]["rows"] and t.column("visual_embedding").null_count == 0


def test_v1_index_refuses_new_rows_but_compacts_in_its_own_schema(index_v1):
    with pytest.raises(ExvadError, match=r"schema version 1 .*snippets.clip_embedding -> visual_embedding"):
        index.check_writable(index_v1)
    before = {t: canonical(index.read_table(index_v1, t)) for t in index.VIDEO_TABLES}
    merged = index.compact(index_v1)
    assert merged["snippets"] > 1
    assert {t: canonical(index.read_table(index_v1, t)) for t in index.VIDEO_TABLES} == before
    f = index.list_files(index_v1, "snippets")[0]
    assert "clip_embedding" in pq.read_schema(f).names and index.index_version(index_v1) == 1


def test_newer_or_mixed_versions_are_refused_clearly(index_v1, tmp_path):
    doc = index.read_manifests(index_v1)[0]
    index.write_manifest(index_v1, {**doc, "run_id": "later"})  # stamps the current version
    with pytest.raises(ExvadError, match=r"mixes schema versions \[1, 2\]"):
        index.read_table(index_v1, "videos")
    newer = tmp_path / "newer"
    (newer / "runs").mkdir(parents=True)
    (newer / "runs" / "run-x.json").write_text(json.dumps({"run_id": "x", "index_schema_version": 99}))
    with pytest.raises(ExvadError, match=r"written with schema version 99; .* reads versions up to 2"):
        index.read_table(str(newer), "snippets")


def test_typed_writers_stamp_the_version_and_check_columns(tmp_path, write_feature_index):
    ids = ["00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000000"]
    root = write_feature_index(str(tmp_path / "idx"), [
        {"video_id": ids[0], "name": "a", "features": np.eye(3, 4, dtype=np.float32)},
        {"video_id": ids[1], "name": "b", "features": np.ones((2, 4), np.float32), "text": np.ones(4)}])
    assert index.index_version(root) == index.SCHEMA_VERSION  # no manifest: from the files
    f = index.list_files(root, "videos")[0]
    assert pq.read_metadata(f).metadata[b"exvad.schema_version"] == str(index.SCHEMA_VERSION).encode()
    emb = index.read_snippet_embeddings(root, ids[:1])
    assert list(emb) == ids[:1] and np.array_equal(emb[ids[0]], np.eye(3, 4))
    assert index.done_video_ids(root) == set(ids)
    with pytest.raises(ExvadError, match=r"missing \['visual_embedding'\], extra \['clip_embedding'\]"):
        index.SNIPPETS.write(root, "v2", {"date": "d", "camera": "c"}, {
            **{c: [] for c in index.SNIPPETS.schema.names if c != "visual_embedding"}, "clip_embedding": []})
    with pytest.raises(ExvadError, match="partition value"):
        index.VIDEOS.write(root, "v2", {"date": "d"}, {})
    with pytest.raises(ExvadError, match=r"no column\(s\) \['clip_embedding'\]"):
        index.read_table(root, "snippets", ["clip_embedding"])


def test_run_manifests_are_the_runs_table(tmp_path):
    root = str(tmp_path / "idx")
    index.write_manifest(root, {"run_id": "r1", "archive": "/a", "started_at": "2026-01-01T00:00:00+00:00",
                                "args": {"x": 1}, "summary": None, "versions": {}})
    assert index.read_manifest(root, "r1")["index_schema_version"] == index.SCHEMA_VERSION
    runs = index.read_runs(root)
    assert runs.column("run_id").to_pylist() == ["r1"]
    assert runs.column("index_schema_version").to_pylist() == [index.SCHEMA_VERSION]
    assert index.read_manifest(root, "nope") is None


def test_every_rename_names_a_current_column():
    for version, tables in RENAMED.items():
        for table, names in tables.items():
            assert set(names) <= set(index.arrow_schema(table).names), (version, table)
