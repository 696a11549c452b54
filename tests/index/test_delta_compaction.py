"""`exvad compact` on Delta tables (issue 23): optimize merges small files without changing a row,
vacuum keeps what a reader of an older snapshot needs until the retention passes, removes the
files of batches a killed job never committed, and deleted videos stay deleted; on local disk and
on the local S3 server (SeaweedFS)."""

from __future__ import annotations

import json
import os
import time

import duckdb
import pyarrow as pa
import pytest
from test_delta import current_ids, error_rows, ids, segment_rows

from exvad_ray import storage
from exvad_ray.cli import main
from exvad_ray.index import compact, deletes, delta, write_manifest, write_video_tables
from exvad_ray.index.compaction import DEFAULT_RETENTION_HOURS, DeltaCompaction

pytest.importorskip("deltalake")


@pytest.fixture(params=["local", "s3"])
def index_uri(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "idx")
    return f"{request.getfixturevalue('s3_bucket')}/idx"


def commit_small_batches(index: str, batches: int = 6, per_batch: int = 2, run: str = "run-a") -> list[str]:
    """`batches` commits of `segments` by `run`, each a file in each of two partitions (cam-1, cam-2)."""
    out: list[str] = []
    for b in range(batches):
        vids = ids(per_batch)
        rows, parts = segment_rows(vids, camera="cam-1")
        rows2, parts2 = segment_rows(ids(per_batch), camera="cam-2")
        files = delta.write_files(index, "segments", pa.concat_tables([rows, rows2]), parts + parts2)
        assert delta.commit(index, "segments", run, b, files)
        out += vids + rows2.column("video_id").to_pylist()
    return sorted(out)


def rows(index: str, version: int | None = None) -> pa.Table:
    """Every row of the snapshot (or of `version`), sorted: compared whole, bytes and all."""
    t = delta.open_table(index, "segments", create=False)
    if version is not None:
        t.load_as_version(version)
    return t.to_pyarrow_table().sort_by("segment_id")


def exists(uri: str) -> bool:
    if storage.is_remote(uri):
        fs, path = storage.filesystem(uri)
        fs.invalidate_cache()
        return fs.exists(path)
    return os.path.exists(uri)


def read_files(index: str, files: list[str]) -> list[str]:
    """The video ids a reader holding this file list reads (DuckDB, as the search engine does)."""
    con = duckdb.connect()
    if storage.is_remote(index):
        con.register_filesystem(storage.filesystem(index)[0])
    return sorted(r[0] for r in con.execute("SELECT video_id FROM read_parquet(?)", [files]).fetchall())


@pytest.mark.parametrize("z_order", [False, True])
def test_small_files_merge_to_one_per_partition_same_rows(index_uri, z_order):
    vids = commit_small_batches(index_uri)
    before = rows(index_uri)
    assert len(delta.snapshot_files(index_uri, "segments")) == 12

    done = compact(index_uri, tables=["segments"], retention_hours=0, z_order=z_order)["segments"]

    assert isinstance(done, DeltaCompaction)
    assert (done.files_before, done.files_after, done.removed, done.added) == (12, 2, 12, 2)
    assert done.vacuumed == 12  # retention 0: the merged files are deleted at once
    assert done.z_order == (("start_at", "video_id") if z_order else ())
    files = delta.snapshot_files(index_uri, "segments")
    assert sorted(f.split("/camera=")[1].split("/")[0] for f in files) == ["cam-1", "cam-2"]
    assert rows(index_uri).equals(before)
    assert current_ids(index_uri, "segments") == vids
    meta = delta.open_table(index_uri, "segments").history()
    assert len(meta) == 1  # retention 0: the log keeps the checkpoint's commit alone
    assert meta[0][delta.SCHEMA_VERSION_KEY] and meta[0]["exvad.operation"] == "set_retention"
    # nothing left to merge: a second compaction changes nothing
    again = compact(index_uri, tables=["segments"], retention_hours=0)["segments"]
    assert (again.files_before, again.files_after, again.vacuumed) == (2, 2, 0)


def test_old_snapshot_readable_until_the_retention_passes(index_uri):
    vids = commit_small_batches(index_uri, batches=3)
    version = delta.open_table(index_uri, "segments").version()
    held = delta.snapshot_files(index_uri, "segments", version=version)  # a reader's file list
    old_rows = rows(index_uri)

    done = compact(index_uri, tables=["segments"], retention_hours=1)["segments"]
    assert (done.files_after, done.vacuumed) == (2, 0)
    meta = delta.open_table(index_uri, "segments").history()  # every commit younger than the retention
    # the merge is a write transaction marked as an optimize (merges.py); vacuum: nothing to delete, no commit
    assert {m["operation"] for m in meta} >= {"SET TBLPROPERTIES", "WRITE"}
    assert all(m[delta.SCHEMA_VERSION_KEY] for m in meta)
    assert {m.get("exvad.operation") for m in meta} >= {"optimize", "set_retention"}
    assert not set(held) & set(delta.snapshot_files(index_uri, "segments"))
    assert read_files(index_uri, held) == vids  # the old list still reads, every row
    assert rows(index_uri, version=version).equals(old_rows)  # time travel too

    done = compact(index_uri, tables=["segments"], retention_hours=0)["segments"]
    assert done.vacuumed == len(held)
    assert not any(exists(f) for f in held)  # what retention is for: past it, the old files are gone
    with pytest.raises(Exception):
        read_files(index_uri, held)
    assert current_ids(index_uri, "segments") == vids


