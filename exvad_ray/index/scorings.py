"""Scorings of an index: which detector's segments and snippet scores a reader sees.

`exvad process` writes the first scoring into the index's own tables (`segments`, `snippets`
anomaly_score/class_probs, `videos` video_score/...): scoring id "process". `exvad rescore` adds
one scoring per detector, without touching those tables:

    INDEX/scorings/<scoring_id>/scoring.json                     manifest (detector, model card, counts)
    INDEX/scorings/<scoring_id>/segments/class=/date=/camera=/part-<video_id>.parquet
    INDEX/scorings/<scoring_id>/snippet_scores/date=/camera=/part-<video_id>.parquet
    INDEX/scorings/<scoring_id>/videos/date=/camera=/part-<video_id>.parquet   (written last per video)
    INDEX/scorings/CURRENT.json                                  {"scoring_id": ...}; absent -> "process"

On a Delta index (`index.is_delta_index`) the three tables are Delta tables at
``INDEX/scorings/<scoring_id>/<table>`` (`segments` created partitioned by date and camera, its class
a column of the files, as the index's own `segments`: `DELTA_PARTITIONS`; one created before keeps
class, date and camera): `exvad rescore` writes a batch of videos
as one file per table and partition and commits it as the archive job does (`index.batches`: app id
= scoring id, `videos` last), so a reader sees a video's scoring whole or not at all. "Current" is
then table state too: ``INDEX/scorings/current``, a Delta table of one row (scoring_id, set_at,
set_by) that `set_current` overwrites in one commit; no side file to race with or go stale.

scoring_id == detector_id == "det-" + the first 12 hex digits of the checkpoint's SHA-256, so a
rescore with the same detector rewrites the same files (idempotent) and two detectors never mix.
Every row carries `scoring_id` and `detector_id`; rescored segments also carry `detector_uri` and
the detector's `model_card` (JSON). `read_scoring(index, table, scoring=None)` reads any scoring
(None: the current one) with the same columns whichever wrote it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from exvad_ray import storage
from exvad_ray.errors import ExvadError

SCORINGS_DIR = "scorings"
PROCESS = "process"
CURRENT = "CURRENT.json"
CURRENT_TABLE = "current"  # a Delta index's current scoring (a Delta table of one row)
TABLES = ("segments", "snippet_scores", "videos")
# each table's partition values (folders of the per-video layout, columns every reader gets)
PARTITIONS = {"segments": ["class", "date", "camera"], "snippet_scores": ["date", "camera"],
              "videos": ["date", "camera"]}
# the partition columns of a scoring's Delta table created now (the rest of PARTITIONS: file columns)
DELTA_PARTITIONS = {"segments": ["date", "camera"], "snippet_scores": ["date", "camera"],
                    "videos": ["date", "camera"]}


#: why a segment was flagged, when a normality model scored it (docs/CONTRACTS.md "evidence"); null otherwise
EVIDENCE = [pa.field("normality", pa.float32()), pa.field("unusual_half", pa.string()),
            pa.field("nearest_video_id", pa.string()), pa.field("nearest_uri", pa.string()),
            pa.field("nearest_snippet", pa.int32()), pa.field("nearest_start_s", pa.float64()),
            pa.field("nearest_camera", pa.string()), pa.field("nearest_similarity", pa.float32()),
            pa.field("normality_bank", pa.string()), pa.field("evidence", pa.string())]


#: -log(1 - score) of a calibrated (normality or fused) scoring's segment, at its most unusual snippet: the order
#: among segments whose float32 score rounds to 1.0 (beyond all normal footage); null in other scorings
SURPRISE = pa.field("surprise", pa.float32(), metadata={
    b"doc": b"-log(1 - score) of a calibrated scoring: the same order without float32's rounding of percentiles "
            b"above about 1 - 6e-8 to 1.0, where footage beyond all normal footage would tie; null otherwise"})


def _ids() -> list[pa.Field]:
    return [pa.field("scoring_id", pa.string(), nullable=False), pa.field("detector_id", pa.string())]


def schema(table: str) -> pa.Schema:
    """Columns stored in a scoring's files (partition columns live in the path)."""
    from exvad_ray.index import arrow_schema

    if table == "segments":
        return pa.schema(list(arrow_schema("segments")) + _ids() + [
            pa.field("detector_uri", pa.string()), pa.field("model_card", pa.string(), metadata={
                b"doc": b"the detector's model_card.json (parent detector, labels seen)"})] + EVIDENCE + [SURPRISE])
    if table == "snippet_scores":
        return pa.schema([pa.field("video_id", pa.string(), nullable=False),
                          pa.field("snippet_index", pa.int32(), nullable=False),
                          pa.field("anomaly_score", pa.float32(), nullable=False),
                          pa.field("class_probs", pa.list_(pa.float32()))] + _ids() +
                         [pa.field("normality", pa.float32()), SURPRISE])
    if table == "videos":
        return pa.schema([pa.field("video_id", pa.string(), nullable=False), pa.field("uri", pa.string()),
                          pa.field("name", pa.string()), pa.field("video_score", pa.float32()),
                          pa.field("video_class", pa.string()), pa.field("class_names", pa.list_(pa.string())),
                          pa.field("class_scores", pa.list_(pa.float32())), pa.field("n_segments", pa.int32()),
                          pa.field("n_snippets", pa.int32())] + _ids() +
                         [pa.field("scored_at", pa.timestamp("us", tz="UTC"))])
    raise ExvadError(f"unknown scoring table {table!r} (one of {', '.join(TABLES)})")


