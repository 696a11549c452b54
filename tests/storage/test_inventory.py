"""Planning from an S3 Inventory report (issue 23): the report's objects give the same pages as
listing the archive (URIs, sizes, ETags, ids, ignored counts, URI order) in CSV.gz and Parquet,
whether its data files' key ranges overlap or not; plan_work from it equals plan_work from the
listing; a bad manifest is one line."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import gzip
import hashlib
import io
import json
from urllib.parse import quote_plus

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from exvad_ray import index as idx
from exvad_ray import storage
from exvad_ray.errors import ExvadError, StorageError
from exvad_ray.pipeline.job import ProcessConfig
from exvad_ray.pipeline.worklist import plan_work

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.timezone.utc)
CSV_SCHEMA = "Bucket, Key, Size, LastModifiedDate, ETag, StorageClass"
PARQUET_SCHEMA = ("message s3.inventory { required binary bucket (UTF8); required binary key (UTF8); "
                  "optional int64 size; optional int64 last_modified_date (TIMESTAMP_MILLIS); "
                  "optional binary e_tag (UTF8); optional binary storage_class (UTF8);}")
KEYS = [f"arch/cam-{k % 2}/2026-01-01/v{k:02d}.mp4" for k in range(8)] + [
    "arch/cam 1/2026-01-02/clip a.mp4",  # a space: '+' in the CSV
    "arch/cam-0/2026-01-01/a+b.mp4",  # a plus: %2B in the CSV
    "arch/cam-0/2026-01-01/été.mkv",
    "arch/top.mp4",
    "arch/cam-0/notes.txt",  # not a video extension
    "arch/cam-1/.thumbs.mp4",  # hidden
    "arch2/y.mp4", "other/x.mp4",  # outside the archive
]


@pytest.fixture()
def buckets(s3_server):
    """A source bucket holding KEYS (distinct bytes each) and an empty inventory destination."""
    src, dest = s3_bucket_pair(s3_server)
    for n, key in enumerate(KEYS):
        storage.write_bytes(f"{src}/{key}", b"x" * (n + 1))
    return src, dest


def s3_bucket_pair(server) -> tuple[str, str]:
    import uuid

    tag = uuid.uuid4().hex[:10]
    return server.create_bucket(f"src-{tag}"), server.create_bucket(f"inv-{tag}")


def listing(src: str) -> list[dict]:
    """The bucket's objects as the server lists them: what an inventory report holds."""
    rows = []
    for chunk in storage.iter_objects(src):
        for uri, info in chunk:
            rows.append({"key": uri[len(src) + 1:], "size": int(info["size"]),
                         "etag": info["ETag"].strip('"'), "mtime": info["LastModified"]})
    return rows


def write_inventory(src: str, dest: str, rows: list[dict], fmt: str, split: str = "overlap",
                    schema: str | None = None, name: str = "report") -> str:
    """An S3 Inventory report of `rows` in dest (two data files: keys interleaved and unsorted, or
    two disjoint halves in reverse order); returns the manifest's URI."""
    if split == "overlap":
        parts = [rows[::2][::-1], rows[1::2]]
    else:
        half = len(rows) // 2
        parts = [rows[half:], rows[:half]]
    bucket = src[len("s3://"):]
    files = []
    for n, part in enumerate(parts):
        if fmt == "CSV":
            buf = io.StringIO()
            w = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\n")
            for r in part:
                stamp = r["mtime"].astimezone(dt.timezone.utc)
                w.writerow([bucket, quote_plus(r["key"], safe="/"), r["size"],
                            stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z",
                            r["etag"], "STANDARD"])
            data = gzip.compress(buf.getvalue().encode())
            key = f"{bucket}/cfg/data/{name}-{n}.csv.gz"
        else:
            table = pa.table({"bucket": [bucket] * len(part), "key": [r["key"] for r in part],
                              "size": pa.array([r["size"] for r in part], pa.int64()),
                              "last_modified_date": pa.array([r["mtime"] for r in part], pa.timestamp("ms", tz="UTC")),
                              "e_tag": [r["etag"] for r in part], "storage_class": ["STANDARD"] * len(part)})
            sink = io.BytesIO()
            pq.write_table(table, sink)
            data = sink.getvalue()
            key = f"{bucket}/cfg/data/{name}-{n}.parquet"
        storage.write_bytes(f"{dest}/{key}", data)
        files.append({"key": key, "size": len(data), "MD5checksum": hashlib.md5(data).hexdigest()})
    manifest = {"sourceBucket": bucket, "destinationBucket": f"arn:aws:s3:::{dest[len('s3://'):]}",
                "version": "2016-11-30", "creationTimestamp": "1514944800000", "fileFormat": fmt,
                "fileSchema": schema or (CSV_SCHEMA if fmt == "CSV" else PARQUET_SCHEMA), "files": files}
    uri = f"{dest}/{bucket}/cfg/{name}/manifest.json"
    storage.write_bytes(uri, json.dumps(manifest).encode())
    return uri


