"""A Delta index's `segments` table partitioned by date and camera, its class a column of the files
(a class x date x camera partition held about one row, so compaction had nothing to merge), while a
Delta `segments` created with class, date and camera folders keeps being read, searched, appended
to and compacted with its own partitioning; the per-video layout keeps its class folders."""

from __future__ import annotations

import datetime as dt
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_batches import _rows

from exvad_ray import storage
from exvad_ray.cli import main
from exvad_ray.index import batches, delta, read_table, scorings, write_video_tables
from exvad_ray.index.schemas import arrow_schema, partition_cols
from exvad_ray.search.engine import SegmentIndex

pytest.importorskip("deltalake")

T0 = dt.datetime(2026, 11, 24, 8, 0, tzinfo=dt.timezone.utc)
OLD = ["class", "date", "camera"]  # an older Delta `segments`'s partitioning


def seg_cols(vid: str, k: int, label: str, score: float) -> dict:
    """One segment's columns (the `segments` schema), the k-th of its video."""
    start = T0 + dt.timedelta(minutes=10 * k)
    return {"segment_id": [f"{vid}:{k}"], "video_id": [vid], "uri": [f"/a/{vid}.mp4"], "label": [label],
            "score": [score], "class_score": [0.5], "start_s": [float(k)], "end_s": [k + 1.0],
            "first_snippet": [k], "last_snippet": [k], "peak_s": [k + 0.5], "start_at": [start],
            "end_at": [start + dt.timedelta(seconds=1)], "explanation": [f"{label} seen"],
            "thumbnail_jpeg": [b"\xff\xd8"], "visual_embedding": [[1.0, float(k)]],
            "explanation_embedding": [[0.5, 0.5]]}


def video(vid: str, labels: list[str], camera: str = "cam-1", date: str = "2026-11-24") -> dict:
    """One finished video's tables as the assembler makes them: its segments one item per class."""
    part = {"date": date, "camera": camera}
    snippets = _rows("snippets", vid, 2, uri=f"/a/{vid}.mp4")
    snippets["snippet_index"] = [0, 1]
    segs = [({"class": label, **part}, seg_cols(vid, k, label, 0.5 + 0.1 * k)) for k, label in enumerate(labels)]
    out = {"snippets": (part, snippets), "captions": (part, _rows("captions", vid)),
           "videos": (part, _rows("videos", vid, uri=f"/a/{vid}.mp4", name=vid, status="ok"))}
    return {**out, "segments": segs} if segs else out  # no segments: no item (as the assembler)


# the archive: several classes in one camera-day, two cameras, two days
PLAN = [(["Fighting", "Fire"], "cam-1", "2026-11-24"), (["Fire"], "cam-1", "2026-11-24"),
        (["Explosion", "Fighting"], "cam-2", "2026-11-24"), (["Fighting"], "cam-1", "2026-11-25"),
        ([], "cam-2", "2026-11-25"), (["Fire", "Explosion", "Fighting"], "cam-1", "2026-11-24")]


def build(index: str, per_batch: int = 2, old_style: bool = False) -> list[str]:
    """The PLAN's videos written and committed by the job's batch writer, `per_batch` a batch; with
    `old_style` into a `segments` table created beforehand with class, date and camera folders."""
    if old_style:
        create_old_style(index, "segments")
    batches.create_tables(index)
    vids = [str(uuid.uuid4()) for _ in PLAN]
    items = [video(v, labels, camera, date) for v, (labels, camera, date) in zip(vids, PLAN)]
    for b, start in enumerate(range(0, len(items), per_batch)):
        chunk = items[start:start + per_batch]
        batches.commit_batch(index, "run-1", b, batches.write_batch(index, chunk), vids[start:start + per_batch])
    return vids


def create_old_style(index: str, table: str, schema: pa.Schema | None = None) -> None:
    """A Delta table as an earlier version created it: partitioned by class, date and camera."""
    from deltalake import DeltaTable

    uri = delta.table_uri(index, table)
    DeltaTable.create(storage.normalize(uri), schema or delta.delta_schema("segments"), partition_by=OLD,
                      storage_options=delta.storage_options(uri))


def expected(vids: list[str]) -> list[dict]:
    """Every segment of the PLAN: (segment id, class, date, camera)."""
    return by_id([{"segment_id": f"{v}:{k}", "class": label, "date": date, "camera": camera}
                  for v, (labels, camera, date) in zip(vids, PLAN) for k, label in enumerate(labels)])


