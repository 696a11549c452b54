"""`exvad index upgrade` (exvad_ray.index.upgrade): an index of today's per-video layout, written with
the package's own writers, becomes Delta tables holding exactly the rows today's readers serve;
reruns add nothing, an interrupted upgrade goes on without duplicates, an index of schema version 1
comes out under today's names, run manifests become rows of the run log; on local disk and on the
local S3 server."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from exvad_ray import index as idx
from exvad_ray import storage
from exvad_ray.cli import main
from exvad_ray.errors import ExvadError
from exvad_ray.index import batches, deletes, delta, runs
from exvad_ray.index import scorings as sc
from exvad_ray.index.store import write_table_file
from exvad_ray.index.supersede import mark_superseded
from exvad_ray.index.upgrade import STATE_DIR, app_id, scoring_app_id, upgrade

pytest.importorskip("deltalake")

DATA = Path(__file__).parent / "data"
T0 = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.timezone.utc)


def vid(n: int) -> str:
    return str(uuid.UUID(int=n))


def write_video(index: str, v: str, date: str = "2026-11-24", camera: str = "cam-1", snippets: int = 3,
                score: float = 0.5) -> None:
    """A processed video's rows in all four tables, through the index writer (`videos` last)."""
    part = {"date": date, "camera": camera}
    uri = f"s3://archive/{camera}/{date}/{v}.mp4"
    n = snippets
    idx.write_video_tables(index, v, {
        "snippets": (part, {
            "video_id": [v] * n, "uri": [uri] * n, "window_index": [0] * n, "snippet_index": list(range(n)),
            "start_s": [i * 0.64 for i in range(n)], "end_s": [(i + 1) * 0.64 for i in range(n)],
            "frame_index": [16 * i for i in range(n)], "anomaly_score": [score] * n, "class_probs": [None] * n,
            "visual_embedding": [[0.1 * i, score] for i in range(n)], "thumbnail_jpeg": [b"\xff\xd8"] * n}),
        "segments": [({"class": "Fighting", **part}, {
            "segment_id": [f"{v}:0"], "video_id": [v], "uri": [uri], "label": ["Fighting"], "score": [score],
            "class_score": [0.8], "start_s": [0.0], "end_s": [1.28], "first_snippet": [0], "last_snippet": [1],
            "peak_s": [0.64], "start_at": [T0], "end_at": [T0], "explanation": ["two people fight"],
            "thumbnail_jpeg": [b"\xff\xd8"], "visual_embedding": [[0.1, 0.2]], "explanation_embedding": [[0.3, 0.4]]})],
        "captions": (part, {
            "video_id": [v], "window_index": [0], "time_s": [0.0], "caption": ["a street"],
            "clean_caption": ["a street"], "caption_model": ["m"], "window_explanation": ["fight"],
            "explanation_model": ["m"]}),
        "videos": (part, {
            "video_id": [v], "uri": [uri], "name": [v], "size_bytes": [10], "etag": ["e"], "status": ["ok"],
            "duration_s": [n * 0.64], "timing": ["constant"], "fps": [25.0], "n_frames": [16 * n], "width": [224],
            "height": [224], "codec": ["h264"], "n_snippets": [n], "n_windows": [1], "video_score": [score],
            "video_class": ["Fighting"], "class_names": [["Normal", "Fighting"]], "class_scores": [[0.2, 0.8]],
            "n_segments": [1], "explanation": ["fight"], "explanation_embedding": [[0.3, 0.4]],
            "window_explanation_embeddings": [[[0.3, 0.4]]], "visual_model": ["test"], "caption_model": ["m"],
            "explanation_model": ["m"], "detector": ["d"], "label_set": ["ucf"], "recorded_at": [T0],
            "recorded_at_source": ["path"], "run_id": ["r1"], "processed_at": [T0]}),
    })


def write_error(index: str, v: str, date: str, at: dt.datetime, reason: str = "truncated") -> None:
    idx.ERRORS.write(index, v, {"date": date}, {
        "video_id": [v], "uri": [f"s3://archive/cam-1/{v}.mp4"], "size_bytes": [10], "stage": ["decode"],
        "error_type": ["DecodeError"], "reason": [reason], "message": ["ends early"], "detail": [None],
        "run_id": ["r1"], "processed_at": [at]})


