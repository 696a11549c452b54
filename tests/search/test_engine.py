"""The query engine over an index built by the archive job: every filter and their combinations
return exactly the segments a plain Python filter over the whole table returns; similarity ranking;
hostile input stays data."""

from __future__ import annotations

import datetime as dt
import itertools
import os

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from exvad_ray import index as idx
from exvad_ray.index.store import list_files
from exvad_ray.search.engine import SearchError, SegmentIndex

pytestmark = pytest.mark.slow
UTC = dt.timezone.utc


@pytest.fixture(scope="module")
def rows(built_index) -> list[dict]:
    seg = idx.read_table(built_index["index"], "segments").to_pylist()
    vids = {v["video_id"]: v for v in idx.read_table(built_index["index"], "videos").to_pylist()}
    for r in seg:
        r["detector"] = vids[r["video_id"]]["detector"]
    assert len(seg) >= 4
    return seg


def oracle(rows, classes=(), min_score=None, max_score=None, since=None, until=None, cameras=(), prefix=None,
           video_id=None, detector=None):
    out = [r for r in rows
           if (not classes or r["label"] in classes)
           and (min_score is None or r["score"] >= min_score) and (max_score is None or r["score"] <= max_score)
           and (since is None or (r["start_at"] is not None and r["start_at"] >= since))
           and (until is None or (r["start_at"] is not None and r["start_at"] < until))
           and (not cameras or r["camera"] in cameras) and (prefix is None or r["uri"].startswith(prefix))
           and (video_id is None or r["video_id"] == video_id) and (detector is None or r["detector"] == detector)]
    return sorted(out, key=lambda r: (-r["score"], r["segment_id"]))


def test_recorded_time_columns(built_index):
    """Every way of knowing the recording time, and the date partition that follows it."""
    videos = {v["uri"].split("/archive/")[1]: v for v in idx.read_table(built_index["index"], "videos").to_pylist()}
    v = videos["cam01/20261124_223015_fighting.mp4"]
    assert (v["recorded_at"], v["recorded_at_source"], v["date"]) == (dt.datetime(2026, 11, 24, 22, 30, 15, tzinfo=UTC), "path", "2026-11-24")
    v = videos["cam02/2026-11-25/crowdrush.mp4"]
    assert (v["recorded_at"], v["recorded_at_source"]) == (dt.datetime(2026, 11, 25, 6, 10, tzinfo=UTC), "container")
    v = videos["cam02/2026-11-25/fire.mp4"]
    assert (v["recorded_at"], v["recorded_at_source"]) == (dt.datetime(2026, 11, 25, tzinfo=UTC), "path-date")
    v = videos["cam03/clip_fallingobject.mp4"]
    assert v["recorded_at"] is None and v["recorded_at_source"] is None  # never the processing time
    for s in idx.read_table(built_index["index"], "segments").to_pylist():
        rec = next(x["recorded_at"] for x in videos.values() if x["video_id"] == s["video_id"])
        if rec is None:
            assert s["start_at"] is None and s["end_at"] is None
        else:
            assert s["start_at"] == rec + dt.timedelta(seconds=s["start_s"])
            assert s["end_at"] == rec + dt.timedelta(seconds=s["end_s"])
            assert s["date"] == rec.date().isoformat()