def served(index: str) -> list[dict]:
    return sorted(read_table(index, "segments", ["segment_id", "class", "date", "camera"]).to_pylist(),
                  key=lambda r: r["segment_id"])


def by_id(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: r["segment_id"])


def test_a_new_delta_segments_table_is_partitioned_by_date_and_camera(tmp_path):
    index = str(tmp_path / "idx")
    vids = build(index)
    meta = delta.open_table(index, "segments", create=False).metadata()
    assert list(meta.partition_columns) == ["date", "camera"] == delta.table_partition_cols(index, "segments")
    assert delta.table_partition_cols(index, "videos") == ["date", "camera"]
    assert delta.table_partition_cols(index, "errors") == ["date"]
    files = delta.snapshot_files(index, "segments")
    assert files and not any("class=" in f for f in files)
    stored = pa.concat_tables([pq.read_table(f) for f in files])
    assert stored.column_names == arrow_schema("segments").names + ["class"]  # class in the files
    assert sorted(zip(stored.column("segment_id").to_pylist(), stored.column("class").to_pylist())) == \
        sorted((r["segment_id"], r["class"]) for r in expected(vids))
    # readers: the same columns in the same place as before, the class of every segment
    whole = read_table(index, "segments")
    assert whole.column_names == arrow_schema("segments").names + partition_cols("segments")
    assert served(index) == expected(vids)
    # a camera-day's batch file holds its classes together: fewer files than class x camera-day
    assert len(files) < len({(r["class"], r["date"], r["camera"]) for r in expected(vids)})


def test_class_values_select_files_by_statistics_and_folders_exactly(tmp_path):
    """`snapshot_files(partitions=)`: a class the table keeps in its files selects the files that
    may hold it (their statistics), date and camera select folders exactly."""
    index = str(tmp_path / "idx")
    vids = build(index, per_batch=6)  # one batch: one file per camera-day with segments
    assert len(delta.snapshot_files(index, "segments")) == 3
    fire = delta.snapshot_files(index, "segments", partitions={"class": "Fire"})
    assert all("/date=2026-11-24/camera=cam-1/" in f for f in fire) and len(fire) == 1
    assert delta.snapshot_files(index, "segments", partitions={"class": "Arson"}) == []
    cam2 = delta.snapshot_files(index, "segments", partitions={"camera": "cam-2", "date": "2026-11-24"})
    rows = pa.concat_tables([pq.read_table(f) for f in cam2])
    assert sorted(rows.column("segment_id").to_pylist()) == sorted(
        r["segment_id"] for r in expected(vids) if (r["camera"], r["date"]) == ("cam-2", "2026-11-24"))


def test_an_old_style_delta_segments_table_is_read_searched_and_appended_to(tmp_path):
    """Created with class, date and camera folders (an earlier version's): the batch writer appends
    with those folders, every reader gives the same rows as on a new table, class pruning is exact."""
    old, new = str(tmp_path / "old"), str(tmp_path / "new")
    vids = build(old, old_style=True)
    assert delta.table_partition_cols(old, "segments") == OLD
    files = delta.snapshot_files(old, "segments")
    assert files and all("/segments/class=" in f for f in files)
    assert all("class" not in pq.read_table(f).column_names for f in files)  # the folder holds it
    assert served(old) == expected(vids)
    fire = delta.snapshot_files(old, "segments", partitions={"class": "Fire"})
    assert fire and all("/class=Fire/" in f for f in fire)
    # another run appends to it: still its own partitioning
    more = str(uuid.uuid4())
    adds = batches.write_batch(old, [video(more, ["Fire", "Smoke"], "cam-3")])
    assert all(a["path"].startswith("class=") for a in adds["segments"])
    batches.commit_batch(old, "run-2", 0, adds, [more])
    assert list(delta.open_table(old, "segments", create=False).metadata().partition_columns) == OLD
    got = served(old)
    assert [r for r in got if r["segment_id"].startswith(more)] == [
        {"segment_id": f"{more}:0", "class": "Fire", "date": "2026-11-24", "camera": "cam-3"},
        {"segment_id": f"{more}:1", "class": "Smoke", "date": "2026-11-24", "camera": "cam-3"}]
    # the same videos in a new table: the same search answers for every filter
    build_same(new, vids)
    batches.commit_batch(new, "run-2", 0, batches.write_batch(new, [video(more, ["Fire", "Smoke"], "cam-3")]), [more])
    assert served(new) == got
    assert_same_search(SegmentIndex(old), SegmentIndex(new), queries=QUERIES + [{"classes": ["Smoke"]},
                                                                                {"cameras": ["cam-3"]}])