def build_index(root: str) -> dict[str, str]:
    """Eight videos over two cameras and two days; one replaced by new content (tombstone); one failed
    and then succeeded; one failed twice, on two days; one failed once. Plus a manifest, settings,
    labels and a scoring pointer (copied as they are)."""
    for i in range(1, 9):
        write_video(root, vid(i), date=f"2026-11-2{4 + i % 2}", camera=f"cam-{1 + i % 2}")
    old, new = vid(3), vid(100)
    write_video(root, new, date="2026-11-25", camera="cam-2", score=0.9)
    mark_superseded(root, {old: (f"s3://archive/cam-2/2026-11-25/{old}.mp4", new)})
    write_error(root, vid(5), "2026-12-01", T0)  # failed, then succeeded (vid(5) has a videos row)
    twice = vid(200)
    write_error(root, twice, "2026-12-01", T0, reason="truncated")
    write_error(root, twice, "2026-12-02", T0 + dt.timedelta(days=1), reason="decoder_crash")  # the current one
    write_error(root, vid(201), "2026-12-02", T0)
    idx.write_manifest(root, {"run_id": "r1", "archive": "s3://archive", "started_at": T0.isoformat(),
                              "args": {}, "summary": None, "versions": {}})
    storage.write_bytes(storage.join(root, "settings.json"), b'{"profile": "lite"}')
    storage.write_bytes(storage.join(root, "labels", "part-0.parquet"), b"labels bytes")
    storage.write_bytes(storage.join(root, "scorings", "CURRENT.json"), b'{"scoring_id": "process"}')
    return {"old": old, "new": new, "twice": twice}


def write_rescoring(index: str, sid: str, old_file_of: str | None = None, replaced: tuple[str, str] | None = None
                    ) -> None:
    """A rescoring in per-video files, as `exvad rescore` writes one on an index of the per-video
    layout (`scorings.file_uri`, the index's file writer, scoring.json): the process scoring's rows
    under scoring id `sid`, scores shifted. `old_file_of`: that video's snippet_scores file lacks the
    `normality` column (a scoring written before it existed: readers see it null). `replaced`: (old,
    new) ids: the new video's rows also as the old one's (scored before its content was replaced)."""
    for table in sc.TABLES:
        rows = sc.read_scoring(index, table, sc.PROCESS)
        if replaced:
            old, new = replaced
            mine = rows.filter(pc.equal(rows.column("video_id"), new))
            mine = mine.set_column(mine.column_names.index("video_id"), "video_id",
                                   pa.array([old] * mine.num_rows, mine.schema.field("video_id").type))
            if "segment_id" in mine.column_names:
                mine = mine.set_column(mine.column_names.index("segment_id"), "segment_id",
                                       pa.array([f"{old}:0"] * mine.num_rows, pa.string()))
            rows = pa.concat_tables([rows, mine.cast(rows.schema)])
        n = rows.num_rows
        rows = rows.set_column(rows.column_names.index("scoring_id"), "scoring_id", pa.array([sid] * n, pa.string()))
        rows = rows.set_column(rows.column_names.index("detector_id"), "detector_id", pa.array([sid] * n, pa.string()))
        score = {"segments": "score", "snippet_scores": "anomaly_score", "videos": "video_score"}[table]
        shifted = pa.array([(x or 0.0) / 2 for x in rows.column(score).to_pylist()], rows.schema.field(score).type)
        rows = rows.set_column(rows.column_names.index(score), score, shifted)
        keys = sc.PARTITIONS[table]
        key_of = [tuple(r.values()) for r in rows.select(["video_id", *keys]).to_pylist()]
        for r in set(key_of):
            mask = [k == r for k in key_of]
            part = rows.filter(pa.array(mask)).select(sc.schema(table).names).cast(sc.schema(table))
            if table == "snippet_scores" and r[0] == old_file_of:
                part = part.drop_columns(["normality"])
            write_table_file(sc.file_uri(index, sid, table, dict(zip(keys, r[1:])), r[0]), part)
    storage.write_bytes(storage.join(sc.scoring_root(index, sid), "scoring.json"),
                        json.dumps({"scoring_id": sid, "detector_uri": f"/models/{sid}.pt"}).encode())


