"""The driver's reads of the `videos` table on a Delta index of 2,000 videos (files of 32 videos per
partition): the fused calibration's footage, the normality bank's URIs, the normality fit's plan and
training's records keep only the videos they need (labels matched a page of files at a time in
Arrow, known ids read from the files the id cache names), and give what the whole-table read gave.
Memory: the Python objects they make (tracemalloc's peak) stay well under what the whole table as
rows costs, because only the 40 labelled videos ever become Python rows."""

from __future__ import annotations

import tracemalloc
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from exvad_ray import index as idx
from exvad_ray.errors import ExvadError
from exvad_ray.index import batches
from exvad_ray.index.labels import append_labels, label_lookup, make_table, videos_by_id
from exvad_ray.normality import GLOBAL
from exvad_ray.pipeline.rescore import RescoreConfig, _calibration_videos
from exvad_ray.train.data import load_index_records
from exvad_ray.train.normality import NormalityFitConfig, plan_fit

pytest.importorskip("deltalake")

N, PER, DIM = 2000, 32, 8
LABELLED = range(0, N, 50)  # 40 videos; every third labelled by name only


def _cols(table: str, n: int, **values: Any) -> dict[str, list]:
    out: dict[str, list] = {f.name: [None] * n for f in idx.arrow_schema(table)}
    out.update({k: v if isinstance(v, list) else [v] * n for k, v in values.items()})
    return out


def _video(i: int, rng: np.random.Generator) -> tuple[str, dict]:
    vid, uri, t = str(uuid.UUID(int=i + 1, version=4)), f"file:///archive/cam{i % 3}/v{i:05d}.mp4", 2 + i % 3
    part = {"date": "2024-01-01", "camera": f"cam{i % 3}"}
    emb = rng.standard_normal((t, DIM)).astype(np.float32)
    snippets = _cols("snippets", t, video_id=vid, uri=uri, snippet_index=list(range(t)), window_index=0,
                     start_s=[k * 0.64 for k in range(t)], end_s=[(k + 1) * 0.64 for k in range(t)],
                     frame_index=0, anomaly_score=0.0, visual_embedding=emb.tolist())
    videos = _cols("videos", 1, video_id=vid, uri=uri, name=f"v{i:05d}", fps=25.0, n_frames=16 * t,
                   n_snippets=t, visual_model="test", status="ok")
    return vid, {"snippets": (part, snippets), "videos": (part, videos)}