def build_same(index: str, vids: list[str], old_style: bool = False) -> None:
    """The PLAN's videos under the given ids (the same rows in another index)."""
    if old_style:
        create_old_style(index, "segments")
    batches.create_tables(index)
    items = [video(v, labels, camera, date) for v, (labels, camera, date) in zip(vids, PLAN)]
    batches.commit_batch(index, "run-1", 0, batches.write_batch(index, items), vids)


QUERIES = [{}, {"classes": ["Fire"]}, {"classes": ["fighting", "Explosion"]}, {"cameras": ["cam-2"]},
           {"classes": ["Fighting"], "cameras": ["cam-1"]}, {"since": "2026-11-25"},
           {"until": "2026-11-25", "classes": ["Explosion"]}, {"classes": ["Fire"], "min_score": 0.55}]


def assert_same_search(*indexes: SegmentIndex, queries: list[dict] = QUERIES) -> None:
    cols = ["segment_id", "video_id", "label", "score", "camera", "date", "start_at"]
    for q in queries:
        answers = [ix.search(limit=1000, evidence=False, **q).select(cols).to_pylist() for ix in indexes]
        assert all(a == answers[0] for a in answers), q
    for ix in indexes:
        assert ix.known_classes() == indexes[0].known_classes()
        with pytest.raises(Exception, match="unknown class 'Arson'"):
            ix.search(classes=["Arson"])
    assert indexes[0].search(classes=["Fire"], limit=1000).num_rows >= 3


def test_search_is_the_same_on_both_delta_partitionings_and_the_per_video_layout(tmp_path):
    new, old, files = (str(tmp_path / n) for n in ("new", "old", "files"))
    vids = build(new)
    build_same(old, vids, old_style=True)
    for v, (labels, camera, date) in zip(vids, PLAN):  # the per-video layout: class folders, as before
        item = video(v, labels, camera, date)
        write_video_tables(files, v, {t: x for t, x in item.items() if t in ("segments", "videos")})
    seg_files = [f for f in storage.filesystem(files)[0].find(storage.join(files, "segments")) if f.endswith(".parquet")]
    assert seg_files and all("/segments/class=" in f for f in seg_files)
    ixs = [SegmentIndex(u) for u in (new, old, files)]
    assert [ix.in_blocks for ix in ixs] == [True, True, False]
    assert ixs[0].known_classes() == ["Explosion", "Fighting", "Fire"]
    assert_same_search(*ixs)
    seg = ixs[0].segment(f"{vids[0]}:1")
    assert seg["class"] == "Fire" and seg["label"] == "Fire"
    assert ixs[1].segment(f"{vids[0]}:1")["class"] == ixs[2].segment(f"{vids[0]}:1")["class"] == "Fire"


def test_compact_leaves_one_segments_file_per_camera_day(tmp_path, capsys):
    """Several classes in one camera-day, several batches: `exvad compact` merges the camera-day's
    segments into one file (a class x camera-day partition of an older table stays a file each)."""
    index, old = str(tmp_path / "idx"), str(tmp_path / "old")
    vids = build(index, per_batch=1)
    days = {(r["date"], r["camera"]) for r in expected(vids)}
    before = delta.snapshot_files(index, "segments")
    assert len(before) > len(days)
    assert main(["compact", index, "--retention-hours", "0"]) == 0
    capsys.readouterr()
    after = delta.snapshot_files(index, "segments")
    per_day = {}
    for f in after:
        key = tuple(p.split("=", 1)[1] for p in f.split("/segments/", 1)[1].split("/")[:2])
        per_day[key] = per_day.get(key, 0) + 1
    assert per_day == {d: 1 for d in days}
    assert served(index) == expected(vids)
    cam1 = [f for f in after if "/date=2026-11-24/camera=cam-1/" in f]
    assert sorted(set(pq.read_table(cam1[0]).column("class").to_pylist())) == ["Explosion", "Fighting", "Fire"]
    assert main(["compact", index, "--z-order", "--retention-hours", "0"]) == 0
    assert served(index) == expected(vids) and len(delta.snapshot_files(index, "segments")) == len(days)

    build_same(old, vids, old_style=True)
    batches.commit_batch(old, "run-1", 1, batches.write_batch(old, [video(str(uuid.uuid4()), ["Fire"])]), [])
    assert main(["compact", old, "--retention-hours", "0", "--z-order"]) == 0
    classes = {(r["class"], r["date"], r["camera"]) for r in served(old)}
    assert len(delta.snapshot_files(old, "segments")) == len(classes)
    assert SegmentIndex(old).search(classes=["Fire"], limit=100).num_rows == \
        SegmentIndex(index).search(classes=["Fire"], limit=100).num_rows + 1