def build_scored_index(root: str) -> dict[str, str]:
    """`build_index` with two rescorings (one with an older file), the second current
    (CURRENT.json, as `scorings.set_current` writes it on this layout), and the files of a rescore
    killed before its scoring.json."""
    made = build_index(root)
    write_rescoring(root, "det-aaaaaaaaaaaa", old_file_of=vid(2), replaced=(made["old"], made["new"]))
    write_rescoring(root, "det-bbbbbbbbbbbb")
    sc.set_current(root, "det-bbbbbbbbbbbb")
    write_table_file(sc.file_uri(root, "det-cccccccccccc", "videos", {"date": "2026-11-24", "camera": "cam-1"}, vid(2)),
                     pa.table({"video_id": [vid(2)]}))
    return made


def assert_scorings_same(src: str, dst: str) -> dict[str, int]:
    counts = {}
    for sid in ("det-aaaaaaaaaaaa", "det-bbbbbbbbbbbb"):
        for table in sc.TABLES:
            want, got = sc.read_scoring(src, table, sid), sc.read_scoring(dst, table, sid)
            assert got.schema == want.schema, (sid, table)
            assert rows_of(got) == rows_of(want), (sid, table)
            assert delta.is_delta(dst, sc.table_path(sid, table))
            counts[f"{sid}/{table}"] = got.num_rows
    return counts


def rows_of(table: pa.Table) -> list[str]:
    """A table's rows as sorted JSON strings (order-free comparison)."""
    def plain(v):
        return v.hex() if isinstance(v, bytes) else v.isoformat() if hasattr(v, "isoformat") else v
    return sorted(json.dumps({k: plain(v) for k, v in r.items()}, sort_keys=True, default=str)
                  for r in table.to_pylist())


def delta_rows(dst: str, table: str) -> pa.Table:
    from deltalake import DeltaTable

    uri = delta.table_uri(dst, table)
    t = pa.table(DeltaTable(uri if storage.is_remote(uri) else storage.normalize(uri),
                            storage_options=delta.storage_options(uri)).to_pyarrow_table())
    return t.select(delta.delta_schema(table).names)


def assert_same_as_served(src: str, dst: str) -> dict[str, int]:
    counts = {}
    for table in idx.VIDEO_TABLES:
        want = idx.read_table(src, table)
        got = delta_rows(dst, table)
        assert got.column_names == want.column_names, table
        assert rows_of(got) == rows_of(want), table
        counts[table] = got.num_rows
    return counts


def versions(dst: str) -> dict[str, int]:
    return {t: delta.open_table(dst, t, create=False).version() for t in idx.VIDEO_TABLES}


def test_upgrade_copies_the_served_rows_and_the_rest(tmp_path):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    made = build_index(src)
    lines: list[str] = []
    res = upgrade(src, dst, block_videos=3, progress=lines.append, every=1)
    counts = assert_same_as_served(src, dst)
    assert counts == {"videos": 8, "snippets": 24, "segments": 8, "captions": 8, "errors": 2}
    assert {t: r.rows for t, r in res.tables.items()} == counts
    assert res.tables["videos"].batches == 3 and res.tables["videos"].files >= 3
    # the replaced video's rows are gone everywhere; the retried error shows its newest row only
    for table in ("videos", "snippets", "segments", "captions"):
        assert made["old"] not in delta_rows(dst, table).column("video_id").to_pylist()
    errors = {r["video_id"]: r for r in delta_rows(dst, "errors").to_pylist()}
    assert set(errors) == {made["twice"], vid(201)} and errors[made["twice"]]["reason"] == "decoder_crash"
    # the rest of the index, byte for byte; tombstones too (the scorings' readers hide replaced videos by them)
    for rel in ("settings.json", "labels/part-0.parquet", f"superseded/{made['old']}.json"):
        assert (Path(dst) / rel).read_bytes() == (Path(src) / rel).read_bytes(), rel
    assert res.copied == 3
    # the run manifest, a row of the run log
    assert runs.read_manifests(dst) == runs.read_manifests(src) and res.runs == 1
    assert not (Path(dst) / "runs").exists()
    # CURRENT.json became the current-scoring table
    assert not (Path(dst) / "scorings" / "CURRENT.json").exists() and delta.is_delta(dst, "scorings/current")
    assert res.current == sc.current_scoring(dst) == "process"
    assert idx.index_version(dst) == idx.SCHEMA_VERSION
    assert any(line.startswith("videos: 8 rows") for line in lines) and "other content: 3 files copied" in lines
    assert "runs: 1 run manifests in run_log (1 written, 0 already there)" in lines
    # the new index's done set is the Delta tables'
    assert set(idx.done_ids(dst, "videos").to_pylist()) == set(idx.read_table(src, "videos").column("video_id").to_pylist())
    # a rerun adds nothing: no commit in any table, same rows
    before = versions(dst)
    again = upgrade(src, dst)
    assert versions(dst) == before
    assert all(r.batches == 0 and r.skipped > 0 for t, r in again.tables.items() if r.rows)
    assert assert_same_as_served(src, dst) == counts


