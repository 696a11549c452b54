"""The labels table: append-only files, the current view's merge rules, feedback, history."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from exvad_ray.errors import ExvadError
from exvad_ray.index.labels import (SCHEMA, append_labels, feedback_row, make_table, read_labels,
                                    record_feedback)

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)


def at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def rows_by_name(table: pa.Table) -> dict[str, dict]:
    return {r["name"]: r for r in table.to_pylist()}


def test_newest_import_wins_and_history_is_kept(tmp_path):
    uri = str(tmp_path / "labels")
    append_labels(uri, make_table([
        {"name": "a", "labels": ["Fire"], "split": "train", "segments": [{"start_frame": 0, "end_frame": 10, "label": "Fire"}]},
        {"name": "b", "labels": ["Normal"], "split": "test"},
    ]), source="import:ucf", added_at=at(0))
    append_labels(uri, make_table([{"name": "a", "labels": ["Fighting"], "split": "val"}]),
                  source="import:csv", author="bob", added_at=at(5))
    cur = rows_by_name(read_labels(uri))
    assert cur["a"]["labels"] == ["Fighting"] and cur["a"]["split"] == "val" and cur["a"]["segments"] == []
    assert cur["a"]["source"] == "import:csv" and cur["a"]["author"] == "bob"
    assert cur["b"]["labels"] == ["Normal"]
    hist = read_labels(uri, current=False)
    assert hist.schema.equals(SCHEMA) and hist.num_rows == 3
    assert hist.column("source").to_pylist() == ["import:ucf", "import:ucf", "import:csv"]
    assert len(list((tmp_path / "labels").glob("*.parquet"))) == 2  # one file per append, never rewritten


def test_feedback_adds_segments_and_newest_verdict_per_segment_wins(tmp_path):
    uri = str(tmp_path / "labels")
    append_labels(uri, make_table([{"name": "cam1", "labels": ["Normal"], "split": "test", "fps": 15.0}]),
                  source="import:ucf", added_at=at(0))
    seg = {"segment_id": "v1:10", "video_id": "v1", "uri": "s3://arch/cam01/cam1.mp4", "label": "Fire",
           "start_s": 2.0, "end_s": 4.0, "fps": 15.0, "n_frames": 150}
    other = dict(seg, segment_id="v1:40", start_s=8.0, end_s=9.5)
    record_feedback(uri, seg, "confirmed", author="ann")
    record_feedback(uri, other, "confirmed", cls="Fighting")
    cur = rows_by_name(read_labels(uri))["cam1"]
    # the name-only import and the verdicts on its URI are one video
    assert cur["video_uri"] == seg["uri"] and cur["split"] == "test"
    assert cur["labels"] == ["Fire", "Fighting"]
    assert cur["segments"] == [{"start_frame": 30, "end_frame": 60, "label": "Fire"},
                               {"start_frame": 120, "end_frame": 143, "label": "Fighting"}]
    record_feedback(uri, other, "false-alarm", author="ann")  # changes her mind: newest wins
    cur = rows_by_name(read_labels(uri))["cam1"]
    assert cur["labels"] == ["Fire"]
    assert cur["segments"][1] == {"start_frame": 120, "end_frame": 143, "label": "Normal"}
    hist = read_labels(uri, current=False).to_pylist()
    assert [r["verdict"] for r in hist] == [None, "confirmed", "confirmed", "false-alarm"]
    assert hist[1]["author"] == "ann" and hist[1]["segment_id"] == "v1:10"


def test_feedback_on_an_unlabelled_video_and_bad_verdicts(tmp_path):
    uri = str(tmp_path / "labels")
    seg = {"segment_id": "v9:0", "uri": "/arch/cam9/x.mp4", "label": "Fire", "start_s": 0.0, "end_s": 1.0, "fps": 25}
    record_feedback(uri, seg, "false-alarm")
    row = read_labels(uri).to_pylist()[0]
    assert row["name"] == "x" and row["labels"] == ["Normal"] and row["split"] == "train"
    assert row["segments"] == [{"start_frame": 0, "end_frame": 25, "label": "Normal"}]
    with pytest.raises(ExvadError, match="verdict"):
        feedback_row(seg, "maybe")
    with pytest.raises(ExvadError, match="frame rate"):
        feedback_row(dict(seg, fps=None), "confirmed")
    with pytest.raises(ExvadError, match="class"):
        feedback_row(dict(seg, label="Normal"), "confirmed")


def test_validation_single_file_and_idempotent_batches(tmp_path):
    uri = str(tmp_path / "labels")
    with pytest.raises(ExvadError, match="split"):
        append_labels(uri, make_table([{"name": "a", "split": "holdout"}]), source="import:csv")
    with pytest.raises(ExvadError, match="empty"):
        append_labels(uri, make_table([{"name": "a", "segments": [{"start_frame": 5, "end_frame": 5, "label": "Fire"}]}]),
                      source="import:csv")
    with pytest.raises(ExvadError, match="source"):
        append_labels(uri, make_table([{"name": "a"}]))
    with pytest.raises(ExvadError, match="no labels table"):
        read_labels(uri)
    t = make_table([{"name": "a", "labels": ["Fire"]}])
    first = append_labels(uri, t, source="synth", batch_id="b1")
    assert append_labels(uri, t, source="synth", batch_id="b1") == first
    assert len(read_labels(uri, current=False)) == 1
    # a single Parquet file in the old layout (no history columns) is read, but cannot grow
    legacy = tmp_path / "old.parquet"
    pq.write_table(pa.table({"name": ["z"], "labels": [["Fire"]], "split": ["test"]}), legacy)
    assert read_labels(str(legacy)).to_pylist()[0]["labels"] == ["Fire"]
    with pytest.raises(ExvadError, match="cannot grow"):
        append_labels(str(legacy), t, source="synth")


def test_labels_table_on_s3(s3_bucket):
    uri = s3_bucket + "/labels"
    append_labels(uri, make_table([{"name": "a", "labels": ["Fire"], "split": "test"}]), source="import:xd")
    record_feedback(uri, {"segment_id": "s", "uri": s3_bucket + "/v/a.mp4", "start_s": 0, "end_s": 1, "fps": 10},
                    "confirmed", cls="Fighting")
    cur = read_labels(uri).to_pylist()
    assert len(cur) == 1 and cur[0]["labels"] == ["Fire", "Fighting"]