def test_files_of_a_never_committed_batch_are_vacuumed(index_uri):
    """delta-rs's default (lite) vacuum never deletes files the log never knew; compaction runs
    its full mode, which deletes them once older than the retention and keeps younger ones (a
    running job's batch)."""
    vids = commit_small_batches(index_uri, batches=2)
    rows_, parts = segment_rows(ids(3))
    killed = [storage.join(delta.table_uri(index_uri, "segments"), f["path"])
              for f in delta.write_files(index_uri, "segments", rows_, parts)]
    assert all(exists(f) for f in killed)

    compact(index_uri, tables=["segments"], retention_hours=1)
    assert all(exists(f) for f in killed)  # younger than the retention: maybe a batch still being written

    done = compact(index_uri, tables=["segments"], retention_hours=0)["segments"]
    assert not any(exists(f) for f in killed)
    assert done.vacuumed == 4 + len(killed)  # the 4 merged files and the killed batch's
    assert current_ids(index_uri, "segments") == vids


def test_uncommitted_files_older_than_the_retention_go_younger_stay(tmp_path):
    index = str(tmp_path / "idx")
    commit_small_batches(index, batches=1)
    old, young = (delta.write_files(index, "errors", *error_rows(ids(1), date=d)) for d in ("2026-11-24", "2026-11-25"))
    old_path, young_path = (os.path.join(index, "errors", f[0]["path"]) for f in (old, young))
    t = time.time() - 3 * 3600
    os.utime(old_path, (t, t))  # written three hours ago by a job that was killed

    done = compact(index, tables=["errors"], retention_hours=2)["errors"]
    assert done.vacuumed == 1
    assert not os.path.exists(old_path) and os.path.exists(young_path)


def test_deleted_videos_stay_deleted(index_uri):
    vids = commit_small_batches(index_uri, batches=3)
    gone = vids[::3]
    assert deletes.delete_videos(index_uri, "segments", gone) == len(gone)
    kept = [v for v in vids if v not in gone]
    assert current_ids(index_uri, "segments") == kept

    compact(index_uri, tables=["segments"], retention_hours=0)
    assert current_ids(index_uri, "segments") == kept
    compact(index_uri, tables=["segments"], retention_hours=0, z_order=True)
    assert current_ids(index_uri, "segments") == kept
    assert sorted(rows(index_uri).column("video_id").to_pylist()) == kept


def test_an_index_with_both_layouts(tmp_path):
    """During the transition: a Delta table is optimized, a table of today's layout merged as today."""
    index = str(tmp_path / "idx")
    write_manifest(index, {"run_id": "run-a"})  # as every job does: the schema version of the index
    commit_small_batches(index, batches=2)
    old = ids(3)
    for v in old:
        r, _ = error_rows([v])
        write_video_tables(index, v, {"errors": ({"date": "2026-11-24"}, r.to_pydict())})

    done = compact(index, tables=["segments", "errors"], retention_hours=0)

    assert done["errors"] == 3 and isinstance(done["segments"], DeltaCompaction)
    assert not delta.is_delta(index, "errors")
    from exvad_ray.index import read_table

    assert sorted(read_table(index, "errors").column("video_id").to_pylist()) == sorted(old)