def test_rescorings_become_delta_tables_and_current_the_current_table(tmp_path):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    made = build_scored_index(src)
    lines: list[str] = []
    res = upgrade(src, dst, block_videos=3, progress=lines.append)
    counts = assert_scorings_same(src, dst)
    # every video of the source's scoring, the replaced one too (read_scoring serves it; tombstones hide it)
    assert counts["det-aaaaaaaaaaaa/videos"] == 9 and counts["det-aaaaaaaaaaaa/snippet_scores"] == 27
    assert made["old"] in sc.read_scoring(dst, "videos", "det-aaaaaaaaaaaa").column("video_id").to_pylist()
    old = sc.read_scoring(dst, "snippet_scores", "det-aaaaaaaaaaaa").to_pylist()
    assert {r["normality"] for r in old if r["video_id"] == vid(2)} == {None}
    assert res.tables["scorings/det-aaaaaaaaaaaa/videos"].rows == 9
    assert res.tables["scorings/det-bbbbbbbbbbbb/videos"].batches == 3  # 8 part files in blocks of 3
    ids = sc.read_scoring(src, "videos", "det-aaaaaaaaaaaa").column("video_id").to_pylist()
    per_video = {f"part-{v}.parquet" for v in ids}
    assert not any(f.name in per_video for f in (Path(dst) / "scorings").rglob("*.parquet"))  # no per-video file
    # the manifests as they were; the current scoring now a Delta table, CURRENT.json gone
    for sid in ("det-aaaaaaaaaaaa", "det-bbbbbbbbbbbb"):
        rel = f"scorings/{sid}/scoring.json"
        assert (Path(dst) / rel).read_bytes() == (Path(src) / rel).read_bytes()
    assert sc.current_scoring(dst) == sc.current_scoring(src) == "det-bbbbbbbbbbbb" == res.current
    assert not (Path(dst) / "scorings" / "CURRENT.json").exists() and delta.is_delta(dst, "scorings/current")
    assert [m["scoring_id"] for m in sc.list_scorings(dst) if m["current"]] == ["det-bbbbbbbbbbbb"]
    # the files of a rescore killed before its scoring.json are not carried over, and it is said
    assert not (Path(dst) / "scorings" / "det-cccccccccccc").exists()
    assert any(line.startswith("scorings/det-cccccccccccc: no scoring.json") for line in lines)
    # a rescore of DST with the same detector starts clean: its tables open, its batches count from 0
    sid = "det-aaaaaaaaaaaa"
    sc.create_delta_tables(dst, sid)
    assert batches.next_batch(dst, sid, sc.delta_tables(sid)) == 0
    assert batches.repair(dst, [sid], sc.delta_tables(sid)) == {}
    assert delta.committed_batch(dst, sc.table_path(sid, "videos"), scoring_app_id(src, sid)) == 2  # 9 files
    # a rerun adds nothing: no commit in any table, the current table included
    tables = [sc.table_path(s, t) for s in ("det-aaaaaaaaaaaa", "det-bbbbbbbbbbbb") for t in sc.TABLES]
    tables += [*idx.VIDEO_TABLES, "scorings/current"]
    before = {t: delta.open_table(dst, t, create=False).version() for t in tables}
    again = upgrade(src, dst)
    assert {t: delta.open_table(dst, t, create=False).version() for t in tables} == before
    assert all(r.batches == 0 for r in again.tables.values())
    assert assert_scorings_same(src, dst) == counts