def current_detector(index: str) -> str:
    """The checkpoint behind an index's current scoring (what `--init-from INDEX` starts from)."""
    sid = current_scoring(index)
    if sid != PROCESS:
        return str(manifest(index, sid)["detector_uri"])
    from exvad_ray.index.labels import iter_videos

    dets = {d for t in iter_videos(index, ["detector"]) for d in pc.unique(t.column("detector")).to_pylist() if d}
    real = sorted(d for d in dets if not d.startswith("zero-shot:"))
    if len(real) != 1:
        raise ExvadError(f"the current scoring of {index} has no single detector checkpoint ({sorted(dets) or 'none'}); "
                         "give the model.pt to start from")
    return real[0]


def resolve_detector(uri: str) -> str:
    """A checkpoint URI as given, or, for an index, its current scoring's checkpoint."""
    if uri.endswith(".pt") or storage.exists(storage.join(uri, "model.pt")):
        return uri
    if storage.exists(storage.join(uri, "videos")):
        return current_detector(uri)
    return uri


def scoring_root(index: str, scoring_id: str) -> str:
    return storage.join(index, SCORINGS_DIR, scoring_id)


def table_path(scoring_id: str, table: str) -> str:
    """A scoring table's path under the index (what `index.delta` takes as a table)."""
    return f"{SCORINGS_DIR}/{scoring_id}/{table}"


def delta_tables(scoring_id: str) -> tuple[str, ...]:
    """A scoring's Delta tables in commit order (`videos` last: its row marks a video scored)."""
    return tuple(table_path(scoring_id, t) for t in TABLES)


def create_delta_tables(index: str, scoring_id: str) -> None:
    """Create the scoring's Delta tables that do not exist yet, with the scoring's columns and its
    partition values as string columns, partitioned by `DELTA_PARTITIONS` (the driver does, before
    any task writes; later writes follow the tables' own schema and partitioning)."""
    from exvad_ray.index import delta

    for table in TABLES:
        cols = pa.schema(list(schema(table)) + [pa.field(c, pa.string(), nullable=False) for c in PARTITIONS[table]])
        delta.open_table(index, table_path(scoring_id, table), schema=cols, partition_by=DELTA_PARTITIONS[table])


def compact_tables(index: str) -> list[str]:
    """The tables `exvad compact` compacts: the video tables and, on a Delta index, every
    rescoring's Delta tables and the current-scoring table (paths under the index)."""
    from exvad_ray.index import delta
    from exvad_ray.index.schemas import VIDEO_TABLES

    out = list(VIDEO_TABLES)
    if delta.is_delta(index, "videos"):
        out += [t for m in list_scorings(index) if m["scoring_id"] != PROCESS for t in delta_tables(m["scoring_id"])]
        out.append(f"{SCORINGS_DIR}/{CURRENT_TABLE}")
    return [t for t in out if t in VIDEO_TABLES or delta.is_delta(index, t)]


def delete_videos(index: str, video_ids: Sequence[str]) -> int:
    """Delete these videos' rows from every rescoring's Delta tables (their content was replaced:
    the job deletes them from the video tables too); returns the tables touched. Scorings in
    per-video files are left to the tombstones their readers honour."""
    from exvad_ray.index import delta, deletes

    touched = 0
    if not video_ids:
        return 0
    for m in list_scorings(index):
        for path in delta_tables(m["scoring_id"]) if m["scoring_id"] != PROCESS else ():
            if delta.is_delta(index, path):
                deletes.delete_videos(index, path, video_ids)
                touched += 1
    return touched


