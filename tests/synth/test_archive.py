"""A generated archive on local disk (and S3): files, annotations, labels table, splits, frame
counts of the decoded videos, byte-identical reruns, clear errors from the CLI."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import av
import pyarrow as pa
import pytest

from exvad_ray import storage
from exvad_ray.cli import main as cli_main
from exvad_ray.index.labels import SCHEMA
from exvad_ray.synth import (
    ANNOTATION_FILE,
    LABELS_FILE,
    NORMAL,
    SPLITS,
    SynthConfig,
    generate_archive,
    parse_temporal_annotations,
    read_labels,
)

# Tiny but complete: every class, every split; small frames so that the module runs in seconds.
TINY = SynthConfig.small(width=128, height=96, fps=10.0, duration=(3.0, 4.0), seed=11)
MICRO = SynthConfig(videos_per_class=1, normal_videos=1, width=96, height=64, fps=8.0, duration=(2.0, 2.5), seed=5)


def decoded_frame_count(path: str) -> int:
    with av.open(path) as c:
        return sum(1 for _ in c.decode(video=0))


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("synth") / "archive"
    summary = generate_archive(str(root), TINY)
    return root, summary


def test_layout_and_listing(archive) -> None:
    root, summary = archive
    entries = storage.list_videos(str(root))
    assert len(entries) == summary.n_videos == 12
    for e in entries:
        rel = os.path.relpath(e.uri, root)
        assert re.fullmatch(r"cam\d{2}/\d{4}-\d{2}-\d{2}/(Normal_Videos|Fire|Fighting|FallingObject|CrowdRush)_\d{3}\.mp4", rel)
    assert (root / ANNOTATION_FILE).is_file() and (root / LABELS_FILE).is_dir()
    for s in SPLITS:
        assert (root / "annotations" / "splits" / f"{s}.txt").is_file()


def test_labels_table_schema_and_decoded_frame_counts(archive) -> None:
    root, summary = archive
    table = read_labels(str(root))
    assert table.schema.equals(SCHEMA) and set(table.column("source").to_pylist()) == {"synth"}
    assert table.num_rows == 12
    rows = table.to_pylist()
    listed = {e.name: e.uri for e in storage.list_videos(str(root))}
    for r in rows:
        assert r["video_uri"] == listed[r["name"]]
        assert r["fps"] == 10.0
        assert decoded_frame_count(r["video_uri"]) == r["n_frames"]
        label = r["name"].rsplit("_", 1)[0].replace("Normal_Videos", NORMAL)
        assert r["labels"] == [label]
        if label == NORMAL:
            assert r["segments"] == []
        else:
            assert 1 <= len(r["segments"]) <= 2
            for g in r["segments"]:
                assert g["label"] == label
                assert 0 <= g["start_frame"] < g["end_frame"] <= r["n_frames"]


def test_decord_agrees_on_frame_count(archive) -> None:
    decord = pytest.importorskip("decord")
    root, _ = archive
    for r in read_labels(str(root)).to_pylist()[:4]:
        vr = decord.VideoReader(r["video_uri"])
        assert len(vr) == r["n_frames"]
        assert vr[len(vr) - 1].shape == (96, 128, 3)


def test_annotation_file_is_ucf_format_and_matches_table(archive) -> None:
    root, _ = archive
    text = (root / ANNOTATION_FILE).read_text()
    lines = text.splitlines()
    assert text.endswith("\n") and lines == sorted(lines)
    for line in lines:  # exactly as the public file: two spaces between fields and after the last
        assert re.fullmatch(r"\S+\.mp4  [A-Za-z]+  -?\d+  -?\d+  -?\d+  -?\d+  ", line), repr(line)
    records = {r.name: r for r in parse_temporal_annotations(text)}
    for row in read_labels(str(root)).to_pylist():
        rec = records[row["name"]]
        assert rec.label == row["labels"][0]
        assert rec.segments == tuple((g["start_frame"], g["end_frame"]) for g in row["segments"])


def test_public_ucf_annotation_file_parses_with_same_reader(public_lists_dir: Path) -> None:
    records = parse_temporal_annotations((public_lists_dir / "Temporal_Anomaly_Annotation.txt").read_text())
    assert len(records) == 290
    arson = next(r for r in records if r.name == "Arson011_x264")
    assert arson.label == "Arson" and arson.segments == ((150, 420), (680, 1267))


def test_split_files_disjoint_complete_and_consistent(archive) -> None:
    root, summary = archive
    table = {r["name"]: r["split"] for r in read_labels(str(root)).to_pylist()}
    seen: dict[str, str] = {}
    for s in SPLITS:
        for rel in (root / "annotations" / "splits" / f"{s}.txt").read_text().split():
            assert (root / rel).is_file()
            name = Path(rel).stem
            assert name not in seen
            seen[name] = s
    assert seen == table
    assert {s: sum(v.values()) for s, v in summary.per_split.items()} == {"train": 6, "val": 3, "test": 3}


def test_rerun_is_byte_identical_and_seed_matters(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate_archive(str(a), MICRO)
    first = {p.relative_to(a): p.read_bytes() for p in a.rglob("*") if p.is_file()}
    # 5 videos + annotations, the labels' one data file, 3 split lists (and the labels' Delta log)
    assert len([p for p in first if "_delta_log" not in p.parts]) == 5 + 5
    generate_archive(str(a), MICRO)  # rerun into the same location: same bytes everywhere
    assert {p.relative_to(a): p.read_bytes() for p in a.rglob("*") if p.is_file()} == first
    generate_archive(str(b), MICRO)  # another location: only the labels' video_uri and added_at differ
    for rel, data in first.items():
        if "labels" not in rel.parts:
            assert (b / rel).read_bytes() == data, rel
    ta, tb = read_labels(str(a)), read_labels(str(b))
    assert ta.drop_columns(["video_uri", "added_at"]).equals(tb.drop_columns(["video_uri", "added_at"]))
    generate_archive(str(c), dataclasses.replace(MICRO, seed=6))
    assert (a / ANNOTATION_FILE).read_bytes() != (c / ANNOTATION_FILE).read_bytes()


def test_cli_writes_archive_and_reports_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    dest = tmp_path / "cli"
    argv = ["synth", str(dest), "--videos-per-class", "1", "--normal-videos", "1", "--duration", "2",
            "--size", "96x64", "--fps", "8", "--seed", "5", "-q"]
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert "5 videos" in out and "labels:" in out
    assert read_labels(str(dest)).num_rows == 5
    assert cli_main(argv) == 2  # not empty any more
    assert "not empty" in capsys.readouterr().err
    assert cli_main([*argv, "--overwrite"]) == 0
    assert cli_main(["synth", str(tmp_path / "x"), "--size", "big"]) == 2
    assert "320x240" in capsys.readouterr().err
    assert cli_main(["synth", "ftp://host/x", "--small"]) == 2


def test_archive_on_s3(s3_bucket: str) -> None:
    uri = s3_bucket + "/cams"
    summary = generate_archive(uri, MICRO)
    entries = storage.list_videos(uri)
    assert sorted(e.uri for e in entries) == sorted(summary.video_uris.values())
    assert all(e.uri.startswith("s3://") and e.size > 0 for e in entries)
    table = read_labels(uri)
    assert table.num_rows == 5 and isinstance(table, pa.Table)
    assert parse_temporal_annotations(storage.read_bytes(storage.join(uri, ANNOTATION_FILE)).decode())
    row = table.to_pylist()[0]
    with storage.local_copy(row["video_uri"]) as path:
        assert decoded_frame_count(path) == row["n_frames"]


def test_parallel_workers_write_the_same_bytes(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    generate_archive(str(one), MICRO)
    generate_archive(str(two), dataclasses.replace(MICRO, workers=2))
    for p in one.rglob("*.mp4"):
        assert (two / p.relative_to(one)).read_bytes() == p.read_bytes()
    assert (one / ANNOTATION_FILE).read_bytes() == (two / ANNOTATION_FILE).read_bytes()