def run_log_version(dst: str) -> int:
    from deltalake import DeltaTable

    return DeltaTable(storage.join(dst, runs.RUN_LOG)).version()


def run_log_rows(dst: str) -> list[tuple[str, int]]:
    from deltalake import DeltaTable

    t = DeltaTable(storage.join(dst, runs.RUN_LOG)).to_pyarrow_table(columns=["run_id", "revision"])
    return sorted((r["run_id"], r["revision"]) for r in t.to_pylist())


def test_run_manifests_become_rows_of_the_run_log_once(tmp_path):
    """Three JSON manifests of a per-video index: in DST, three runs of the run log (one commit),
    no JSON; a rerun appends nothing; a run DST holds that SRC does not is a count mismatch."""
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    build_index(src)
    for i, rid in ((2, "r2"), (3, "r3")):
        idx.write_manifest(src, {"run_id": rid, "archive": "s3://archive", "processing_date": f"2026-12-0{i}",
                                 "first_started_at": (T0 + dt.timedelta(days=i)).isoformat(),
                                 "started_at": (T0 + dt.timedelta(days=i)).isoformat(),
                                 "finished_at": (T0 + dt.timedelta(days=i, hours=1)).isoformat(),
                                 "args": {"archive": "s3://archive", "n": i}, "summary": {"videos_processed": i},
                                 "versions": {"exvad-ray": "0.1.0"}, "attempts": 1})
    (Path(src) / "runs" / "notes.txt").write_text("not a manifest")
    want = runs.read_manifests(src)
    assert [d["run_id"] for d in want] == ["r1", "r2", "r3"] and len(list((Path(src) / "runs").glob("*.json"))) == 3
    lines: list[str] = []
    res = upgrade(src, dst, progress=lines.append)
    assert runs.read_manifests(dst) == want and res.runs == 3
    assert runs.read_manifest(dst, "r2") == want[1]
    assert not list((Path(dst) / "runs").glob("*.json"))  # no JSON manifest in DST
    assert (Path(dst) / "runs" / "notes.txt").read_text() == "not a manifest"  # other files copied as they are
    assert run_log_rows(dst) == [("r1", 1), ("r2", 1), ("r3", 1)]
    log_version = run_log_version(dst)
    assert log_version == 0  # one commit for every run
    assert "runs: 3 run manifests in run_log (3 written, 0 already there)" in lines
    assert idx.read_runs(dst).column("run_id").to_pylist() == ["r1", "r2", "r3"]
    # a rerun: three runs, not six, and no commit
    lines.clear()
    upgrade(src, dst, progress=lines.append)
    assert [d["run_id"] for d in runs.read_manifests(dst)] == ["r1", "r2", "r3"]
    assert run_log_rows(dst) == [("r1", 1), ("r2", 1), ("r3", 1)]
    assert run_log_version(dst) == log_version
    assert "runs: 3 run manifests in run_log (0 written, 3 already there)" in lines
    # a run in DST that SRC does not hold
    idx.write_manifest(dst, {"run_id": "r9"})
    with pytest.raises(ExvadError, match=r"runs: 3 run manifests in .*/src but 4 runs read back from "
                                         r".*/dst/run_log \(not in the source: r9\): remove"):
        upgrade(src, dst)