def writes_delta(index: str) -> bool:
    """Whether new scorings of the index are Delta tables: on a Delta index, never on one of the
    per-video layout (whose scorings keep their per-video files)."""
    from exvad_ray.index.store import is_delta_index

    return is_delta_index(index)


def file_uri(index: str, scoring_id: str, table: str, values: dict[str, str], video_id: str) -> str:
    part = "/".join(f"{k}={values[k]}" for k in PARTITIONS[table])
    return storage.join(scoring_root(index, scoring_id), table, part, f"part-{video_id}.parquet")


def manifest(index: str, scoring_id: str) -> dict[str, Any]:
    uri = storage.join(scoring_root(index, scoring_id), "scoring.json")
    if not storage.exists(uri):
        raise ExvadError(f"no scoring {scoring_id!r} in {index} (see `exvad rescore --index {index} --list`)")
    return json.loads(storage.read_bytes(uri))


def list_scorings(index: str) -> list[dict[str, Any]]:
    """Every scoring of the index, "process" first, with `current` set on one."""
    fs, path = storage.filesystem(storage.join(index, SCORINGS_DIR))
    found = []
    if fs.exists(path):
        for p in sorted(fs.ls(path, detail=False)):
            sid = p.rstrip("/").rsplit("/", 1)[-1]
            if sid not in (CURRENT, CURRENT_TABLE) and storage.exists(storage.join(index, SCORINGS_DIR, sid, "scoring.json")):
                found.append(manifest(index, sid))
    cur = current_scoring(index)
    out = [{"scoring_id": PROCESS, "detector": "as recorded in the videos table (`exvad process`)"}] + found
    for m in out:
        m["current"] = m["scoring_id"] == cur
    return out


CURRENT_SCHEMA = pa.schema([pa.field("scoring_id", pa.string(), nullable=False),
                            pa.field("set_at", pa.timestamp("us", tz="UTC"), nullable=False),
                            pa.field("set_by", pa.string())])


def current_scoring(index: str) -> str:
    """The scoring readers see by default: the Delta table ``scorings/current`` when there is one,
    else ``scorings/CURRENT.json`` (the per-video layout's, or a Delta index's set before the
    table), else "process"."""
    from exvad_ray.index import delta

    path = f"{SCORINGS_DIR}/{CURRENT_TABLE}"
    if delta.is_delta(index, path):
        rows = delta.open_table(index, path, create=False).to_pyarrow_table(columns=["scoring_id"])
        if rows.num_rows:
            return str(rows.column("scoring_id")[0].as_py())
    uri = storage.join(index, SCORINGS_DIR, CURRENT)
    if not storage.exists(uri):
        return PROCESS
    return str(json.loads(storage.read_bytes(uri))["scoring_id"])


def set_current(index: str, scoring_id: str, set_by: str | None = None) -> None:
    """Make `scoring_id` what readers see by default. On a Delta index one commit overwrites the
    one row of ``scorings/current`` (readers see the old or the new scoring, never a torn file);
    on the per-video layout ``CURRENT.json`` is rewritten as before. `set_by`: who set it (default
    user@host)."""
    if scoring_id != PROCESS:
        manifest(index, scoring_id)  # must exist
    now = dt.datetime.now(dt.timezone.utc)
    if not writes_delta(index):
        doc = {"scoring_id": scoring_id, "set_at": now.isoformat(timespec="seconds")}
        storage.write_bytes(storage.join(index, SCORINGS_DIR, CURRENT), json.dumps(doc).encode())
        return
    from deltalake import CommitProperties, write_deltalake

    from exvad_ray.index import delta

    row = pa.table({"scoring_id": [scoring_id], "set_at": [now], "set_by": [set_by or _who()]}, schema=CURRENT_SCHEMA)
    uri = delta.table_uri(index, f"{SCORINGS_DIR}/{CURRENT_TABLE}")
    try:
        write_deltalake(storage.normalize(uri), row, mode="overwrite", storage_options=delta.storage_options(uri),
                        commit_properties=CommitProperties(custom_metadata={"exvad.operation": "set_current"}))
    except Exception as exc:  # noqa: BLE001 - delta-rs errors: storage trouble, in one line
        raise delta._storage_error(uri, exc) from exc


