"""The vector sidecar's upkeep: incremental (only new segment files are read), refreshed by the
archive job itself once its data is committed, and a failure there never fails the run."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from exvad_ray.search import refresh, vectors
from exvad_ray.search.engine import SegmentIndex

pytestmark = pytest.mark.slow


def _same(a: SegmentIndex, b: SegmentIndex, like: str) -> None:
    x, y = a.search(like=like, limit=10), b.search(like=like, limit=10)
    assert x.column("segment_id").to_pylist() == y.column("segment_id").to_pylist()
    assert np.allclose(x.column("similarity").to_numpy(), y.column("similarity").to_numpy(), atol=1e-5)


def test_update_reads_only_new_files_and_refits_when_doubled(files_index_copy, tmp_path, monkeypatch):
    """Per-video layout: files held back and put back stand for a later run's files."""
    index_copy = files_index_copy
    monkeypatch.setattr(vectors, "REDUCE_ABOVE", 4)  # exercise the PCA copies on the tiny profile's vectors
    monkeypatch.setattr(vectors, "REDUCED_DIM", 3)
    monkeypatch.setattr(vectors, "GATHER_MAX", 0)
    ix = SegmentIndex(index_copy)
    files = [f for f, _ in ix.files]
    held = files[len(files) // 3:]
    aside = tmp_path / "aside"
    for i, f in enumerate(held):  # hold back two thirds of the segment files: "a later run writes them"
        os.makedirs(aside / str(i))
        shutil.move(f, aside / str(i) / os.path.basename(f))
    first = SegmentIndex(index_copy).update_vectors()
    assert first["rows"] > 0 and first["chunks"] == 1
    fit = first["pca_fit_rows"]["visual"]
    for i, f in enumerate(held):
        shutil.move(aside / str(i) / os.path.basename(f), f)
    fresh = SegmentIndex(index_copy)
    assert vectors.load_sidecar(fresh) is None  # stale (new files): not used, the exact SQL path answers
    second = fresh.update_vectors()
    assert second["chunks"] == 2 and set(second["files"]) == set(files)
    assert {second["files"][f] for f in held} == {1} and {second["files"][f] for f in files if f not in held} == {0}
    if second["rows"] > 2 * fit:  # more than doubled: basis refitted on everything
        assert second["pca_fit_rows"]["visual"] == second["rows"]
    exact = SegmentIndex(index_copy, use_sidecar=False)
    assert vectors.load_sidecar(fresh) is not None
    for sid in exact.search(limit=1000).column("segment_id").to_pylist():
        _same(exact, fresh, sid)


def test_refresh_after_run_thresholds_and_failures(index_copy, monkeypatch):
    root = os.path.join(index_copy, "search")
    out = []
    assert refresh.refresh_after_run(index_copy, out.append) is None  # a small index: no sidecar made
    assert not os.path.exists(os.path.join(root, "state.json")) and out == []
    monkeypatch.setattr(vectors, "AUTO_BUILD_MIN", 1)
    made = refresh.refresh_after_run(index_copy, out.append)
    assert made and made["rows"] > 0 and "search sidecar" in out[-1]
    with open(os.path.join(root, "state.json"), "w") as f:
        f.write("{not json")  # a damaged sidecar: the refresh warns, never raises
    assert refresh.refresh_after_run(index_copy, out.append) is None
    assert out[-1].startswith("[exvad] warning: the search sidecar") and "--update-vectors" in out[-1]
    assert refresh.refresh_after_run(str(os.path.join(index_copy, "nothing-here")), out.append) is None


def test_archive_job_refreshes_an_existing_sidecar(built_files_index, files_index_copy, tmp_path):
    """`exvad process` (here: a rerun with nothing new) brings a stale sidecar up to date by itself
    (per-video layout: a file held back while the sidecar is built)."""
    from archive import index_config

    built_index, index_copy = built_files_index, files_index_copy
    from exvad_ray.cli.process import process_and_refresh

    ix = SegmentIndex(index_copy)
    files = [f for f, _ in ix.files]
    f = files[-1]
    shutil.move(f, tmp_path / "held.parquet")
    SegmentIndex(index_copy).update_vectors()
    shutil.move(tmp_path / "held.parquet", f)
    assert vectors.load_sidecar(SegmentIndex(index_copy)) is None  # stale
    summary = process_and_refresh(index_config(built_index["archive"], index_copy), echo=lambda *a, **k: None)
    assert summary["search_sidecar"]["rows"] == len(SegmentIndex(index_copy, use_sidecar=False).search(limit=1000))
    state = json.load(open(os.path.join(index_copy, "search", "state.json")))
    assert set(state["files"]) == set(files) and state["chunks"] == 2
    assert vectors.load_sidecar(SegmentIndex(index_copy)) is not None


def test_ivf_path_ranks_candidates_exactly(index_copy, monkeypatch):
    """Past IVF_MIN_ROWS the sidecar asks an IVF index (faiss, int8 codes) for candidates and re-ranks
    them exactly: forced here on the small index (2 lists, both probed)."""
    for name, value in (("IVF_MIN_ROWS", 1), ("IVF_LISTS", 2), ("IVF_NPROBE", 2), ("GATHER_MAX", 0),
                        ("CANDIDATES", 1), ("CANDIDATES_PER_RESULT", 1), ("IVF_MIN_FRACTION", 0.0)):
        monkeypatch.setattr(vectors, name, value)
    fast = SegmentIndex(index_copy)
    state = fast.update_vectors()
    assert os.path.exists(os.path.join(index_copy, "search", "visual.ivf")) and state["ivf_trained_rows"]["visual"]
    sc = vectors.load_sidecar(fast)
    assert set(sc.ivf) == {"visual", "text"}
    exact = SegmentIndex(index_copy, use_sidecar=False)
    hits = 0
    ids = exact.search(limit=1000).column("segment_id").to_pylist()
    for sid in ids:
        a = exact.search(like=sid, limit=3)
        b = fast.search(like=sid, limit=3)
        assert b.column("segment_id")[0].as_py() == sid  # the segment itself first
        sims = dict(zip(a.column("segment_id").to_pylist(), a.column("similarity").to_pylist()))
        for s, v in zip(b.column("segment_id").to_pylist(), b.column("similarity").to_pylist()):
            assert s not in sims or abs(sims[s] - v) < 1e-5  # exact similarity after the re-rank
        hits += len(set(sims) & set(b.column("segment_id").to_pylist()))
    assert hits >= 0.8 * 3 * len(ids)
    cls = exact.known_classes()[0]
    got = fast.search(like=ids[0], classes=[cls], limit=5).column("label").to_pylist()
    assert set(got) <= {cls}  # the mask travels into the IVF scan


def test_sidecar_catches_up_with_the_delta_log(index_copy, monkeypatch):
    """A Delta index: a delete (a replaced video) rewrites a segments file; the sidecar retires the
    old file's rows and reads the new file, records the table version it covers, and serves what
    the exact path serves; a compaction (every file rewritten) makes it rebuild."""
    from exvad_ray.index import compact, deletes, delta

    ix = SegmentIndex(index_copy)
    first = ix.update_vectors()
    rows = SegmentIndex(index_copy, use_sidecar=False).search(limit=1000)
    assert first["rows"] == rows.num_rows and first["table_version"] == \
        delta.open_table(index_copy, "segments", create=False).version()
    by_file = {}
    for f in first["files"]:
        by_file.setdefault(len(SegmentIndex(index_copy, use_sidecar=False)._read(
            "SELECT DISTINCT video_id FROM read_parquet(?)", [f]).column(0)), []).append(f)
    files_with_two = [f for n, fs in by_file.items() if n >= 2 for f in fs]
    if not files_with_two:
        pytest.skip("no segments file holds two videos in this archive")
    f = files_with_two[0]
    vids = SegmentIndex(index_copy, use_sidecar=False)._read("SELECT DISTINCT video_id FROM read_parquet(?)", [f]
                                                             ).column(0).to_pylist()
    gone = vids[0]
    monkeypatch.setattr(vectors, "RETIRED_MAX_FRACTION", 1.0)  # 5 videos: one file is most of the rows
    deletes.delete_videos(index_copy, "segments", [gone])
    second = SegmentIndex(index_copy).update_vectors()
    assert f in second["retired"] and f not in second["files"] and second["chunks"] == first["chunks"] + 1
    assert second["table_version"] == delta.open_table(index_copy, "segments", create=False).version()
    fresh, exact = SegmentIndex(index_copy), SegmentIndex(index_copy, use_sidecar=False)
    assert vectors.load_sidecar(fresh) is not None
    served = exact.search(limit=1000)
    assert gone not in served.column("video_id").to_pylist()
    for sid in served.column("segment_id").to_pylist():
        _same(exact, fresh, sid)
        assert gone not in fresh.search(like=sid, limit=1000).column("video_id").to_pylist()
    monkeypatch.setattr(vectors, "RETIRED_MAX_FRACTION", 0.5)
    compact(index_copy, retention_hours=0)
    third = SegmentIndex(index_copy).update_vectors()  # rebuilt if compaction retired most rows
    assert third["rows"] - third["retired_rows"] == served.num_rows
    assert (third["retired"] == []) == (third["rows"] == served.num_rows)
    fresh, exact = SegmentIndex(index_copy), SegmentIndex(index_copy, use_sidecar=False)
    assert vectors.load_sidecar(fresh) is not None
    for sid in served.column("segment_id").to_pylist():
        _same(exact, fresh, sid)