def test_manifests_of_an_older_schema_version_say_todays_in_the_run_log(tmp_path):
    """An index of schema version 1 with three manifests (none says its version: 1): each a row of
    DST's run log under today's version, the old one in upgraded_from; a rerun adds none."""
    src, dst = str(tmp_path / "index_v1"), str(tmp_path / "dst")
    shutil.copytree(DATA / "index_v1", src)
    (first,) = (Path(src) / "runs").glob("run-*.json")
    doc = json.loads(first.read_text())
    assert "index_schema_version" not in doc
    for rid in ("v1b", "v1c"):
        (Path(src) / "runs" / f"run-{rid}.json").write_text(json.dumps({**doc, "run_id": rid}))
    before = {d["run_id"]: d for d in runs.read_manifests(src)}
    upgrade(src, dst)
    got = {d["run_id"]: d for d in runs.read_manifests(dst)}
    assert set(got) == set(before) and len(got) == 3
    for rid, d in got.items():
        assert d == {**before[rid], "index_schema_version": idx.SCHEMA_VERSION,
                     "upgraded_from": {"index": src, "index_schema_version": 1}}
    assert not list((Path(dst) / "runs").glob("*.json")) and idx.index_version(dst) == idx.SCHEMA_VERSION
    upgrade(src, dst)
    assert len(runs.read_manifests(dst)) == 3 and len(run_log_rows(dst)) == 3


def test_an_interrupted_upgrade_of_rescorings_goes_on_without_duplicates(tmp_path):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    build_scored_index(src)
    calls = 0
    while True:  # killed after each table's first new commit, every time
        calls += 1
        res = upgrade(src, dst, block_videos=4, max_batches=1)
        if all(r.complete for r in res.tables.values()) and res.current is not None:
            break
        assert not (Path(dst) / "scorings" / "current").exists()
    assert calls > 3
    assert_scorings_same(src, dst)
    assert_same_as_served(src, dst)
    assert sc.current_scoring(dst) == "det-bbbbbbbbbbbb"


def test_an_interrupted_upgrade_goes_on_without_duplicates(tmp_path):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    build_index(src)
    first = upgrade(src, dst, block_videos=2, max_batches=1)  # killed after each table's first commit
    assert all(not r.complete and r.batches == 1 for r in first.tables.values())
    assert delta_rows(dst, "videos").num_rows == 2 and not (Path(dst) / "runs").exists()
    # killed again after the record of a block was written but before its commit
    state = Path(dst) / STATE_DIR / "videos.json"
    doc = json.loads(state.read_text())
    doc["batches"].append({"fingerprint": "x", "rows": 99, "files": 2})
    state.write_text(json.dumps(doc))
    res = upgrade(src, dst)  # the block size of the interrupted call is kept
    assert res.tables["videos"].skipped == 1 and res.tables["videos"].batches == 4  # 9 part files (one replaced)
    assert assert_same_as_served(src, dst)["videos"] == 8
    assert delta.committed_batch(dst, "videos", app_id(src)) == 4
    with pytest.raises(ExvadError, match="started with blocks of 2 videos"):
        upgrade(src, dst, block_videos=5)


def test_a_count_mismatch_names_the_table_and_both_counts(tmp_path):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    build_index(src)
    upgrade(src, dst)
    deletes.delete_videos(dst, "captions", [vid(1)])  # a row lost from the Delta table behind the upgrade's back
    with pytest.raises(ExvadError, match=r"captions: 8 rows served in .*/src but 7 in the Delta table .*/dst/captions"):
        upgrade(src, dst)


def test_a_source_changed_under_an_interrupted_upgrade_is_refused(tmp_path):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    build_index(src)
    upgrade(src, dst, block_videos=2, max_batches=1, tables=("videos",))
    write_video(src, vid(0))  # sorts first: every block would shift by one video
    with pytest.raises(ExvadError, match=r"videos: the source .* changed since this upgrade began \(block 0"):
        upgrade(src, dst)


def test_a_compacted_index_with_a_video_rewritten_since_copies_it_once(tmp_path):
    """Compacted files are copied; a video whose part file was rewritten after compaction (a rerun)
    is copied from its part file, not twice."""
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    build_index(src)
    idx.compact(src)
    assert not any("part-" in f for f in idx.list_files(src, "snippets"))
    write_video(src, vid(2), date="2026-11-24", camera="cam-1", score=0.7)  # the rewrite: newer scores
    served = idx.read_table(src, "snippets")
    assert served.num_rows == 24 + 3  # today's readers see both copies
    upgrade(src, dst, block_videos=4)
    got = delta_rows(dst, "snippets")
    assert got.num_rows == 24
    mine = [r["anomaly_score"] for r in got.to_pylist() if r["video_id"] == vid(2)]
    assert mine == pytest.approx([0.7] * 3)
    assert delta_rows(dst, "videos").num_rows == 8