def _who() -> str:
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in this environment
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def find_segment(index: str, segment_id: str, scoring: str | None = None) -> dict[str, Any]:
    """A segment by id (from `scoring`, default: any scoring of the index, current first), with its
    video's fps, n_frames and name: what `index.labels.record_feedback` needs."""
    from exvad_ray.index.labels import iter_videos, video_facts

    next(iter_videos(index, ["video_id"], page=1), None)  # a clear error when there is no index (one file read)
    order = [scoring] if scoring else [current_scoring(index)] + [m["scoring_id"] for m in list_scorings(index)]
    for sid in dict.fromkeys(order):
        table = read_scoring(index, "segments", sid, video_ids=[segment_id.rsplit(":", 1)[0]])  # its video's rows
        table = table.select([c for c in table.column_names if c != "thumbnail_jpeg"])
        for r in table.filter(pc.equal(table.column("segment_id"), segment_id)).to_pylist():
            return {**r, **video_facts(index, r["video_id"], r["uri"])}
    raise ExvadError(f"no segment {segment_id!r} in {index}")


def read_scoring(index: str, table: str, scoring: str | None = None, columns: list[str] | None = None,
                 video_ids: Sequence[str] | None = None) -> pa.Table:
    """`segments`, `snippet_scores` or `videos` of one scoring (default: the current one), with
    `scoring_id`, `detector_id` and the partition columns. Only `columns` are read (the stored
    tables hold embeddings and thumbnails no caller of a scoring needs all of), and with
    `video_ids` only those videos' rows: the driver never holds a whole table to use a part."""
    index = storage.normalize(index)
    sid = scoring or current_scoring(index)
    if sid == PROCESS:
        t = _read_process(index, table, columns, video_ids)
    else:
        t = _read_rescored(index, sid, table, columns, video_ids)
    return t.select(columns) if columns is not None else t


def _read_rescored(index: str, sid: str, table: str, columns: list[str] | None = None,
                   video_ids: Sequence[str] | None = None) -> pa.Table:
    manifest(index, sid)
    full = pa.schema(list(schema(table)) + [pa.field(c, pa.string()) for c in PARTITIONS[table]])
    if columns is not None:
        unknown = [c for c in columns if c not in full.names]
        if unknown:
            raise ExvadError(f"scoring table {table} has no column(s) {unknown}")
    from exvad_ray.index import delta

    root = storage.join(scoring_root(index, sid), table)
    empty = full.empty_table() if columns is None else full.empty_table().select(columns)
    if not storage.exists(root):
        return empty
    fs, path = storage.arrow_filesystem(root)
    part = pads.partitioning(pa.schema([(c, pa.string()) for c in PARTITIONS[table]]), flavor="hive")
    if delta.is_delta(index, table_path(sid, table)):  # the snapshot's files, never the folder's
        files = [storage.arrow_filesystem(f)[1] for f in delta.snapshot_files(index, table_path(sid, table))]
        if not files:
            return empty
        ds = pads.dataset(files, schema=full, format="parquet", filesystem=fs, partitioning=part,
                          partition_base_dir=path)
    else:
        ds = pads.dataset(path, schema=full, format="parquet", filesystem=fs, partitioning=part,
                          exclude_invalid_files=False, ignore_prefixes=[".", "_"])
    where = None if video_ids is None else pc.field("video_id").isin(pa.array(sorted(set(video_ids)), pa.string()))
    return ds.to_table(columns=columns, filter=where)


