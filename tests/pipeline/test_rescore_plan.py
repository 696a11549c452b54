"""Rescore planning holds file names and ids only; each task reads its own videos' rows (issue 23:
no whole-table read in the driver). Today's layout with every case that decides what to score: a
compacted partition, a video rewritten after the compaction, a superseded video, a video whose
snippets were written but not its videos row (a crash), and one already scored."""

from __future__ import annotations

import json

import pyarrow as pa

from exvad_ray import index as idx
from exvad_ray.index import scorings as sc
from exvad_ray.index.supersede import mark_superseded
from exvad_ray.pipeline.rescore import plan_work, video_infos

IDS = [f"00000000-0000-0000-0000-0000000000{i:02d}" for i in range(1, 8)]
A, B = {"date": "2026-01-01", "camera": "c1"}, {"date": "2026-01-02", "camera": "c2"}


def _video(vid: str, name: str) -> dict:
    cols = {f.name: [None] for f in idx.arrow_schema("videos")}
    cols.update(video_id=[vid], uri=[f"/a/{name}.mp4"], name=[name], status=["ok"], n_windows=[1],
                window_explanation_embeddings=[[[0.5, 0.5]]], fps=[25.0])
    return cols


def _snippets(vid: str) -> dict:
    cols = {f.name: [None, None] for f in idx.arrow_schema("snippets")}
    cols.update(video_id=[vid] * 2, uri=["/a/x.mp4"] * 2, window_index=[0, 0], snippet_index=[0, 1],
                start_s=[0.0, 0.64], end_s=[0.64, 1.28], frame_index=[0, 16], anomaly_score=[0.1, 0.2])
    return cols


def _captions(vid: str, text: str) -> dict:
    cols = {f.name: [None] for f in idx.arrow_schema("captions")}
    cols.update(video_id=[vid], window_index=[0], time_s=[0.0], window_explanation=[text])
    return cols


def _write(index: str, vid: str, part: dict, name: str, videos_row: bool = True) -> None:
    tables = {"snippets": (part, _snippets(vid)), "captions": (part, _captions(vid, f"text of {name}"))}
    if videos_row:
        tables["videos"] = (part, _video(vid, name))
    idx.write_video_tables(index, vid, tables)


def test_items_carry_ids_only_and_tasks_read_their_rows(tmp_path):
    index = str(tmp_path / "index")
    for vid, part in zip(IDS[:4], (A, A, A, B)):
        _write(index, vid, part, f"v{vid[-2:]}")
    idx.compact(index)
    _write(index, IDS[1], A, "rewritten")  # rewritten after the compaction: its part file wins
    mark_superseded(index, {IDS[2]: ("/a/old.mp4", IDS[5])})  # replaced content: never scored
    _write(index, IDS[4], B, "crashed", videos_row=False)  # snippets without a videos row: not indexed
    _write(index, IDS[6], B, "scored")
    done = {"video_id": [IDS[6]], "uri": ["/a/scored.mp4"], "name": ["scored"], "scoring_id": ["det-x"],
            "detector_id": ["det-x"]}
    scored = sc.schema("videos")
    table = pa.table({f.name: pa.array(done[f.name], f.type) if f.name in done else pa.nulls(1, f.type)
                      for f in scored})
    idx.write_table_file(sc.file_uri(index, "det-x", "videos", B, IDS[6]), table)

    items, n_done, warnings = plan_work(index, "det-x")
    planned = {w["video_id"]: it["file"] for it in items for w in json.loads(it["videos"])}
    assert sorted(planned) == sorted([IDS[0], IDS[1], IDS[3]]) and n_done == 1 and warnings == []
    assert all(set(w) == {"video_id"} for it in items for w in json.loads(it["videos"]))  # no row data
    assert "part-" + IDS[1] in planned[IDS[1]]  # the rewritten video from its part file

    version = idx.index_version(index)
    for it in items:
        infos = video_infos(index, it["file"], json.loads(it["videos"]), version)
        for vid, info in infos.items():
            part = A if vid != IDS[3] else B
            assert (info["date"], info["camera"]) == (part["date"], part["camera"])
            assert info["window_text"] == [[0.5, 0.5]] and info["fps"] == 25.0 and not info["coarse"]
    info = video_infos(index, planned[IDS[1]], [{"video_id": IDS[1]}], version)[IDS[1]]
    assert info["name"] == "rewritten" and info["window_explanations"] == {"0": "text of rewritten"}
    info = video_infos(index, planned[IDS[0]], [{"video_id": IDS[0], "label": {"labels": ["Normal"]}}], version)
    assert info[IDS[0]]["name"] == "v01" and info[IDS[0]]["label"] == {"labels": ["Normal"]}

    # the calibration pass: only some videos, their labels travel with them
    items, _, _ = plan_work(index, None, only={IDS[3]}, labels={IDS[3]: None})
    assert [json.loads(it["videos"]) for it in items] == [[{"video_id": IDS[3], "label": None}]]