def test_each_filter_and_combinations(built_index, rows):
    ix = SegmentIndex(built_index["index"])
    scores = sorted(r["score"] for r in rows)
    mid = scores[len(scores) // 2]
    label = rows[0]["label"]
    some_video = rows[-1]["video_id"]
    prefix = built_index["archive"] + "/cam01/"
    single = {
        "classes": [(label,), ("Fire", label)],
        "min_score": [mid], "max_score": [mid],
        "since": [dt.datetime(2026, 11, 24, 23, 0, tzinfo=UTC)], "until": [dt.datetime(2026, 11, 25, 1, 0, tzinfo=UTC)],
        "cameras": [("cam01",), ("cam02", "cam03")], "prefix": [prefix], "video_id": [some_video],
        "detector": ["zero-shot:synthetic", "zero-shot:other"],
    }
    cases = [{k: v} for k, vs in single.items() for v in vs]
    keys = list(single)
    for a, b in itertools.combinations(keys, 2):
        cases.append({a: single[a][0], b: single[b][-1]})
    cases.append({"classes": (label,), "since": single["since"][0], "until": dt.datetime(2026, 11, 26, tzinfo=UTC),
                  "cameras": ("cam01", "cam02"), "min_score": scores[0]})
    nonempty = 0
    for case in cases:
        got = ix.search(limit=1000, **case).column("segment_id").to_pylist()
        want = [r["segment_id"] for r in oracle(rows, **case)]
        assert got == want, case
        nonempty += bool(want) and len(want) < len(rows)
    assert nonempty >= 10  # the cases do discriminate
    assert ix.search(limit=2).column("segment_id").to_pylist() == [r["segment_id"] for r in oracle(rows)][:2]


def test_partition_pruning_reads_only_matching_files(built_files_index, rows):
    """Per-video layout: a video's files are named by its id, so a lookup opens only them."""
    from exvad_ray.search.engine import Query

    ix = SegmentIndex(built_files_index["index"])
    all_files = [f for f, _ in ix.files]
    cams = sorted({r["camera"] for r in rows})
    assert len(cams) >= 2
    narrow = ix._prune(Query(cameras=(cams[0],)), [])
    assert narrow and len(narrow) < len(all_files) and all(f"/camera={cams[0]}/" in f for f in narrow)
    assert ix._prune(Query(since=dt.datetime(2030, 1, 1, tzinfo=UTC)), []) == []
    vid = rows[0]["video_id"]
    assert all(vid in f for f in ix._prune(Query(), [], [vid]))


def test_errors_are_one_line(built_index, tmp_path):
    ix = SegmentIndex(built_index["index"])
    with pytest.raises(SearchError, match=r"unknown class 'Arson'; known classes: .*Fighting"):
        ix.search(classes=["Arson"])
    with pytest.raises(SearchError, match="malformed --since 'last tuesday'"):
        ix.search(since="last tuesday")
    with pytest.raises(SearchError, match="unknown segment id"):
        ix.search(like="0000:1")
    with pytest.raises(SearchError, match="no index at"):
        SegmentIndex(str(tmp_path / "nothing")).search()
    assert ix.search(classes=["fire"]).num_rows == sum(r["label"] == "Fire" for r in idx.read_table(
        built_index["index"], "segments").to_pylist())  # case-insensitive, known but maybe empty


def test_like_returns_the_segment_first(built_index, rows):
    ix = SegmentIndex(built_index["index"])
    for r in rows:
        got = ix.search(like=r["segment_id"], limit=3)
        assert got.column("segment_id")[0].as_py() == r["segment_id"]
        assert got.column("similarity")[0].as_py() == pytest.approx(1.0, abs=1e-5)
        sims = got.column("similarity").to_pylist()
        assert sims == sorted(sims, reverse=True)
    # combined with a filter that excludes it: the rest only
    cam = rows[0]["camera"]
    other = ix.search(like=rows[0]["segment_id"], cameras=[c for c in {r["camera"] for r in rows} if c != cam], limit=50)
    assert rows[0]["segment_id"] not in other.column("segment_id").to_pylist()


SENTENCES = ["a man climbing a fence at night", "two people fighting near the exit", "a car on fire in the parking lot",
             "people running near the exit", "a box falls from a shelf", "a crowd gathers at the gate"]


def test_text_ranks_matching_explanation_first(index_copy, tiny_dir):
    """Constructed case: the archive job's segments get distinct explanations (embedded with the
    profile's own text encoder, as the job does); a query equal to one of them ranks it first."""
    from exvad_ray.models.stages import TextEmbeddingStage

    enc = TextEmbeddingStage("tiny")
    files = [f for f in list_files(index_copy, "segments")]
    k = 0
    chosen = {}
    for f in files:
        t = pq.read_table(f)
        texts = [SENTENCES[(k + i) % len(SENTENCES)] for i in range(t.num_rows)]
        feats = enc({"explanation": np.array(texts, dtype=object)})[enc.output_column]
        t = t.set_column(t.schema.get_field_index("explanation"), "explanation", [texts])
        t = t.set_column(t.schema.get_field_index("explanation_embedding"), "explanation_embedding",
                         [[np.asarray(x, np.float32).tolist() for x in feats]])
        pq.write_table(t, f)
        for sid, text in zip(t.column("segment_id").to_pylist(), texts):
            chosen.setdefault(text, []).append(sid)
        k += t.num_rows
    ix = SegmentIndex(index_copy)
    for text, sids in chosen.items():
        got = ix.search(text=text, limit=10)
        assert set(got.column("segment_id").to_pylist()[:len(sids)]) == set(sids), text
        assert got.column("explanation")[0].as_py() == text


@pytest.mark.parametrize("hostile", [
    "x' OR 1=1 --", "'; DROP TABLE segments; --", "\" OR \"\"=\"", "Fighting' UNION SELECT * FROM videos --",
    "../../etc/passwd", "%", "_", "\\x00", "*/ SELECT 1; /*",
])
def test_injection_looking_input_is_data(built_index, rows, hostile):
    ix = SegmentIndex(built_index["index"])
    before = ix.search(limit=1000).column("segment_id").to_pylist()
    with pytest.raises(SearchError, match="unknown class"):
        ix.search(classes=[hostile])
    assert ix.search(cameras=[hostile]).num_rows == 0
    assert ix.search(prefix=hostile).num_rows == 0
    assert ix.search(video_id=hostile).num_rows == 0
    assert ix.search(detector=hostile).num_rows == 0
    with pytest.raises(SearchError, match="unknown segment id"):
        ix.search(like=hostile)
    assert ix.search(text=hostile, limit=1000).num_rows == len(rows)  # ranked, nothing else
    assert ix.search(limit=1000).column("segment_id").to_pylist() == before  # nothing changed


def test_s3_index_gives_the_same_results(built_index, s3_bucket):
    from exvad_ray import storage

    fs, path = storage.filesystem(s3_bucket)
    fs.put(built_index["index"] + "/", path + "/idx/", recursive=True)
    local, remote = SegmentIndex(built_index["index"]), SegmentIndex(s3_bucket + "/idx")
    for q in ({}, {"cameras": ["cam01"]}, {"min_score": 0.5, "since": "2026-11-24"}):
        assert remote.search(**q).drop(["uri"]).equals(local.search(**q).drop(["uri"]))
    sid = local.search(limit=1).column("segment_id")[0].as_py()
    assert remote.search(like=sid, limit=1).column("segment_id")[0].as_py() == sid


def test_superseded_videos_are_not_served(files_index_copy, rows):
    """Per-video layout: a tombstone (INDEX/superseded/<id>.json, written when a video's content was
    replaced) hides that video's segments, also inside compacted files."""
    index_copy = files_index_copy
    import json

    from exvad_ray.index import compact

    gone = rows[0]["video_id"]
    os.makedirs(os.path.join(index_copy, "superseded"))
    with open(os.path.join(index_copy, "superseded", f"{gone}.json"), "w") as f:
        json.dump({"video_id": gone}, f)
    want = [r["segment_id"] for r in oracle(rows) if r["video_id"] != gone]
    assert SegmentIndex(index_copy).search(limit=1000).column("segment_id").to_pylist() == want
    compact(index_copy, tables=("segments",), min_files=1)
    ix = SegmentIndex(index_copy)
    assert all("compact-" in f for f, _ in ix.files)
    assert ix.search(limit=1000).column("segment_id").to_pylist() == want
    with pytest.raises(SearchError, match="unknown segment id"):
        ix.search(like=rows[0]["segment_id"])


def test_both_layouts_serve_the_same_segments(built_index, built_files_index):
    """The same archive indexed in Delta tables and in per-video files: the same answers."""
    delta_ix, files_ix = SegmentIndex(built_index["index"]), SegmentIndex(built_files_index["index"])
    assert delta_ix.in_blocks and not files_ix.in_blocks
    cols = ["segment_id", "video_id", "label", "score", "start_s", "end_s"]
    a, b = (ix.search(limit=1000).select(cols).to_pylist() for ix in (delta_ix, files_ix))
    assert a == b and len(a) >= 4
    vid = a[0]["video_id"]
    assert delta_ix.snippets(vid).num_rows == files_ix.snippets(vid).num_rows > 0
    assert delta_ix.snippet_thumbnail(vid, 0) == files_ix.snippet_thumbnail(vid, 0) is not None


def test_replaced_videos_are_deleted_on_delta(index_copy, rows):
    """Delta tables: a replaced video's rows are deleted from every table (a commit), so search,
    and any engine reading the snapshot, never sees them; nothing is left to hide."""
    from exvad_ray.index import delta
    from exvad_ray.index.supersede import mark_superseded

    gone = rows[0]["video_id"]
    mark_superseded(index_copy, {gone: (rows[0]["uri"], "00000000-0000-0000-0000-000000000001")})
    assert gone not in delta.video_ids(index_copy, "segments").to_pylist()
    want = [r["segment_id"] for r in oracle(rows) if r["video_id"] != gone]
    ix = SegmentIndex(index_copy)
    assert ix.search(limit=1000).column("segment_id").to_pylist() == want
    with pytest.raises(SearchError, match="unknown segment id"):
        ix.search(like=rows[0]["segment_id"])


@pytest.mark.parametrize("path", ["exact", "reduced"])  # reduced: PCA scan + exact re-rank for every query
def test_vector_sidecar_agrees_with_exact_sql(index_copy, rows, monkeypatch, path):
    from exvad_ray.search import vectors

    if path == "reduced":  # the tiny profile's vectors are narrow: reduce anything wider than 4 to 3 dims
        monkeypatch.setattr(vectors, "REDUCE_ABOVE", 4)
        monkeypatch.setattr(vectors, "REDUCED_DIM", 3)
        monkeypatch.setattr(vectors, "GATHER_MAX", 0)
    exact = SegmentIndex(index_copy, use_sidecar=False)
    fast = SegmentIndex(index_copy)
    state = fast.update_vectors()
    assert state["rows"] == len(rows) and vectors.load_sidecar(fast) is not None
    assert fast.update_vectors() == state  # nothing new: no work
    cams = sorted({r["camera"] for r in rows})
    for r in rows:
        for extra in ({}, {"cameras": cams[:1]}, {"min_score": r["score"]}):
            a = exact.search(like=r["segment_id"], limit=10, **extra)
            b = fast.search(like=r["segment_id"], limit=10, **extra)
            assert b.column("segment_id").to_pylist() == a.column("segment_id").to_pylist(), extra
            assert np.allclose(b.column("similarity").to_numpy(), a.column("similarity").to_numpy(), atol=1e-5)
            assert b.drop(["similarity"]).equals(a.drop(["similarity"]))
    for text in ("people fighting near the exit", "fire"):
        a, b = exact.search(text=text, limit=10), fast.search(text=text, limit=10)
        assert b.column("segment_id").to_pylist() == a.column("segment_id").to_pylist()


def test_read_scoring_reads_only_the_columns_and_videos_asked_for(built_index, built_files_index, rows):
    """A scoring read for some columns of some videos is exactly those rows of the whole read, on
    both layouts (the driver never holds the whole table to use a part of it)."""
    from exvad_ray.index.scorings import read_scoring, scores_by_name

    vid = rows[0]["video_id"]
    for index in (built_index["index"], built_files_index["index"]):
        whole = read_scoring(index, "segments")
        part = read_scoring(index, "segments", columns=["segment_id", "score", "detector_id"], video_ids=[vid])
        assert part.column_names == ["segment_id", "score", "detector_id"]
        want = whole.filter(pc.equal(whole.column("video_id"), vid)).select(part.column_names)
        assert sorted(part.to_pylist(), key=str) == sorted(want.to_pylist(), key=str) and part.num_rows
        snips = read_scoring(index, "snippet_scores", columns=["video_id", "anomaly_score"], video_ids=[vid])
        assert set(snips.column("video_id").to_pylist()) == {vid}
        name = read_scoring(index, "videos", columns=["video_id", "name"], video_ids=[vid]).column("name")[0].as_py()
        classes, by_name = scores_by_name(index, "process", {name})
        assert len(by_name[name][0]) == snips.num_rows and classes