def pages(it) -> list[tuple[list, dict]]:
    return [([(e.uri, e.size, e.etag, e.mtime, e.video_id) for e in p.entries], p.ignored) for p in it]


@pytest.mark.parametrize("fmt,split", [("CSV", "overlap"), ("Parquet", "disjoint"), ("Parquet", "overlap")])
def test_inventory_pages_are_the_listings(buckets, fmt, split):
    src, dest = buckets
    manifest = write_inventory(src, dest, listing(src), fmt, split)
    archive = f"{src}/arch"
    for page in (3, 10_000):
        want = pages(storage.iter_archive(archive, page=page))
        got = pages(storage.iter_inventory(manifest, archive, page=page))
        assert got == want
    whole = [e for p in storage.iter_inventory(manifest, archive) for e in p.entries]
    assert [e.uri for e in whole] == sorted(f"{src}/{k}" for k in KEYS[:12])  # URI order, decoded keys
    assert f"{src}/arch/cam 1/2026-01-02/clip a.mp4" in [e.uri for e in whole]
    ignored: dict[str, int] = {}
    for p in storage.iter_inventory(manifest, archive, page=3):
        for k, v in p.ignored.items():
            ignored[k] = ignored.get(k, 0) + v
    assert ignored == {"hidden": 1, "not a video extension": 1}
    # the whole bucket, a sub-prefix without recursion, a single object: as listed
    for uri, recursive in ((src, True), (f"{src}/arch", False), (f"{src}/arch/top.mp4", True)):
        assert (pages(storage.iter_inventory(manifest, uri, recursive=recursive, page=4))
                == pages(storage.iter_archive(uri, recursive=recursive, page=4))), uri


def test_plan_from_inventory_is_the_listings_plan(buckets, tmp_path):
    src, dest = buckets
    rows = listing(src)
    manifests = {fmt: write_inventory(src, dest, rows, fmt, name=fmt) for fmt in ("CSV", "Parquet")}
    cfg = ProcessConfig(archive=f"{src}/arch", index=str(tmp_path / "index"), profile="tiny")
    entries = {e.uri.rpartition("/")[2]: e for e in storage.list_videos(cfg.archive)}
    part = {"date": "2026-01-01", "camera": "c"}
    for name in ("v00.mp4", "clip a.mp4"):
        e = entries[name]
        cols = {f.name: [None] for f in idx.arrow_schema("videos")}
        cols.update(video_id=[e.video_id], uri=[e.uri], name=["a"], status=["ok"])
        idx.write_video_tables(cfg.index, e.video_id, {"videos": (part, cols)})
    e = entries["v03.mp4"]
    idx.write_video_tables(cfg.index, e.video_id, {"errors": ({"date": "2026-01-01"}, {
        "video_id": [e.video_id], "uri": [e.uri], "size_bytes": [1], "stage": ["decode"], "error_type": ["E"],
        "reason": ["truncated"], "message": ["m"], "detail": [None], "run_id": ["r"], "processed_at": [NOW]})})
    for retry in (False, True):
        base = dataclasses.replace(cfg, retry_errors=retry)
        want = plan_work(base, "2026-01-02", page=3)
        assert (want[1].done_before, want[1].new + want[1].retried) == (2, 10 if retry else 9)
        for fmt, manifest in manifests.items():
            with_inventory = dataclasses.replace(base, inventory=manifest)
            assert with_inventory.run_id() == base.run_id()  # how the archive is read is not the run's identity
            assert plan_work(with_inventory, "2026-01-02", page=3) == want, fmt
    # an object newer than the report is not planned from it (a later report or a listing finds it)
    storage.write_bytes(f"{src}/arch/cam-0/2026-01-03/late.mp4", b"late")
    items, _ = plan_work(dataclasses.replace(cfg, inventory=manifests["CSV"]), "2026-01-02", page=3)
    assert not any(i["uri"].endswith("late.mp4") for i in items)
    assert any(i["uri"].endswith("late.mp4") for i in plan_work(cfg, "2026-01-02", page=3)[0])


