"""Reads of some videos' rows on a Delta index without the whole table: `read_video_rows` opens only
the files the id cache names (the other files, garbled, are never read), `video_facts` finds one
video by id or URI, `iter_videos` gives the current rows a page of files at a time, exactly the
rows and order of the whole-table read."""

from __future__ import annotations

import pyarrow as pa
import pytest

from exvad_ray import index as idx
from exvad_ray.index import delta, idmap
from exvad_ray.index.labels import iter_videos, rows_matching, video_facts
from exvad_ray.index.supersede import mark_superseded
from test_batches import batch_index

pytest.importorskip("deltalake")


def _index(tmp_path, n_batches: int = 4, per: int = 4) -> tuple[str, list[str]]:
    return batch_index(tmp_path, n_batches, per)


def test_rows_of_known_ids_are_read_from_their_files_only(tmp_path):
    index, vids = _index(tmp_path)
    want = [vids[1], vids[13]]  # in the first and the last batch's file
    before = idx.read_video_rows(index, "videos", want, ["video_id", "uri"])
    holding = {f for f, vs in idmap.by_file(*idmap.file_rows(index, "videos")) if set(vs) & set(want)}
    others = [f for f in delta.snapshot_files(index, "videos") if f not in holding]
    assert len(holding) == 2 and len(others) == 2
    for f in others:  # a reader that opened these would fail
        with open(f, "r+b") as fh:
            fh.write(b"garbage!" * 4)
    got = idx.read_video_rows(index, "videos", want + ["not-indexed"], ["video_id", "uri"])
    assert got.to_pylist() == before.to_pylist() and sorted(got.column("video_id").to_pylist()) == sorted(want)
    assert video_facts(index, vids[13], None) == {"fps": None, "n_frames": None, "name": "a"}
    assert idx.read_video_rows(index, "videos", [], ["uri"]).num_rows == 0


def test_iter_videos_gives_the_whole_reads_current_rows_in_its_order(tmp_path):
    index, vids = _index(tmp_path)
    mark_superseded(index, {vids[2]: (f"/a/{vids[2]}.mp4", "new-id")})
    whole = idx.read_table(index, "videos", ["video_id", "uri", "name"])
    pages = list(iter_videos(index, ["uri", "name"], page=1))
    assert len(pages) == len(idx.list_files(index, "videos"))
    assert pa.concat_tables(pages).to_pylist() == whole.select(["uri", "name"]).to_pylist()
    assert vids[2] not in whole.column("video_id").to_pylist()
    assert video_facts(index, None, f"/a/{vids[5]}.mp4")["name"] == "a"
    with pytest.raises(Exception, match="is not in the videos table"):
        video_facts(index, vids[2], f"/a/{vids[2]}.mp4")


def test_rows_matching_keeps_rows_named_by_uri_or_name():
    t = pa.table({"uri": ["/a", None, "/c", "/d"], "name": ["a", "b", None, "d"]})
    keep = rows_matching(t, pa.array(["/a", "/c"]), pa.array(["b", "x"]))
    assert keep.column("name").to_pylist() == ["a", "b", None]
    assert rows_matching(t.drop_columns(["uri"]), pa.array([], pa.string()), pa.array(["d"])).num_rows == 1