def test_cli(tmp_path, capsys):
    index = str(tmp_path / "idx")
    commit_small_batches(index, batches=2)

    assert main(["compact", index, "--retention-hours", "-1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--retention-hours must be >= 0" in err

    nothing = tmp_path / "nothing"
    assert main(["compact", str(nothing)]) == 2  # a mistyped index: one line, and no folder made for it
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no index at" in err and not nothing.exists()

    assert main(["compact", index, "--retention-hours", "0"]) == 0
    out = capsys.readouterr().out
    assert "segments: optimized: 4 -> 2 files in the snapshot, 4 files vacuumed" in out
    assert "videos: merged 0 files" in out  # absent tables: today's layout, nothing to merge

    assert main(["compact", index, "--z-order", "--json"]) == 0
    import json

    got = json.loads(capsys.readouterr().out)["segments"]
    assert got["files_after"] == 2 and got["z_order"] == ["start_at", "video_id"] and got["vacuumed"] == 0

    from exvad_ray.cli import process

    assert process.RETENTION_HOURS == DEFAULT_RETENTION_HOURS
    with pytest.raises(SystemExit):
        main(["compact", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "younger than the retention" in help_text and "never committed" in help_text


def log_entries(index: str, table: str = "segments") -> list[str]:
    """Names of the objects under the table's `_delta_log` (listed, not read through the log)."""
    fs, path = storage.filesystem(storage.join(delta.table_uri(index, table), "_delta_log"))
    if storage.is_remote(index):
        fs.invalidate_cache()
    return sorted(f.rsplit("/", 1)[-1] for f in fs.find(path))


def test_the_log_is_trimmed_to_the_retention_and_the_table_reads_at_its_version(index_uri):
    vids = commit_small_batches(index_uri, batches=6)
    before = rows(index_uri)
    assert len(log_entries(index_uri)) == 7  # the create and one commit per batch

    compact(index_uri, tables=["segments"], retention_hours=0)

    t = delta.open_table(index_uri, "segments", create=False)
    v = t.version()
    # what is left of the log: the checkpoint of the current version, its commit, the pointer to it
    assert log_entries(index_uri) == [f"{v:020d}.checkpoint.parquet", f"{v:020d}.json", "_last_checkpoint"]
    last = json.loads(storage.read_bytes(storage.join(delta.table_uri(index_uri, "segments"),
                                                      "_delta_log", "_last_checkpoint")))
    assert last["version"] == v
    assert t.metadata().configuration == {"delta.logRetentionDuration": "interval 0 hours",
                                          "delta.deletedFileRetentionDuration": "interval 0 hours",
                                          "delta.dataSkippingStatsColumns": "video_id,class,label,score,start_at,end_at"}
    # a fresh reader opens it at its current version, same rows, every engine
    assert rows(index_uri).equals(before)
    assert current_ids(index_uri, "segments") == vids
    with pytest.raises(Exception):
        rows(index_uri, version=2)  # versions past the retention are gone, log and files
    # the job's exactly-once commits still work: the run's batches live in the checkpoint
    assert delta.committed_batch(index_uri, "segments", "run-a") == 5
    r, p = segment_rows(ids(2))
    files = delta.write_files(index_uri, "segments", r, p)
    assert not delta.commit(index_uri, "segments", "run-a", 5, files)  # a retried batch adds nothing
    assert delta.commit(index_uri, "segments", "run-a", 6, files)
    assert current_ids(index_uri, "segments") == sorted(vids + r.column("video_id").to_pylist())

    # the retention is set once: set again to the same value, nothing is committed
    assert not delta.set_retention(index_uri, "segments", 0)
    again = compact(index_uri, tables=["segments"], retention_hours=0)["segments"]
    assert (again.files_before, again.files_after) == (3, 2) and len(log_entries(index_uri)) == 3


def test_log_entries_younger_than_the_retention_stay(tmp_path):
    """Entries older than the retention go, down to the newest checkpoint older than it: a version
    younger than the retention is rebuilt from that checkpoint and the commits after it."""
    index = str(tmp_path / "idx")
    commit_small_batches(index, batches=3)
    compact(index, tables=["segments"], retention_hours=2)  # checkpoint at `base`
    base = delta.open_table(index, "segments").version()
    assert len([n for n in log_entries(index) if n.endswith(".json")]) == base + 1  # all young: all kept
    log = os.path.join(index, "segments", "_delta_log")
    old = time.time() - 3 * 3600
    for name in os.listdir(log):  # all that, three hours ago
        os.utime(os.path.join(log, name), (old, old))
    commit_small_batches(index, batches=2, run="run-b")
    young = {v: rows(index, version=v) for v in (base, base + 1, base + 2)}

    compact(index, tables=["segments"], retention_hours=2)

    v = delta.open_table(index, "segments").version()
    assert log_entries(index) == sorted([f"{base:020d}.checkpoint.parquet", f"{v:020d}.checkpoint.parquet",
                                         *(f"{i:020d}.json" for i in range(base, v + 1)), "_last_checkpoint"])
    for version, expected in young.items():  # time travel within the retention
        assert rows(index, version=version).equals(expected)
    with pytest.raises(Exception):
        rows(index, version=base - 1)
    cfg = delta.open_table(index, "segments").metadata().configuration
    assert cfg["delta.logRetentionDuration"] == "interval 2 hours"


def test_a_killed_batch_is_repaired_before_the_log_that_records_it_is_trimmed(tmp_path):
    from test_batches import video

    from exvad_ray.index import batches

    index = str(tmp_path / "idx")
    write_manifest(index, {"run_id": "run1"})  # a run writes its manifest before its first batch
    batches.create_tables(index)
    first, second = ids(2), ids(2)
    batches.commit_batch(index, "run1", 0, batches.write_batch(index, [video(v) for v in first]), first)
    adds = batches.write_batch(index, [video(v) for v in second])
    for table in ("snippets", "segments"):  # killed before captions and videos
        delta.commit(index, table, "run1", 1, adds[table],
                     metadata={batches.IDS_KEY: json.dumps(sorted(second))})

    compact(index, retention_hours=0)

    assert current_ids(index, "segments") == sorted(first)
    assert sorted(set(current_ids(index, "snippets"))) == sorted(first)
    assert len(log_entries(index, "snippets")) == 3  # the log that named the batch's videos is gone
    assert batches.repair(index, ["run1"]) == {}  # and the rerun finds nothing left to repair
    assert batches.next_batch(index, "run1") == 2
