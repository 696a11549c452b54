"""The driver's batches on a Delta index (exvad_ray.pipeline.commits): finished videos are gathered
into batches of K videos, or fewer once the oldest has waited T seconds (committed even while no new
video arrives), written by a Ray task and committed in order, each video once."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

from exvad_ray.index import batches, delta
from exvad_ray.pipeline.assemble import PAYLOAD
from exvad_ray.pipeline.commits import BatchCommitter

pytest.importorskip("deltalake")

_spec = importlib.util.spec_from_file_location("batch_rows", Path(__file__).parents[1] / "index" / "test_batches.py")
rows = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rows)


def _row(vid: str) -> dict:
    return {"video_id": vid, "status": "ok", PAYLOAD: batches.pack(rows.video(vid))}


def _batch_numbers(index: str, run: str) -> list[int]:
    return sorted(int(h["exvad.batch"]) for h in delta.open_table(index, "videos").history()
                  if h.get("exvad.run_id") == run)


@pytest.fixture
def index(tmp_path):
    uri = str(tmp_path / "idx")
    batches.create_tables(uri)
    return uri


def test_batches_of_k_each_video_once(ray_local, index):
    vids = rows.ids(7)
    with BatchCommitter(index, "run-a", every=3) as commit:
        for v in vids:
            row = _row(v)
            commit(row)
            assert PAYLOAD not in row  # the summary row the driver keeps is small
    assert commit.committed == 7 and commit.batches == 3 and commit.timed == 0
    assert _batch_numbers(index, "run-a") == [0, 1, 2]
    for table in ("videos", "captions", "segments"):
        assert rows.stored_ids(index, table) == sorted(vids)
    assert rows.stored_ids(index, "snippets") == sorted(vids * 3)
    # a rerun of the same run goes on counting: no batch number is reused
    with BatchCommitter(index, "run-a", every=3) as again:
        again(_row(rows.ids(1)[0]))
    assert _batch_numbers(index, "run-a") == [0, 1, 2, 3]


def test_a_waiting_batch_is_committed_after_t_seconds(ray_local, index):
    first = rows.ids(2)
    commit = BatchCommitter(index, "run-t", every=100, seconds=0.5)
    try:
        for v in first:
            commit(_row(v))
        deadline = time.monotonic() + 60
        while rows.stored_ids(index, "videos") != sorted(first) and time.monotonic() < deadline:
            time.sleep(0.2)  # no row arrives: the timer writes and commits the batch
        assert rows.stored_ids(index, "videos") == sorted(first)
        assert commit.timed == 1 and commit.committed == 2
        late = rows.ids(1)
        commit(_row(late[0]))
    finally:
        commit.close()
    assert rows.stored_ids(index, "videos") == sorted(first + late)
    assert _batch_numbers(index, "run-t") == [0, 1]


def test_a_failed_write_fails_the_run_and_commits_nothing_more(ray_local, index):
    commit = BatchCommitter(index, "run-f", every=2)
    good = rows.ids(2)
    for v in good:
        commit(_row(v))
    commit({"video_id": "x", "status": "ok", PAYLOAD: b"not arrow"})
    with pytest.raises(Exception):
        commit.close()
    assert rows.stored_ids(index, "videos") == sorted(good)