def test_rescoring_segments_tables_old_and_new(tmp_path):
    """A rescoring's `segments` on a Delta index is created by date and camera, class in its files;
    one created with class folders keeps them; both read back the same through `read_scoring`."""
    import json

    index = str(tmp_path / "idx")
    vids = build(index, per_batch=6)
    rows = {t: ([], []) for t in ("segments",)}
    for v, (labels, camera, date) in zip(vids, PLAN):
        for k, label in enumerate(labels):
            cols = {**seg_cols(v, k, label, 0.9), "scoring_id": ["det-new"], "detector_id": ["det-new"]}
            full = scorings.schema("segments")
            rows["segments"][0].append(pa.table({f.name: cols.get(f.name, [None]) for f in full}, schema=full))
            rows["segments"][1].append({"class": label, "date": date, "camera": camera})
    got = {}
    for sid, old in (("det-new", False), ("det-old", True)):
        storage.write_bytes(storage.join(scorings.scoring_root(index, sid), "scoring.json"),
                            json.dumps({"scoring_id": sid, "detector_uri": "/m.pt"}).encode())
        if old:
            full = pa.schema(list(scorings.schema("segments")) + [pa.field(c, pa.string(), nullable=False) for c in OLD])
            create_old_style(index, scorings.table_path(sid, "segments"), full)
        scorings.create_delta_tables(index, sid)
        want = OLD if old else ["date", "camera"]
        assert delta.table_partition_cols(index, scorings.table_path(sid, "segments")) == want
        assert delta.table_partition_cols(index, scorings.table_path(sid, "videos")) == ["date", "camera"]
        at = scorings.schema("segments").get_field_index("scoring_id")
        chunks = [t.set_column(at, t.schema.field(at), pa.array([sid] * t.num_rows)) for t in rows["segments"][0]]
        adds = batches.write_rows(index, {"segments": (chunks, rows["segments"][1])}, prefix=f"scorings/{sid}/")
        assert all(a["path"].startswith("class=") == old for a in adds["segments"])
        adds = {scorings.table_path(sid, t): a for t, a in adds.items()}  # keyed by path, as the committer does
        batches.commit_batch(index, sid, 0, adds, vids, tables=scorings.delta_tables(sid))
        t = scorings.read_scoring(index, "segments", sid, columns=["segment_id", "class", "date", "camera"])
        got[sid] = sorted(t.to_pylist(), key=lambda r: r["segment_id"])
        ix = SegmentIndex(index, scoring=sid)
        assert sorted(ix.search(classes=["Fire"], limit=100).column("segment_id").to_pylist()) == sorted(
            r["segment_id"] for r in expected(vids) if r["class"] == "Fire")
    assert got["det-new"] == got["det-old"] == expected(vids)


def test_upgrade_writes_segments_by_date_and_camera(tmp_path):
    """`exvad index upgrade` of a per-video index (class folders): its Delta `segments` is the
    job's kind, the class of each folder a column of the files, and search gives the same answers."""
    from exvad_ray.index.upgrade import upgrade

    src, dst = str(tmp_path / "files"), str(tmp_path / "lake")
    vids = [str(uuid.uuid4()) for _ in PLAN]
    for v, (labels, camera, date) in zip(vids, PLAN):
        write_video_tables(src, v, video(v, labels, camera, date))
    upgrade(src, dst, block_videos=2, progress=lambda *_: None)
    assert delta.table_partition_cols(dst, "segments") == ["date", "camera"]
    assert not any("class=" in f for f in delta.snapshot_files(dst, "segments"))
    assert served(dst) == served(src) == expected(vids)
    assert_same_search(SegmentIndex(src), SegmentIndex(dst))