def test_an_index_of_schema_version_1_comes_out_under_todays_names(tmp_path):
    src, dst = str(tmp_path / "index_v1"), str(tmp_path / "dst")
    shutil.copytree(DATA / "index_v1", src)
    assert idx.index_version(src) == 1
    upgrade(src, dst)
    assert_same_as_served(src, dst)
    snippets = delta_rows(dst, "snippets")
    assert "visual_embedding" in snippets.column_names and "clip_embedding" not in snippets.column_names
    assert snippets.column("visual_embedding").null_count == 0
    # the manifests say what the tables are now, and what they were
    (doc,) = runs.read_manifests(dst)
    assert doc["index_schema_version"] == idx.SCHEMA_VERSION and doc["upgraded_from"]["index_schema_version"] == 1
    assert idx.index_version(dst) == idx.SCHEMA_VERSION


def test_upgrade_on_the_local_s3_server(s3_bucket):
    src, dst = f"{s3_bucket}/src", f"{s3_bucket}/dst"
    made = build_scored_index(src)
    res = upgrade(src, dst, block_videos=4)
    counts = assert_same_as_served(src, dst)
    assert_scorings_same(src, dst)
    assert sc.current_scoring(dst) == "det-bbbbbbbbbbbb" and not storage.exists(f"{dst}/scorings/CURRENT.json")
    assert counts["videos"] == 8 and res.tables["errors"].rows == 2
    assert made["old"] not in delta_rows(dst, "videos").column("video_id").to_pylist()
    assert storage.read_bytes(f"{dst}/settings.json") == b'{"profile": "lite"}'
    assert runs.read_manifests(dst) == runs.read_manifests(src) and not storage.exists(f"{dst}/runs/run-r1.json")
    before = versions(dst)
    upgrade(src, dst)
    assert versions(dst) == before
    assert [d["run_id"] for d in runs.read_manifests(dst)] == ["r1"]


def test_cli_upgrade_prints_a_line_per_table(tmp_path, capsys):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    build_index(src)
    assert main(["index", "upgrade", src, "--out", dst]) == 0
    out = capsys.readouterr().out.splitlines()
    assert any(line.split()[:3] == ["snippets", "24", "rows"] for line in out)
    assert out[-1].startswith(f"exvad index upgrade: {src} -> {dst}: 5 Delta tables, 50 rows")
    assert not (Path(dst) / "lease.json").exists()
    assert main(["index", "upgrade", src, "--out", dst, "--json"]) == 0  # a rerun: nothing added
    out = capsys.readouterr().out
    doc = json.loads(out[out.index("\n{") + 1:])
    assert doc["tables"]["videos"] == {**doc["tables"]["videos"], "rows": 8, "batches": 0, "skipped": 1}


def test_cli_bad_inputs_are_one_line_and_exit_2(tmp_path, capsys):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    build_index(src)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    upgrade(src, dst)
    cases = {
        "no index at": [str(tmp_path / "nothing"), "--out", str(tmp_path / "x")],
        "is the source": [src, "--out", src],
        "inside one another": [src, "--out", str(Path(src) / "delta")],
        "not an upgrade of": [src, "--out", str(other)],
        "already holds Delta tables": [dst, "--out", str(tmp_path / "y")],
        "must be at least 1": [src, "--out", str(tmp_path / "z"), "--block-videos", "0"],
    }
    for expect, argv in cases.items():
        assert main(["index", "upgrade", *argv]) == 2, expect
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("exvad index: error: ") and expect in err[0], (expect, err)
    assert (other / "notes.txt").read_text() == "mine" and sorted(p.name for p in other.iterdir()) == ["notes.txt"]


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["index", "upgrade", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "Delta tables" in text and "Safe to rerun after an interruption" in text and "SRC is not modified" in text