def _label(k: int, i: int) -> dict[str, Any]:
    return {"name": f"v{i:05d}", "video_uri": None if k % 3 == 2 else f"file:///archive/cam{i % 3}/v{i:05d}.mp4",
            "labels": ["Fighting"] if k % 5 == 0 else ["Normal"], "split": ("val", "test", "train", "train")[k % 4]}


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> dict[str, Any]:
    """The Delta index as the job's batches write it, its labels (40 videos and 2 that are not
    indexed) and every video's id by number."""
    root = tmp_path_factory.mktemp("labelled-reads")
    index, labels = str(root / "index"), str(root / "labels")
    batches.create_tables(index)
    rng, ids = np.random.default_rng(0), []
    for b in range(0, N, PER):
        made = [_video(i, rng) for i in range(b, min(N, b + PER))]
        adds = batches.write_batch(index, [m for _, m in made])
        batches.commit_batch(index, "run1", b // PER, adds, [v for v, _ in made])
        ids += [v for v, _ in made]
    rows = [_label(k, i) for k, i in enumerate(LABELLED)]
    rows += [{"name": "elsewhere", "video_uri": "file:///other/elsewhere.mp4", "labels": ["Normal"], "split": "val"},
             {"name": "nameless", "video_uri": None, "labels": ["Normal"], "split": "train"}]
    append_labels(labels, make_table(rows), source="import:csv")
    assert idx.is_delta_index(index) and len(idx.list_files(index, "videos")) > 50
    order = idx.read_table(index, "videos", ["video_id"]).column("video_id").to_pylist()  # the reference order
    return {"index": index, "labels": labels, "ids": ids, "order": order,
            "label": {ids[i]: _label(k, i) for k, i in enumerate(LABELLED)}}


def _peak(fn: Callable[[], Any]) -> tuple[Any, int]:
    """fn's result and the peak of the Python memory it allocated (its second call: imports and the
    id cache's first refresh are not what is measured)."""
    fn()
    tracemalloc.start()
    try:
        return fn(), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _whole_table(index: str, columns: list[str]) -> int:
    """What the whole-table read held: every video as a Python row."""
    return _peak(lambda: idx.read_table(index, "videos", columns).to_pylist())[1]


def _in_order(archive: dict[str, Any], keep: Any) -> list[str]:
    return [v for v in archive["order"] if v in keep]


def test_fusion_calibration_on_labels_keeps_the_labelled_videos_only(archive):
    index, label = archive["index"], archive["label"]
    cfg = RescoreConfig(index, labels=archive["labels"])
    (chosen, what), peak = _peak(lambda: _calibration_videos(cfg, index, {}))
    val = {v for v, r in label.items() if r["split"] == "val"}
    assert what == "the val split"
    assert list(chosen) == _in_order(archive, val)  # the table's order, as the whole read gave it
    assert all(chosen[v]["name"] == label[v]["name"] and chosen[v]["labels"] == label[v]["labels"] for v in chosen)
    assert peak < _whole_table(index, ["video_id", "uri", "name", "n_snippets"]) / 3


def test_fusion_calibration_on_the_bank_and_its_uris_read_the_banks_videos_only(archive):
    index, ids = archive["index"], archive["ids"]
    bank = [ids[i] for i in range(7, N, 97)] + ["00000000-0000-4000-8000-00000000dead"]  # one not indexed
    chosen, what = _calibration_videos(RescoreConfig(index), index, {"banks": [{"name": GLOBAL, "videos": bank}]})
    assert what == "the normality bank's videos" and list(chosen) == _in_order(archive, set(bank))
    assert set(chosen.values()) == {None}
    uris = videos_by_id(index, set(bank), ["video_id", "uri"])  # `_prepare`'s nearest-video URIs
    got = dict(zip(uris.column("video_id").to_pylist(), uris.column("uri").to_pylist()))
    assert got == {ids[i]: f"file:///archive/cam{i % 3}/v{i:05d}.mp4" for i in range(7, N, 97)}


def test_normality_fit_plans_the_labelled_normal_videos_only(archive, tmp_path):
    index, label = archive["index"], archive["label"]
    cfg = NormalityFitConfig(index=index, out=str(tmp_path / "model"), labels=archive["labels"])
    plan, peak = _peak(lambda: plan_fit(cfg))
    normal = {v for v, r in label.items() if r["labels"] == ["Normal"] and r["split"] in ("train", "val")}
    assert list(plan.videos) == _in_order(archive, normal)
    assert {v for v, info in plan.videos.items() if info.bank} == {v for v in normal if label[v]["split"] == "train"}
    assert {v for _, vs in plan.files for v in vs} == normal and plan.feature_models == ["test"]
    assert peak < _whole_table(index, ["video_id", "uri", "name", "camera", "n_snippets", "fps", "visual_model"]) / 3
    with pytest.raises(ExvadError, match=r"unknown camera\(s\) \['cam9'\]; the index has cam0, cam1, cam2"):
        plan_fit(NormalityFitConfig(index=index, out=str(tmp_path / "m2"), labels=archive["labels"], cameras=("cam9",)))
    # without labels every video is footage: all of them, in the table's order
    assert list(plan_fit(NormalityFitConfig(index=index, out=str(tmp_path / "m3"))).videos) == archive["order"]


def test_training_records_are_the_labelled_videos_with_their_snippets(archive):
    index, label = archive["index"], archive["label"]
    load = lambda: load_index_records(f"{index}/snippets", f"{index}/videos", archive["labels"])
    records, peak = _peak(load)
    assert [r.name for r in records] == sorted(r["name"] for r in label.values())
    first = next(r for r in records if r.name == "v00000")
    assert first.features.shape == (2, DIM) and first.split == "val" and first.labels == ["Fighting"]
    assert peak < _whole_table(index, ["video_id", "name", "uri", "fps", "explanation_embedding"]) / 3
    lookup = label_lookup(archive["labels"])  # the keys it matches by: URIs of its rows that have one, every name
    assert len(lookup.uris) == 28 and len(lookup.names) == 42


def test_the_current_detector_and_a_missing_index_read_a_page_at_a_time(archive, tmp_path):
    from exvad_ray.index.scorings import current_detector, find_segment

    with pytest.raises(ExvadError, match=r"has no single detector checkpoint \(none\)"):
        current_detector(archive["index"])  # the job wrote no detector: every page's unique values are null
    with pytest.raises(ExvadError, match="no index at"):
        find_segment(str(tmp_path / "nothing"), "x:0")
