"""`exvad rescore` on a Delta index (issue 23): a scoring's tables are Delta tables written a batch
of videos per file and committed by the driver as the archive job commits (`index.batches`), and
"current" is the one-row table ``scorings/current``. On a 10-video index built by the real job on
the local S3 server: a half-committed batch is repaired by the next rescore, every video is in each
table's snapshot exactly once, a rerun adds nothing, `--use` switches through the table (no
CURRENT.json), and read_scoring, evaluate and search read the Delta scoring."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from exvad_ray import index as idx
from exvad_ray import storage
from exvad_ray.checkpoints import detector_id
from exvad_ray.cli import main
from exvad_ray.index import batches, delta
from exvad_ray.index import scorings as sc
from exvad_ray.pipeline.rescore import RescoreConfig, run_rescore

from test_rescore import build_rescore_index

pytestmark = pytest.mark.slow
pytest.importorskip("deltalake")

# 10 short videos (2 per anomaly class + 2 normal), 2 windows each, as test_rescore's archive
ARCHIVE = dict(videos_per_class=2, normal_videos=2, width=96, height=64, fps=15.0, duration=(4.5, 5.0), seed=5)
N = 10


@pytest.fixture(scope="module")
def built(ray_local, tiny_dir, s3_server, tmp_path_factory):
    out = build_rescore_index("delta-rescore", s3_server, tmp_path_factory, ARCHIVE, commit_every=4)
    assert out["videos"] == N and idx.is_delta_index(out["index"])
    return out


def _ids(index: str, path: str) -> list[str]:
    return sorted(delta.video_ids(index, path).to_pylist())


def _versions(index: str, sid: str) -> list[int]:
    return [delta.open_table(index, p, create=False).version() for p in sc.delta_tables(sid)]


def test_a_half_committed_batch_is_repaired_by_the_next_rescore(built):
    """A rescore killed between its commits: batch 0 of the scoring is in `segments` but not in
    `videos`. The next rescore deletes those rows first, then scores every video once."""
    index, sid = built["index"], detector_id(built["a"])
    process = sc.read_scoring(index, "segments", "process")
    assert process.num_rows > 0
    half = sorted(set(process.column("video_id").to_pylist()))[:2]
    rows = process.filter(pc.is_in(process.column("video_id"), pa.array(half)))
    n = rows.num_rows
    rows = rows.set_column(rows.schema.get_field_index("scoring_id"), "scoring_id", pa.array([sid] * n))
    seg = sc.table_path(sid, "segments")
    sc.create_delta_tables(index, sid)
    adds = delta.write_files(index, seg, rows, [{c: r[c] for c in sc.PARTITIONS["segments"]}
                                                for r in rows.select(sc.PARTITIONS["segments"]).to_pylist()])
    delta.commit(index, seg, sid, 0, adds, metadata={batches.IDS_KEY: json.dumps(half)})
    assert _ids(index, seg) == sorted(rows.column("video_id").to_pylist()) and not _ids(index, sc.table_path(sid, "videos"))

    said: list[str] = []
    summary = run_rescore(RescoreConfig(index=index, detector=built["a"], actors=2), echo=said.append)
    assert summary["videos_scored"] == N and summary["videos_failed"] == 0
    assert any("repaired an interrupted batch" in m for m in said)
    # the half batch's rows are gone: the scoring's segments are the process scoring's, once each
    new = sc.read_scoring(index, "segments", sid)
    key = lambda t: sorted(zip(*(t.column(c).to_pylist() for c in ("segment_id", "label", "start_s", "end_s"))))  # noqa: E731
    assert key(new) == key(process)
    assert pc.count_distinct(new.column("segment_id")).as_py() == new.num_rows
    # batch numbers go on counting past the killed run's batch 0
    assert delta.committed_batch(index, sc.table_path(sid, "videos"), sid) >= 1


def test_rescore_writes_delta_tables_and_a_rerun_adds_nothing(built):
    index, sid = built["index"], detector_id(built["a"])
    if not storage.exists(storage.join(sc.scoring_root(index, sid), "videos", "_delta_log")):
        run_rescore(RescoreConfig(index=index, detector=built["a"], actors=2), echo=lambda _m: None)
    videos = _ids(index, "videos")
    assert len(videos) == N
    files = 0
    for table in sc.TABLES:
        path = sc.table_path(sid, table)
        assert delta.is_delta(index, path), path
        snap = delta.snapshot_files(index, path)
        files += len(snap)
        assert not any(v in f for f in snap for v in videos)  # no per-video file names
    assert files < N * len(sc.TABLES)
    # every video exactly once in each table's snapshot
    assert _ids(index, sc.table_path(sid, "videos")) == videos
    snips = sc.read_scoring(index, "snippet_scores", sid, ["video_id", "snippet_index"])
    keys = list(zip(snips.column("video_id").to_pylist(), snips.column("snippet_index").to_pylist()))
    process = sc.read_scoring(index, "snippet_scores", "process", ["video_id", "snippet_index"])
    assert sorted(keys) == sorted(zip(process.column("video_id").to_pylist(), process.column("snippet_index").to_pylist()))
    segs = sc.read_scoring(index, "segments", sid, ["segment_id", "video_id"])
    assert pc.count_distinct(segs.column("segment_id")).as_py() == segs.num_rows
    # a rerun plans nothing and commits nothing
    before = _versions(index, sid)
    summary = run_rescore(RescoreConfig(index=index, detector=built["a"], actors=2), echo=lambda _m: None)
    assert summary["videos_skipped"] == N and summary["videos_scored"] == 0
    assert _versions(index, sid) == before


def test_current_is_table_state(built, capsys):
    index, sid_a, sid_b = built["index"], detector_id(built["a"]), detector_id(built["b"])
    current = f"{sc.SCORINGS_DIR}/{sc.CURRENT_TABLE}"
    assert main(["rescore", "--index", index, "--detector", built["b"], "--actors", "1"]) == 0
    assert sc.current_scoring(index) == sid_b and delta.is_delta(index, current)
    assert not storage.exists(storage.join(index, sc.SCORINGS_DIR, sc.CURRENT))
    version = delta.open_table(index, current, create=False).version()
    assert main(["rescore", "--index", index, "--use", sid_a]) == 0
    table = delta.open_table(index, current, create=False)
    assert table.version() == version + 1  # one commit
    rows = table.to_pyarrow_table().to_pylist()
    assert len(rows) == 1 and rows[0]["scoring_id"] == sid_a and rows[0]["set_by"] and rows[0]["set_at"]
    assert sc.current_scoring(index) == sid_a
    assert [m["scoring_id"] for m in sc.list_scorings(index) if m["current"]] == [sid_a]
    assert {m["scoring_id"] for m in sc.list_scorings(index)} == {"process", sid_a, sid_b}
    assert main(["rescore", "--index", index, "--use", "process"]) == 0
    assert sc.current_scoring(index) == "process"
    assert main(["rescore", "--index", index, "--use", "det-nope"]) == 2
    assert sc.current_scoring(index) == "process"
    assert not storage.exists(storage.join(index, sc.SCORINGS_DIR, sc.CURRENT))
    capsys.readouterr()


def test_search_and_evaluate_read_the_delta_scoring(built, capsys, tmp_path):
    from exvad_ray.search.engine import SegmentIndex

    index, sid_a = built["index"], detector_id(built["a"])
    sc.set_current(index, sid_a)
    want = sc.read_scoring(index, "segments", sid_a, ["segment_id", "video_id", "label", "score"])
    assert want.num_rows > 0  # detector a flags what the process scoring flagged
    ix = SegmentIndex(index)  # the current scoring, found through the table
    got = ix.search(limit=1000)
    assert ix.scoring == sid_a
    assert sorted(got.column("segment_id").to_pylist()) == sorted(want.column("segment_id").to_pylist())
    by_id = dict(zip(want.column("segment_id").to_pylist(), want.column("score").to_pylist()))
    assert all(by_id[s] == pytest.approx(v, abs=1e-6) for s, v in zip(got.column("segment_id").to_pylist(),
                                                                      got.column("score").to_pylist()))
    one = want.column("video_id")[0].as_py()  # a lookup by video: the files of its partitions only
    rows = SegmentIndex(index, scoring=sid_a).search(video_id=one, limit=100)
    assert sorted(rows.column("segment_id").to_pylist()) == sorted(
        s for s, v in zip(want.column("segment_id").to_pylist(), want.column("video_id").to_pylist()) if v == one)
    label = want.column("label")[0].as_py()
    rows = SegmentIndex(index).search(classes=[label], limit=1000)
    assert sorted(rows.column("segment_id").to_pylist()) == sorted(
        s for s, lab in zip(want.column("segment_id").to_pylist(), want.column("label").to_pylist()) if lab == label)
    # evaluate --scoring: the Delta scoring of detector a equals the process scoring (same detector)
    f = built["files"]
    assert main(["labels", "import", "ucf", "--labels", built["labels"], "--index", index, "--train-list",
                 str(f["train"]), "--test-list", str(f["test"]), "--annotations", str(f["annotations"]),
                 "--val-fraction", "0"]) == 0
    data = ["--index", index, "--labels", built["labels"], "--split", "test"]
    assert main(["evaluate", *data, "--scoring", sid_a, "--out", str(tmp_path / "a.json")]) == 0
    assert main(["evaluate", *data, "--scoring", "process", "--out", str(tmp_path / "p.json")]) == 0
    a_doc, p_doc = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "p.json"))
    assert a_doc["n_videos"] == p_doc["n_videos"] > 0
    for key in ("auc", "ap", "accuracy"):
        assert a_doc[key] == pytest.approx(p_doc[key], abs=1e-5, nan_ok=True), key
    recorded = {r["name"]: r["video_class"] for r in sc.read_scoring(index, "videos", sid_a).to_pylist()}
    assert {n: v["predicted"] for n, v in a_doc["videos"].items()} == {n: recorded[n] for n in a_doc["videos"]}


def test_compact_covers_the_scoring_tables(built, tmp_path):
    """`exvad compact` on a Delta index optimizes and vacuums every rescoring's tables and the
    current-scoring table too; what they serve is unchanged."""
    import shutil

    from exvad_ray.index import compact

    index, sid = built["index"], detector_id(built["a"])
    if not storage.exists(storage.join(sc.scoring_root(index, sid), "videos", "_delta_log")):
        run_rescore(RescoreConfig(index=index, detector=built["a"], actors=2), echo=lambda _m: None)
    copy = str(tmp_path / "index")
    fs, path = storage.filesystem(index)
    fs.get(path + "/", copy + "/", recursive=True)  # a private copy: the other tests keep their index
    tables = sc.compact_tables(copy)
    assert set(sc.delta_tables(sid)) <= set(tables) and "scorings/current" in tables
    before = sc.read_scoring(copy, "segments", sid, ["segment_id", "score"]).sort_by("segment_id")
    done = compact(copy, tables, retention_hours=0)
    assert set(done) == set(tables)
    assert sc.read_scoring(copy, "segments", sid, ["segment_id", "score"]).sort_by("segment_id").equals(before)
    assert sc.current_scoring(copy) == sc.current_scoring(index)
    shutil.rmtree(copy, ignore_errors=True)


def test_a_replaced_video_leaves_the_delta_scorings(built, tmp_path):
    """Content replaced under a URI: the rerun's planning deletes the old id's rows from the video
    tables and from every rescoring's Delta tables (`scorings.delete_videos`)."""
    index, sid = built["index"], detector_id(built["a"])
    if not storage.exists(storage.join(sc.scoring_root(index, sid), "videos", "_delta_log")):
        run_rescore(RescoreConfig(index=index, detector=built["a"], actors=2), echo=lambda _m: None)
    copy = str(tmp_path / "index")
    fs, path = storage.filesystem(index)
    fs.get(path + "/", copy + "/", recursive=True)
    gone = _ids(copy, sc.table_path(sid, "videos"))[0]
    sids = [m["scoring_id"] for m in sc.list_scorings(copy) if m["scoring_id"] != sc.PROCESS]
    assert sid in sids
    assert sc.delete_videos(copy, [gone]) == len(sc.TABLES) * len(sids)  # every rescoring's tables
    for s in sids:
        for table in sc.TABLES:
            assert gone not in _ids(copy, sc.table_path(s, table))
    assert gone not in sc.read_scoring(copy, "segments", sid, ["video_id"]).column("video_id").to_pylist()
