"""The archive job end to end on a real local Ray and the local S3 server: synthetic videos, real
clips and bad files in; every good video once in videos/snippets/captions, every bad one once in
errors with its reason; Parquet readable by pyarrow and DuckDB with the declared schemas."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import duckdb
import pytest

from exvad_ray import storage
from exvad_ray import index as idx
from exvad_ray.pipeline.job import ProcessConfig, run_process
from exvad_ray.index.schemas import arrow_schema

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def processed(ray_local, tiny_dir, mixed_archive, s3_server):
    index = s3_server.create_bucket("mixed-index") + "/run1"
    cfg = ProcessConfig(archive=mixed_archive["uri"], index=index, label_set="synthetic", profile="tiny",
                        progress_interval_s=5)
    summary = run_process(cfg)
    return cfg, summary


def test_summary_counts(processed, mixed_archive):
    _, s = processed
    assert s["videos_processed"] == len(mixed_archive["good"])
    assert s["videos_failed"] == len(mixed_archive["bad"])
    assert s["snippets"] == sum(mixed_archive["good"].values())
    expected_reasons: dict[str, int] = {}
    for reason in mixed_archive["bad"].values():
        expected_reasons[reason] = expected_reasons.get(reason, 0) + 1
    assert s["errors_by_reason"] == expected_reasons
    assert s["hours"] > 0 and s["video_hours_per_hour"] > 0


def test_every_video_exactly_once(processed, mixed_archive):
    cfg, _ = processed
    videos = idx.read_table(cfg.index, "videos").to_pylist()
    assert sorted(v["uri"] for v in videos) == sorted(mixed_archive["good"])
    snippets = idx.read_table(cfg.index, "snippets", columns=["uri", "snippet_index", "window_index"]).to_pylist()
    per_video: dict[str, list[int]] = {}
    for r in snippets:
        per_video.setdefault(r["uri"], []).append(r["snippet_index"])
    for uri, n in mixed_archive["good"].items():
        assert sorted(per_video[uri]) == list(range(n)), uri
    errors = idx.read_table(cfg.index, "errors").to_pylist()
    assert {e["uri"]: e["reason"] for e in errors} == mixed_archive["bad"]
    assert len(errors) == len(mixed_archive["bad"]) and all(e["stage"] == "decode" for e in errors)
    for v in videos:
        assert v["status"] == "ok" and v["video_class"] in v["class_names"]
        assert v["visual_model"] and v["caption_model"] and v["explanation_model"]
        assert v["detector"] == "zero-shot:synthetic" and len(v["class_scores"]) == 5
    captions = idx.read_table(cfg.index, "captions").to_pylist()
    assert {c["video_id"] for c in captions} == {v["video_id"] for v in videos}
    assert all(c["caption"] is not None and c["clean_caption"] is not None for c in captions)


def test_partitions_and_schemas_pyarrow_and_duckdb(processed, tmp_path):
    cfg, _ = processed
    videos = idx.read_table(cfg.index, "videos")
    for field in arrow_schema("videos"):
        assert videos.schema.field(field.name).type == field.type
    parts = {(r["date"], r["camera"]) for r in videos.select(["date", "camera"]).to_pylist()}
    assert ("2026-11-05", "cam09") in parts  # real clips: date and camera from the path
    errors = idx.read_table(cfg.index, "errors")
    manifest = idx.read_manifest(cfg.index, cfg.run_id())  # a Delta index: a row of INDEX/run_log
    assert set(errors.column("date").to_pylist()) == {manifest["processing_date"]}
    # DuckDB reads the same files with hive partitioning (DuckDB's S3 support is an extension it would
    # download, so the files are copied out first, as a user without httpfs would)
    fs, path = storage.filesystem(cfg.index)
    local = tmp_path / "index"
    fs.get(path + "/", str(local) + "/", recursive=True)
    # The index is Delta tables: DuckDB reads the files of each table's snapshot (docs/INDEX.md "External readers")
    assert idx.is_delta_index(str(local))
    con = duckdb.connect()
    files = {t: idx.list_files(str(local), t) for t in ("videos", "snippets", "segments")}
    rows = con.execute(
        "select camera, date, count(*) from read_parquet(?, hive_partitioning=true) group by all order by all",
        [files["videos"]]).fetchall()
    assert sum(n for _, _, n in rows) == videos.num_rows
    assert ("cam09", "2026-11-05") in {(c, str(d)) for c, d, _ in rows}
    n_snip = con.execute("select count(*) from read_parquet(?, hive_partitioning=true)", [files["snippets"]]).fetchone()[0]
    assert n_snip == sum(v for v in idx.read_table(cfg.index, "videos", columns=["n_snippets"]).column("n_snippets").to_pylist())
    cols = {r[0]: r[1] for r in con.execute(
        "describe select * from read_parquet(?, hive_partitioning=true)", [files["segments"]]).fetchall()} \
        if files["segments"] else {}
    if cols:
        assert cols["thumbnail_jpeg"] == "BLOB" and cols["class"] == "VARCHAR"


def test_rerun_skips_everything(processed, mixed_archive):
    cfg, _ = processed
    before = {f: storage.filesystem(f)[0].info(storage.filesystem(f)[1])["ETag"] for f in idx.list_files(cfg.index, "videos")}
    s = run_process(cfg)
    assert s["videos_skipped"] == len(mixed_archive["good"]) + len(mixed_archive["bad"])
    assert s["videos_processed"] == 0 and s["videos_failed"] == 0
    after = {f: storage.filesystem(f)[0].info(storage.filesystem(f)[1])["ETag"] for f in idx.list_files(cfg.index, "videos")}
    assert before == after


def test_killed_run_resumes_exactly_once(tiny_dir, mixed_archive, s3_server, tmp_path):
    """Kill the job (SIGKILL to its process group) once some videos are written; rerun; exactly once."""
    index = s3_server.create_bucket("resume-index") + "/run"
    args = [sys.executable, "-m", "exvad_ray.cli", "process", "--archive", mixed_archive["uri"], "--index", index,
            "--label-set", "synthetic", "--profile", "tiny", "--explainer", "none", "--json"]
    env = dict(os.environ)
    log = open(tmp_path / "first.log", "wb")
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    total = len(mixed_archive["good"]) + len(mixed_archive["bad"])
    deadline = time.time() + 240
    done = 0
    while time.time() < deadline and proc.poll() is None:
        done = len(idx.done_video_ids(index, ("videos",)))
        if done >= 2:
            break
        time.sleep(0.5)
    assert proc.poll() is None, "the run finished before it could be killed: " + open(tmp_path / "first.log").read()[-2000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert 2 <= done < total
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = __import__("json").loads(out.stdout[out.stdout.index("{"):])
    assert summary["videos_skipped"] >= 2
    assert summary["videos_processed"] + summary["videos_failed"] + summary["videos_skipped"] == total
    videos = idx.read_table(index, "videos", columns=["uri"]).column("uri").to_pylist()
    assert sorted(videos) == sorted(mixed_archive["good"])  # each exactly once
    snippets = idx.read_table(index, "snippets", columns=["uri", "snippet_index"]).to_pylist()
    assert len(snippets) == len({(r["uri"], r["snippet_index"]) for r in snippets}) == sum(mixed_archive["good"].values())
    errors = idx.read_table(index, "errors", columns=["uri"]).column("uri").to_pylist()
    assert sorted(errors) == sorted(mixed_archive["bad"])
