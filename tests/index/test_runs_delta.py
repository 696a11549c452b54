"""Run manifests on a Delta index: rows of the Delta table INDEX/run_log (newest revision of a run
wins), read with the JSON manifests an older or upgraded index holds in INDEX/runs/; an index of
per-video files keeps writing JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from deltalake import DeltaTable

from exvad_ray import storage
from exvad_ray.errors import ExvadError
from exvad_ray.index import delta, index_version, read_manifest, read_manifests, read_runs, write_manifest
from exvad_ray.index.runs import COMPACT_AT, RUN_LOG, write_manifests
from exvad_ray.index.schemas import SCHEMA_VERSION, arrow_schema

START = {"run_id": "r1", "archive": "s3://arch", "processing_date": "2026-11-05",
         "first_started_at": "2026-11-05T10:00:00+00:00", "started_at": "2026-11-05T10:00:00+00:00",
         "finished_at": None, "args": {"archive": "s3://arch", "camera_pattern": None}, "summary": None,
         "versions": {"exvad-ray": "0.1.0"}, "attempts": 1}
END = {**START, "finished_at": "2026-11-05T11:30:00+00:00", "summary": {"videos_processed": 3, "hours": 1.5}}


def delta_index(root: str) -> str:
    delta.open_table(root, "videos")  # what makes an index a Delta index
    return root


@pytest.fixture(params=["local", "s3"])
def index(request, tmp_path) -> str:
    if request.param == "local":
        return delta_index(str(tmp_path / "index"))
    return delta_index(request.getfixturevalue("s3_bucket") + "/index")


def test_start_and_end_manifest_are_one_run_and_the_latest_wins(index):
    write_manifest(index, START)
    assert read_manifest(index, "r1") == {**START, "index_schema_version": SCHEMA_VERSION}
    write_manifest(index, END)
    assert read_manifest(index, "r1") == {**END, "index_schema_version": SCHEMA_VERSION}
    assert [m["summary"] for m in read_manifests(index)] == [END["summary"]]
    assert read_manifest(index, "nope") is None
    # rows in the Delta table run_log, no JSON file
    log = DeltaTable(storage.join(index, RUN_LOG), storage_options=delta.storage_options(index))
    rows = log.to_pyarrow_table(columns=["run_id", "revision"]).to_pylist()
    assert sorted((r["run_id"], r["revision"]) for r in rows) == [("r1", 1), ("r1", 2)]
    assert not storage.exists(storage.join(index, "runs"))
    assert index_version(index) == SCHEMA_VERSION


def test_read_runs_columns(tmp_path):
    index = delta_index(str(tmp_path / "index"))
    write_manifest(index, START)
    write_manifest(index, END)
    write_manifest(index, {**START, "run_id": "r0", "first_started_at": "2026-11-04T09:00:00+00:00"})
    runs = read_runs(index)
    assert runs.schema.equals(arrow_schema("runs"))
    got = runs.to_pylist()
    assert [r["run_id"] for r in got] == ["r0", "r1"]  # oldest first start first
    r1 = got[1]
    assert r1["archive"] == "s3://arch" and r1["processing_date"] == "2026-11-05"
    assert r1["finished_at"].isoformat() == "2026-11-05T11:30:00+00:00"
    assert json.loads(r1["summary_json"]) == END["summary"] and json.loads(r1["args_json"]) == END["args"]
    assert r1["index_schema_version"] == SCHEMA_VERSION


def test_a_manifest_without_an_archive_is_stored_as_given(tmp_path):
    """A manifest need not carry every column (compaction's tests, older jobs): stored as written."""
    index = delta_index(str(tmp_path / "index"))
    write_manifest(index, {"run_id": "run-a"})
    assert read_manifest(index, "run-a") == {"run_id": "run-a", "index_schema_version": SCHEMA_VERSION}


def test_old_json_manifests_of_a_delta_index_are_still_read(tmp_path):
    index = delta_index(str(tmp_path / "index"))
    runs = Path(index) / "runs"
    runs.mkdir()
    old = {**START, "run_id": "old", "first_started_at": "2026-10-01T00:00:00+00:00", "index_schema_version": 2,
           "upgraded_from": {"index": "/before", "index_schema_version": 1}}
    (runs / "run-old.json").write_text(json.dumps(old))
    (runs / "run-r1.json").write_text(json.dumps({**START, "index_schema_version": SCHEMA_VERSION}))
    assert read_manifest(index, "old") == old
    assert [m["run_id"] for m in read_manifests(index)] == ["old", "r1"]
    write_manifest(index, END)  # the same run again, now on the run log: its Delta row wins
    assert read_manifest(index, "r1")["summary"] == END["summary"]
    assert [(m["run_id"], m["summary"]) for m in read_manifests(index)] == [("old", None), ("r1", END["summary"])]
    assert json.loads((runs / "run-r1.json").read_text())["summary"] is None  # the JSON file is left as it was
    assert read_runs(index).column("run_id").to_pylist() == ["old", "r1"]
    # index_version reads both: a manifest of a newer exvad-ray among the old files is refused
    (runs / "run-x.json").write_text(json.dumps({"run_id": "x", "index_schema_version": 99}))
    with pytest.raises(ExvadError, match="mixes schema versions|upgrade exvad-ray"):
        index_version(index)


def test_an_index_of_per_video_files_keeps_json_manifests(tmp_path):
    index = str(tmp_path / "index")
    write_manifest(index, START)
    write_manifest(index, END)
    assert json.loads((Path(index) / "runs" / "run-r1.json").read_text())["summary"] == END["summary"]
    assert not (Path(index) / RUN_LOG).exists()
    assert read_manifest(index, "r1") == {**END, "index_schema_version": SCHEMA_VERSION}


def test_the_run_log_is_compacted_as_it_grows(tmp_path):
    index = delta_index(str(tmp_path / "index"))
    for i in range(COMPACT_AT + 3):  # a start and an end row per run
        write_manifest(index, {**START, "run_id": f"r{i:02d}", "first_started_at": f"2026-11-05T10:{i:02d}:00+00:00"})
        write_manifest(index, {**END, "run_id": f"r{i:02d}", "first_started_at": f"2026-11-05T10:{i:02d}:00+00:00"})
    log = DeltaTable(storage.join(index, RUN_LOG))
    assert len(log.file_uris()) < COMPACT_AT
    assert log.to_pyarrow_table().num_rows == 2 * (COMPACT_AT + 3)  # merged, every revision kept
    docs = read_manifests(index)
    assert [d["run_id"] for d in docs] == [f"r{i:02d}" for i in range(COMPACT_AT + 3)]
    assert all(d["summary"] == END["summary"] for d in docs)


def test_many_manifests_in_one_commit_and_the_same_again_adds_none(index):
    """`write_manifests` (an upgrade's thousands of runs): one commit for all; the docs the run log
    already holds as they are left out; a changed one becomes its run's next revision."""
    docs = [{**END, "run_id": f"r{i}", "first_started_at": f"2026-11-05T10:0{i}:00+00:00"} for i in range(3)]
    assert write_manifests(index, docs) == 3
    log = DeltaTable(storage.join(index, RUN_LOG), storage_options=delta.storage_options(index))
    assert log.version() == 0 and len(log.file_uris()) == 1
    assert read_manifests(index) == [{**d, "index_schema_version": SCHEMA_VERSION} for d in docs]
    assert write_manifests(index, docs) == 0  # nothing new: no commit
    log = DeltaTable(storage.join(index, RUN_LOG), storage_options=delta.storage_options(index))
    assert log.version() == 0
    changed = {**docs[1], "summary": {"videos_processed": 4}}
    assert write_manifests(index, [docs[0], changed, {"run_id": "r3"}, {"run_id": "r3", "attempts": 2}]) == 3
    rows = DeltaTable(storage.join(index, RUN_LOG), storage_options=delta.storage_options(index)).to_pyarrow_table(
        columns=["run_id", "revision"]).to_pylist()
    assert sorted((r["run_id"], r["revision"]) for r in rows) == [("r0", 1), ("r1", 1), ("r1", 2), ("r2", 1),
                                                                  ("r3", 1), ("r3", 2)]
    assert read_manifest(index, "r1")["summary"] == {"videos_processed": 4}
    assert read_manifest(index, "r3") == {"run_id": "r3", "attempts": 2, "index_schema_version": SCHEMA_VERSION}
    with pytest.raises(ExvadError, match="needs a run_id"):
        write_manifests(index, [{"archive": "x"}])


def test_many_manifests_on_an_index_of_per_video_files_are_json_files(tmp_path):
    index = str(tmp_path / "index")
    assert write_manifests(index, [START, {**START, "run_id": "r2"}]) == 2
    assert sorted(p.name for p in (Path(index) / "runs").iterdir()) == ["run-r1.json", "run-r2.json"]
    assert not (Path(index) / RUN_LOG).exists()
    assert read_manifest(index, "r2") == {**START, "run_id": "r2", "index_schema_version": SCHEMA_VERSION}
