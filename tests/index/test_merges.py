"""Merging a Delta table's small files ourselves (exvad_ray.index.merges.merge_small_files):
every reader (delta-rs, DuckDB over the file list) sees the same rows, partition values survive
(also ones delta-rs percent-encodes in folder names), the commit is marked as an optimize with no
data change, merged files stay under the size target, files at the target are left alone, the
merged files' ids are cached, a second merge commits nothing; on local disk and on the local S3
server."""

from __future__ import annotations

import json

from exvad_ray import storage
from exvad_ray.index import delta, merges
from test_delta import ids, segment_rows
from test_delta_delete import CAMERAS, _build, _cached_keys, _delta_rows, _duckdb_ids, _keys
from test_delta_delete import index_uri  # noqa: F401 - the fixture (local disk and the S3 server)


def _last_commit(index: str) -> list[dict]:
    log = storage.join(delta.table_uri(index, "segments"), "_delta_log")
    version = delta.open_table(index, "segments").version()
    text = storage.read_bytes(storage.join(log, f"{version:020d}.json")).decode()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_each_folder_becomes_one_file_same_rows(index_uri):  # noqa: F811
    _build(index_uri)
    before_rows, before_ids, old = _delta_rows(index_uri), _duckdb_ids(index_uri), _keys(index_uri)
    assert len(old) == 2 * len(CAMERAS)

    got = merges.merge_small_files(index_uri, "segments")

    assert got == {"numFilesRemoved": 2 * len(CAMERAS), "numFilesAdded": len(CAMERAS)}
    new = _keys(index_uri)
    assert len(new) == len(CAMERAS) and not new & old
    assert _delta_rows(index_uri) == before_rows and _duckdb_ids(index_uri) == before_ids
    actions = _last_commit(index_uri)
    info = next(a["commitInfo"] for a in actions if "commitInfo" in a)
    assert info["exvad.operation"] == "optimize"
    changes = [a[k]["dataChange"] for a in actions for k in ("add", "remove") if k in a]
    assert len(changes) == 3 * len(CAMERAS) and not any(changes)  # no row changed: streaming readers skip it
    assert new <= _cached_keys(index_uri)  # the next reader does not open them to learn their ids
    version = delta.open_table(index_uri, "segments").version()
    assert merges.merge_small_files(index_uri, "segments") == {"numFilesRemoved": 0, "numFilesAdded": 0}
    assert delta.open_table(index_uri, "segments").version() == version  # nothing to merge: no commit


def test_the_size_target_bounds_merged_files_and_leaves_large_ones(index_uri):  # noqa: F811
    _build(index_uri)
    for b in range(2 * len(CAMERAS)):  # a second run: four files per camera folder
        rows, parts = segment_rows(ids(4) * 2, camera=CAMERAS[b % len(CAMERAS)])
        assert delta.commit(index_uri, "segments", "run2", b, delta.write_files(index_uri, "segments", rows, parts))
    sizes = delta.file_sizes([delta.table_uri(index_uri, "segments") + "/" + k for k in sorted(_keys(index_uri))])
    before = _delta_rows(index_uri)
    target = 2 * max(sizes) + 1  # two files to a merged file at most
    got = merges.merge_small_files(index_uri, "segments", target_bytes=target)
    assert got == {"numFilesRemoved": 4 * len(CAMERAS), "numFilesAdded": 2 * len(CAMERAS)}
    assert _delta_rows(index_uri) == before
    # every file is now at or past a target of the smallest file's size: nothing is merged
    smallest = min(delta.file_sizes([delta.table_uri(index_uri, "segments") + "/" + k for k in _keys(index_uri)]))
    assert merges.merge_small_files(index_uri, "segments", target_bytes=smallest) == \
        {"numFilesRemoved": 0, "numFilesAdded": 0}
