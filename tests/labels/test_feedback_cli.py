"""`exvad feedback`: a verdict on a real index's segment lands in the labels table; `exvad train
--labels` then sees it (confirmed -> a segment of its class, false alarm -> Normal)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from exvad_ray.cli import main
from exvad_ray.index.labels import append_labels, make_table, read_labels
from exvad_ray.index import arrow_schema, write_video_tables


def _default(t: pa.DataType):
    if pa.types.is_list(t):
        return []
    if pa.types.is_string(t):
        return ""
    if pa.types.is_timestamp(t):
        return dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    if pa.types.is_binary(t):
        return b""
    return 0


def row(table: str, **values) -> dict:
    """One row of an index table: the given values, type defaults elsewhere (as columns)."""
    return {f.name: [values.get(f.name, _default(f.type))] for f in arrow_schema(table)}


def fake_index(index: str, fps: float = 15.0) -> None:
    part = {"date": "2026-11-01", "camera": "cam01"}
    uri = "s3://gone/cam01/2026-11-01/Fire_001.mp4"
    seg = row("segments", segment_id="v1:20", video_id="v1", uri=uri, label="Fire", score=0.9,
              start_s=20 * 16 / fps, end_s=30 * 16 / fps, first_snippet=20, last_snippet=29)
    vid = row("videos", video_id="v1", uri=uri, name="Fire_001", status="ok", fps=fps, n_frames=900)
    write_video_tables(index, "v1", {"segments": [({"class": "Fire", **part}, seg)], "videos": (part, vid)})


def test_feedback_cli_appends_verdicts(tmp_path, capsys):
    index, labels = str(tmp_path / "index"), str(tmp_path / "labels")
    fake_index(index)
    append_labels(labels, make_table([{"name": "Fire_001", "labels": ["Normal"], "split": "train"}]),
                  source="import:csv")
    args = ["feedback", "v1:20", "--index", index, "--labels", labels]
    assert main([*args, "--verdict", "confirmed", "--author", "ann"]) == 0
    assert "frames 320-480 at 15 fps" in capsys.readouterr().out
    cur = read_labels(labels).to_pylist()
    assert len(cur) == 1 and cur[0]["labels"] == ["Fire"]
    assert cur[0]["segments"] == [{"start_frame": 320, "end_frame": 480, "label": "Fire"}]
    assert main([*args, "--verdict", "false-alarm"]) == 0
    cur = read_labels(labels).to_pylist()[0]
    assert cur["labels"] == ["Normal"] and cur["segments"][0]["label"] == "Normal"
    assert main([*args, "--verdict", "false-alarm", "--class", "Fire"]) == 2
    assert main(["feedback", "v1:99", "--index", index, "--labels", labels, "--verdict", "confirmed"]) == 2
    assert "no segment 'v1:99'" in capsys.readouterr().err
    assert main(["labels", "show", labels]) == 0
    out = capsys.readouterr().out
    assert "1 videos" in out and "train" in out and "feedback 2 rows" in out
