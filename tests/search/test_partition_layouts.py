"""The archive job's Delta index keeps `segments` by date and camera (class in the files), its
per-video layout by class, date and camera folders: search by class, camera and date gives the same
segments on both."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from exvad_ray.index import delta, read_table
from exvad_ray.search.engine import SegmentIndex

pytestmark = pytest.mark.slow

COLS = ["segment_id", "video_id", "label", "score", "start_s", "end_s", "camera", "date"]


def test_the_jobs_delta_segments_are_partitioned_by_date_and_camera(built_index):
    index = built_index["index"]
    assert delta.table_partition_cols(index, "segments") == ["date", "camera"]
    files = delta.snapshot_files(index, "segments")
    assert files and not any("class=" in f for f in files)
    stored = {r["segment_id"]: r["class"] for f in files for r in pq.read_table(f, columns=["segment_id", "class"]).to_pylist()}
    served = read_table(index, "segments", ["segment_id", "class", "label"]).to_pylist()
    assert stored == {r["segment_id"]: r["class"] for r in served} and len(stored) >= 4


def test_search_by_class_camera_and_date_is_the_same_on_both_layouts(built_index, built_files_index):
    delta_ix, files_ix = SegmentIndex(built_index["index"]), SegmentIndex(built_files_index["index"])
    assert delta_ix.in_blocks and not files_ix.in_blocks
    classes = delta_ix.known_classes()
    assert classes == files_ix.known_classes()
    rows = read_table(built_index["index"], "segments", ["label", "camera", "date"]).to_pylist()
    cameras, dates = sorted({r["camera"] for r in rows}), sorted({r["date"] for r in rows})
    flagged = sorted({r["label"] for r in rows})
    assert flagged and len(cameras) >= 2
    queries = [{"classes": [c]} for c in classes] + [{"cameras": [c]} for c in cameras] + \
        [{"since": d, "until": d + "T23:59:59"} for d in dates] + \
        [{"classes": [flagged[0]], "cameras": [cameras[0]]}, {"classes": flagged[:2], "since": dates[0]}]
    hits = 0
    for q in queries:
        a = delta_ix.search(limit=1000, **q).select(COLS).to_pylist()
        b = files_ix.search(limit=1000, **q).select(COLS).to_pylist()
        assert a == b, q
        hits += bool(a)
    assert hits >= len(flagged) + len(cameras)  # every flagged class and every camera found something