def test_bad_manifests_are_one_line(buckets):
    src, dest = buckets
    rows = listing(src)
    archive = f"{src}/arch"
    good = write_inventory(src, dest, rows, "CSV", name="good")
    no_etag = write_inventory(src, dest, rows, "CSV", schema="Bucket, Key, Size, LastModifiedDate", name="noetag")
    doc = json.loads(storage.read_bytes(good))
    storage.write_bytes(f"{dest}/orc.json", json.dumps(dict(doc, fileFormat="ORC")).encode())
    storage.write_bytes(f"{dest}/other.json", json.dumps(dict(doc, sourceBucket="someone-else")).encode())
    storage.write_bytes(f"{dest}/garbage.json", b"<html>not json</html>")
    storage.write_bytes(f"{dest}/partial.json", json.dumps({"sourceBucket": "x"}).encode())
    cases = {
        f"{dest}/missing/manifest.json": "not found",
        f"{dest}/garbage.json": "is not JSON",
        f"{dest}/partial.json": "lacks destinationBucket, fileFormat, fileSchema, files",
        f"{dest}/orc.json": "ORC inventories are not supported",
        no_etag: "fileSchema lacks ETag",
        f"{dest}/other.json": "lists bucket 'someone-else', not the archive's bucket",
    }
    for uri, message in cases.items():
        for call in (lambda: storage.read_inventory_manifest(uri, archive),
                     lambda: list(storage.iter_inventory(uri, archive))):
            with pytest.raises(ExvadError) as err:
                call()
            assert message in str(err.value) and "\n" not in str(err.value), str(err.value)
    with pytest.raises(StorageError, match="archive must be s3://"):
        storage.read_inventory_manifest(good, "/local/archive")
    with pytest.raises(StorageError, match="archive not found"):
        list(storage.iter_inventory(good, f"{src}/nothing-here"))
    storage.write_bytes(f"{dest}/{doc['files'][0]['key']}", b"\x1f\x8b not gzip")  # a corrupt data file
    with pytest.raises(StorageError, match="cannot be read as CSV") as err:
        list(storage.iter_inventory(good, archive))
    assert "\n" not in str(err.value)


def test_process_flag(buckets, tmp_path, capsys):
    from exvad_ray.cli import main

    src, dest = buckets
    doc = json.loads(storage.read_bytes(write_inventory(src, dest, listing(src), "CSV")))
    storage.write_bytes(f"{dest}/orc.json", json.dumps(dict(doc, fileFormat="ORC")).encode())
    rc = main(["process", "--archive", f"{src}/arch", "--index", str(tmp_path / "index"),
               "--inventory", f"{dest}/orc.json"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "--inventory: " in err and "ORC" in err, err
    with pytest.raises(SystemExit):
        main(["process", "--help"])
    assert "--inventory URI" in capsys.readouterr().out
