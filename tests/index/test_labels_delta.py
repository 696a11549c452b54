"""The labels table as a Delta table: a new table is Delta (local and S3), its history and current
view are those of the folder layout, batch ids are idempotent through the log, feedback lands in it;
an existing folder of Parquet files keeps its layout; a folder that is neither is refused."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from exvad_ray import storage
from exvad_ray.errors import ExvadError
from exvad_ray.index.delta import storage_options
from exvad_ray.index.labels import SCHEMA, append_labels, make_table, read_labels, record_feedback

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)


def at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def delta_table(uri: str) -> DeltaTable:
    return DeltaTable(uri, storage_options=storage_options(uri))


def rows_by_name(table: pa.Table) -> dict[str, dict]:
    return {r["name"]: r for r in table.to_pylist()}


@pytest.fixture(params=["local", "s3"])
def labels_uri(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "annotations" / "labels")
    return request.getfixturevalue("s3_bucket") + "/footage/annotations/labels"


def test_new_table_is_delta_and_keeps_history_and_current_view(labels_uri):
    first = append_labels(labels_uri, make_table([
        {"name": "a", "video_uri": "s3://arch/a.mp4", "labels": ["Fire"], "split": "train",
         "segments": [{"start_frame": 0, "end_frame": 10, "label": "Fire"}], "fps": 10.0},
        {"name": "b", "labels": ["Normal"], "split": "test"},
    ]), source="import:ucf", added_at=at(5), batch_id="ucf-1")
    # a later batch that says it was made earlier: history is ordered by added_at, not by commit
    append_labels(labels_uri, make_table([{"name": "c", "labels": ["Normal"], "split": "val"}]),
                  source="import:csv", author="bob", added_at=at(1))
    append_labels(labels_uri, make_table([{"name": "a", "video_uri": "s3://arch/a.mp4", "labels": ["Fighting"],
                                           "split": "val"}]), source="import:csv", added_at=at(9))
    assert storage.exists(storage.join(labels_uri, "_delta_log"))
    log = delta_table(labels_uri)
    assert log.version() == 3  # the creation, then one commit per batch
    assert log.to_pyarrow_table().num_rows == 4
    # the returned URI is the batch's data file, in the table's snapshot
    assert storage.normalize(first) in {storage.normalize(f) for f in log.file_uris()}
    with storage.open_file(first) as fh:
        assert pq.read_table(fh).column("name").to_pylist() == ["a", "b"]

    hist = read_labels(labels_uri, current=False)
    assert hist.schema.equals(SCHEMA)
    assert hist.column("name").to_pylist() == ["c", "a", "b", "a"]
    assert hist.column("added_at").to_pylist() == [at(1), at(5), at(5), at(9)]
    assert hist.column("author").to_pylist() == ["bob", None, None, None]
    cur = rows_by_name(read_labels(labels_uri))
    assert sorted(cur) == ["a", "b", "c"]
    assert cur["a"]["labels"] == ["Fighting"] and cur["a"]["split"] == "val" and cur["a"]["segments"] == []
    assert cur["b"]["split"] == "test" and cur["c"]["author"] == "bob"


def test_batch_id_is_written_once(labels_uri):
    t = make_table([{"name": "a", "labels": ["Fire"], "split": "test"}])
    first = append_labels(labels_uri, t, source="synth", batch_id="synth-abc")
    again = append_labels(labels_uri, t, source="synth", batch_id="synth-abc", added_at=at(60))
    assert again == first
    assert delta_table(labels_uri).version() == 1  # no commit for the repeated batch
    assert delta_table(labels_uri).transaction_version("labels-batch:synth-abc") == 0
    other = append_labels(labels_uri, t, source="synth", batch_id="synth-def")
    assert other != first
    assert read_labels(labels_uri, current=False).num_rows == 2
    assert delta_table(labels_uri).history(1)[0]["exvad.batch_id"] == "synth-def"


def test_feedback_verdicts_land_in_the_delta_table(labels_uri):
    append_labels(labels_uri, make_table([{"name": "cam1", "labels": ["Normal"], "split": "test", "fps": 15.0}]),
                  source="import:ucf", added_at=at(0))
    seg = {"segment_id": "v1:10", "video_id": "v1", "uri": "s3://arch/cam01/cam1.mp4", "label": "Fire",
           "start_s": 2.0, "end_s": 4.0, "fps": 15.0, "n_frames": 150}
    record_feedback(labels_uri, seg, "confirmed", author="ann")
    record_feedback(labels_uri, seg, "false-alarm", author="ann")  # she changes her mind: newest wins
    rows = delta_table(labels_uri).to_pyarrow_table(columns=["source", "segment_id", "verdict"]).to_pylist()
    assert sorted((r["source"], r["segment_id"], r["verdict"]) for r in rows if r["source"] == "feedback") == \
        [("feedback", "v1:10", "confirmed"), ("feedback", "v1:10", "false-alarm")]
    cur = read_labels(labels_uri).to_pylist()
    assert len(cur) == 1 and cur[0]["labels"] == ["Normal"] and cur[0]["video_uri"] == seg["uri"]
    assert cur[0]["segments"] == [{"start_frame": 30, "end_frame": 60, "label": "Normal"}]
    assert [r["verdict"] for r in read_labels(labels_uri, current=False).to_pylist()] == \
        [None, "confirmed", "false-alarm"]


def test_an_empty_folder_becomes_a_delta_table(tmp_path):
    folder = tmp_path / "labels"
    folder.mkdir()
    append_labels(str(folder), make_table([{"name": "a"}]), source="synth")
    assert (folder / "_delta_log").is_dir()
    assert read_labels(str(folder)).column("name").to_pylist() == ["a"]


def write_old_folder(folder: Path) -> None:
    """A labels folder as written before labels became Delta: files named by the UTC time."""
    folder.mkdir(parents=True)
    old = make_table([{"name": "a", "labels": ["Fire"], "split": "test", "source": "import:xd", "added_at": at(0)}])
    pq.write_table(old, folder / "20261101T000000000000Z-import_xd-0123456789ab.parquet")


def test_an_old_parquet_folder_still_reads_and_appends_as_files(tmp_path):
    folder = tmp_path / "labels"
    write_old_folder(folder)
    assert read_labels(str(folder)).to_pylist()[0]["labels"] == ["Fire"]
    written = append_labels(str(folder), make_table([{"name": "b", "labels": ["Normal"]}]), source="import:csv",
                            added_at=at(3), batch_id="csv-1")
    assert Path(written).parent == folder and Path(written).name.endswith("-csv_1.parquet")
    assert append_labels(str(folder), make_table([{"name": "b"}]), source="import:csv", batch_id="csv-1") == written
    record_feedback(str(folder), {"segment_id": "s", "uri": "/arch/a.mp4", "name": "a", "label": "Fire",
                                  "start_s": 0, "end_s": 1, "fps": 10}, "confirmed", cls="Fighting")
    assert not (folder / "_delta_log").exists()  # never turned into a Delta table behind the user's back
    assert len(list(folder.glob("*.parquet"))) == 3
    hist = read_labels(str(folder), current=False)
    assert hist.column("name").to_pylist() == ["a", "b", "a"]
    cur = rows_by_name(read_labels(str(folder)))
    assert cur["a"]["labels"] == ["Fire", "Fighting"] and cur["b"]["labels"] == ["Normal"]


def test_an_old_parquet_folder_on_s3_still_appends_as_files(s3_bucket, tmp_path):
    write_old_folder(tmp_path / "labels")
    uri = s3_bucket + "/labels"
    fs, path = storage.filesystem(uri)
    fs.put(str(tmp_path / "labels") + "/", path + "/", recursive=True)
    append_labels(uri, make_table([{"name": "b"}]), source="import:csv", added_at=at(3))
    assert not storage.exists(storage.join(uri, "_delta_log"))
    assert read_labels(uri, current=False).column("name").to_pylist() == ["a", "b"]


def test_a_folder_that_is_neither_is_refused_in_one_line(tmp_path):
    folder = tmp_path / "labels"
    folder.mkdir()
    (folder / "notes.txt").write_text("not labels")
    for call in (lambda: read_labels(str(folder)),
                 lambda: append_labels(str(folder), make_table([{"name": "a"}]), source="synth")):
        with pytest.raises(ExvadError, match="not a labels table .*notes.txt") as err:
            call()
        assert "\n" not in str(err.value)
    assert not (folder / "_delta_log").exists()
    with pytest.raises(ExvadError, match="no labels table"):
        read_labels(str(tmp_path / "absent"))