def _read_process(index: str, table: str, columns: list[str] | None = None,
                  video_ids: Sequence[str] | None = None) -> pa.Table:
    """The scoring `exvad process` wrote, in the same columns as a rescoring's (only `columns`, only
    `video_ids`' rows when given)."""
    from exvad_ray.index import arrow_schema, partition_cols, read_table, read_video_rows

    if table not in ("videos", "snippet_scores", "segments"):
        schema(table)  # raises
    want = pa.schema(list(schema(table)) + [pa.field(c, pa.string()) for c in PARTITIONS[table]])
    source = {"videos": "videos", "snippet_scores": "snippets", "segments": "segments"}[table]
    stored = set(arrow_schema(source).names) | set(partition_cols(source))
    need = want.names if columns is None else [c for c in columns if c in want.names]
    read = list(dict.fromkeys(["video_id"] + [c for c in need if c in stored]
                              + (["processed_at"] if "scored_at" in need and table == "videos" else [])))

    def rows(name: str, cols: list[str]) -> pa.Table:
        return read_table(index, name, cols) if video_ids is None else read_video_rows(index, name, video_ids, cols)

    t = rows(source, read)
    det: dict[str, Any] = {}
    if {"detector_id", "detector_uri"} & set(need):
        videos = t if table == "videos" and "detector" in t.column_names else rows("videos", ["video_id", "detector"])
        det = dict(zip(videos.column("video_id").to_pylist(), videos.column("detector").to_pylist()))
    n = t.num_rows
    ids = {"scoring_id": pa.array([PROCESS] * n, pa.string()),
           "detector_id": pa.array([det.get(v) for v in t.column("video_id").to_pylist()], pa.string())}
    if table == "segments":
        ids |= {"detector_uri": ids["detector_id"], "model_card": pa.nulls(n, pa.string())}
    if table == "videos" and "processed_at" in t.column_names:
        ids["scored_at"] = t.column("processed_at")
    fields = [f for f in want if f.name in need]
    cols = [ids[f.name] if f.name in ids else t.column(f.name).cast(f.type) if f.name in t.column_names
            else pa.nulls(n, f.type) for f in fields]  # evidence: null in a scoring without a normality model
    return pa.Table.from_arrays(cols, schema=pa.schema(fields))


def scores_by_name(index: str, scoring: str, names: set[str]) -> tuple[list[str], dict[str, tuple[Any, Any]]]:
    """The stored per-snippet scores of the named videos in one scoring (what `exvad evaluate --scoring`
    and the demo evaluate, no model run): (class names, {name: (anomaly scores (T,), class probabilities
    (T, C), the scores' unsaturated order (T,) or None)}): a calibrated scoring stores its percentiles'
    surprises beside them, which rank footage beyond all normal footage that float32 percentiles tie
    at 1. The videos are found by name a page of files at a time (never the whole table as rows). A
    name that is not unique in the index, or a scoring that mixes class lists, is an error."""
    import numpy as np

    from exvad_ray.index.labels import iter_videos, rows_matching
    from exvad_ray.index.tables import snippet_columns_by_video

    wanted, no_uri = pa.array(sorted(names), pa.string()), pa.array([], pa.string())
    named = {v for t in iter_videos(index, ["video_id", "name"])
             for v in rows_matching(t, no_uri, wanted).column("video_id").to_pylist()}
    videos = read_scoring(index, "videos", scoring, ["video_id", "name", "class_names"],
                          video_ids=sorted(named)).to_pylist()
    ids: dict[str, str] = {}
    class_names: list[str] | None = None
    for v in videos:
        if v["name"] not in names:
            continue
        if v["name"] in ids and ids[v["name"]] != v["video_id"]:
            raise ExvadError(f"video name {v['name']!r} is not unique in {index}; evaluate it with --checkpoint")
        ids[v["name"]] = v["video_id"]
        if class_names is None:
            class_names = list(v["class_names"] or [])
        elif list(v["class_names"] or []) != class_names:
            raise ExvadError(f"scoring {scoring!r} mixes class lists ({class_names} and {v['class_names']})")
    if not ids or not class_names:
        raise ExvadError(f"scoring {scoring!r} of {index} scored none of the {len(names)} videos asked for")
    cols = ["anomaly_score", "class_probs", "surprise"]
    snips = read_scoring(index, "snippet_scores", scoring, ["video_id", "snippet_index", *cols],
                         video_ids=list(ids.values()))
    by_id = snippet_columns_by_video(snips, cols, list(ids.values()))
    out = {}
    for name, vid in ids.items():
        scores, probs, surprise = by_id.get(vid, (np.zeros(0), np.zeros((0, len(class_names))), np.zeros(0)))
        order = np.asarray(surprise, np.float64)  # null (NaN) in scorings that do not store it
        order = None if len(order) == 0 or np.isnan(order).any() else order
        out[name] = (np.asarray(scores, np.float32), np.asarray(probs, np.float32).reshape(-1, len(class_names)), order)
    return class_names, out


def scoring_localization(index: str, scoring: str) -> dict[str, Any]:
    """The flagging rule a scoring was made with (`LocalizationConfig` fields): a rescoring's manifest, or
    for `exvad process`'s own scoring the settings the index was built with."""
    if scoring == PROCESS:
        from exvad_ray.index.runs import SETTINGS_FILE

        uri = storage.join(index, SETTINGS_FILE)
        return (json.loads(storage.read_bytes(uri)).get("localization") or {}) if storage.exists(uri) else {}
    return manifest(index, scoring).get("localization") or {}
