"""The labels table: the one reader and writer (docs/CONTRACTS.md, "labels").

A labels table is append-only: every import, every synthetic archive and every analyst verdict
adds a batch; none is ever rewritten, so the full history stays readable
(`read_labels(uri, current=False)`). What training and evaluation use is the *current view*
(`read_labels(uri)`), one row per video:

- import rows (source "synth", "import:ucf", "import:xd", "import:csv", ...): per video (its
  `video_uri` when known, else its `name`) the newest row gives labels, split and segments;
- feedback rows (source "feedback", one per verdict on a flagged segment, keyed by `segment_id`):
  the newest verdict per segment wins; "confirmed" adds a segment with its class (the video
  becomes anomalous with that class), "false-alarm" adds a "Normal" interval.

Segments are in source frames, [start_frame, end_frame).

Three layouts, told apart by what is at the URI (local or S3):

- a Delta Lake table (a ``_delta_log`` in the folder): what a NEW labels table is (the URI does not
  exist yet, or is an empty folder). Why: the labels table usually lives beside the archive
  (``s3://archive/footage/annotations/labels``) and grows by one batch per verdict; a reader takes
  the current snapshot from the log instead of listing the folder, and a half-written batch is
  never seen (its file is only in the table once its commit is). One batch = one data file, named
  ``<UTC time>-<source>-<batch id>.parquet`` as before, added in one commit; a `batch_id` is the
  commit's application transaction (``labels-batch:<id>``, version 0), so a batch already in the
  log is not written again without reading any data file.
- a folder of Parquet files without a log (tables written before labels became Delta): read by
  listing the folder and appended to as files, exactly as before; it is never converted behind
  the user's back (another engine's vacuum of a Delta log put in that folder would delete every
  file the log does not know, i.e. the whole history).
- a single Parquet file (archives written before labels were folders): read as a table with one
  batch; it cannot grow.

A folder that is none of these (files, but neither a log nor Parquet files) is refused in one line.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import logging
import math
import posixpath
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from exvad_ray import storage
from exvad_ray.errors import ExvadError
from exvad_ray.index import delta

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
VERDICTS = ("confirmed", "false-alarm")
NORMAL = "Normal"
FEEDBACK = "feedback"
DELTA_LOG = "_delta_log"
APP_PREFIX = "labels-batch:"  # application transaction id of a batch_id (module doc)

SEGMENT_TYPE = pa.struct([("start_frame", pa.int64()), ("end_frame", pa.int64()), ("label", pa.string())])
LABELS_SCHEMA = pa.schema([
    ("name", pa.string()),
    ("video_uri", pa.string()),
    ("labels", pa.list_(pa.string())),
    ("split", pa.string()),
    ("segments", pa.list_(SEGMENT_TYPE)),
    ("fps", pa.float64()),
    ("n_frames", pa.int64()),
])
HISTORY_FIELDS = [
    pa.field("source", pa.string()),
    pa.field("added_at", pa.timestamp("us", tz="UTC")),
    pa.field("author", pa.string()),
    pa.field("segment_id", pa.string()),
    pa.field("verdict", pa.string()),
]
SCHEMA = pa.schema(list(LABELS_SCHEMA) + HISTORY_FIELDS)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def video_name(uri: str) -> str:
    """The `name` of a video (as the videos table has it): file name without extension."""
    return posixpath.splitext(uri.replace("\\", "/").rsplit("/", 1)[-1])[0]


# ----------------------------------------------------------------------------------- building


def make_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """A labels batch (full schema) from dicts; missing optional fields become null, no labels
    means ["Normal"], no split means "train"."""
    out = []
    for r in rows:
        segs = [{"start_frame": int(s["start_frame"]), "end_frame": int(s["end_frame"]), "label": str(s["label"])}
                for s in (r.get("segments") or [])]
        out.append({
            "name": r["name"], "video_uri": r.get("video_uri"), "labels": list(r.get("labels") or [NORMAL]),
            "split": r.get("split") or "train", "segments": segs,
            "fps": None if r.get("fps") is None else float(r["fps"]),
            "n_frames": None if r.get("n_frames") is None else int(r["n_frames"]),
            **{f.name: r.get(f.name) for f in HISTORY_FIELDS},
        })
    return pa.Table.from_pylist(out, schema=SCHEMA)


def _conform(table: pa.Table) -> pa.Table:
    """Any labels-like table -> the full schema (absent history columns are null)."""
    cols = {}
    for f in SCHEMA:
        if f.name in table.column_names:
            cols[f.name] = table.column(f.name).cast(f.type)
        else:
            cols[f.name] = pa.nulls(table.num_rows, f.type)
    return pa.table(cols, schema=SCHEMA)


def validate(table: pa.Table, where: str) -> None:
    """Clear errors for rows no reader could use."""
    for col in ("name", "labels", "split"):
        if col not in table.column_names:
            raise ExvadError(f"labels table {where} lacks column {col!r}")
    if table.column("name").null_count:
        raise ExvadError(f"labels table {where}: every row needs a name")
    bad = set(table.column("split").to_pylist()) - set(SPLITS)
    if bad:
        raise ExvadError(f"labels table {where}: unknown split(s) {sorted(map(str, bad))}; use train/val/test")
    if "verdict" in table.column_names:
        bad = set(table.column("verdict").drop_null().to_pylist()) - set(VERDICTS)
        if bad:
            raise ExvadError(f"labels table {where}: unknown verdict(s) {sorted(bad)}; use {'/'.join(VERDICTS)}")
    if "segments" in table.column_names:
        for name, segs in zip(table.column("name").to_pylist(), table.column("segments").to_pylist()):
            for s in segs or []:
                if not 0 <= s["start_frame"] < s["end_frame"]:
                    raise ExvadError(f"labels table {where}: video {name}: segment "
                                     f"[{s['start_frame']}, {s['end_frame']}) is empty or negative")


# ----------------------------------------------------------------------------------- writing


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_") or "x"


def _layout(uri: str) -> tuple[str, list[str]]:
    """What is at `uri`: ("file", [uri]) a single Parquet file, ("delta", []) a Delta table,
    ("folder", files) a folder of Parquet files (oldest first: names start with the UTC time of the
    append), ("new", []) nothing yet or an empty folder. Anything else is an ExvadError."""
    fs, path = storage.filesystem(uri)
    try:
        fs.invalidate_cache(path)  # a listing cached before another writer (delta-rs) added files
        if not fs.exists(path):
            return "new", []
        if fs.isfile(path):
            return "file", [uri]
        names = [p.rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)]
    except Exception as exc:  # noqa: BLE001 - network errors are the user's to fix
        raise ExvadError(f"cannot list labels table {uri}: {exc}") from exc
    if DELTA_LOG in names:
        return "delta", []
    files = sorted(storage.join(uri, n) for n in names if n.endswith(".parquet") and not n.startswith("."))
    if files:
        return "folder", files
    visible = sorted(n for n in names if not n.startswith("."))
    if not visible:
        return "new", []
    shown = ", ".join(visible[:3]) + (", ..." if len(visible) > 3 else "")
    raise ExvadError(f"{uri} is not a labels table (it holds {shown}: neither a Delta log nor Parquet files); "
                     "give a new or empty folder for a new labels table")


def _files(uri: str) -> list[str]:
    """The Parquet files of a labels folder without a log, oldest first ([] for anything else)."""
    kind, files = _layout(uri)
    return files if kind == "folder" else []


def _open_delta(uri: str, create: bool) -> Any:
    """The Delta labels table at `uri` (a `deltalake.DeltaTable`), created with SCHEMA when absent
    and `create` (two first writers: the first create wins, the other opens it)."""
    from deltalake import CommitProperties, DeltaTable

    opts = delta.storage_options(uri)
    try:
        if DeltaTable.is_deltatable(uri, storage_options=opts):
            return DeltaTable(uri, storage_options=opts)
        if not create:
            raise ExvadError(f"no labels table at {uri}")
        try:
            return DeltaTable.create(uri, SCHEMA, storage_options=opts, name="labels",
                                     commit_properties=CommitProperties(custom_metadata=_commit_metadata()))
        except Exception:  # noqa: BLE001 - created by another writer meanwhile
            if DeltaTable.is_deltatable(uri, storage_options=opts):
                return DeltaTable(uri, storage_options=opts)
            raise
    except ExvadError:
        raise
    except Exception as exc:  # noqa: BLE001 - delta-rs errors: storage trouble, in one line
        raise _delta_error(uri, exc) from exc


def _delta_error(uri: str, exc: Exception) -> ExvadError:
    if storage.is_unreachable(exc):
        return storage.unavailable(uri, exc)
    return ExvadError(f"labels table {uri}: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:300]}")


def _commit_metadata(**extra: str) -> dict[str, str]:
    from exvad_ray import __version__

    return {"exvad.version": __version__, **extra}


def append_labels(uri: str, table: pa.Table, *, source: str | None = None, author: str | None = None,
                  added_at: dt.datetime | None = None, batch_id: str | None = None) -> str:
    """Add `table` (labels rows; history columns optional) to the labels table at `uri` as one new
    batch, one data file ``<UTC time>-<source>-<batch id>.parquet``; returns that file's URI (the
    batch's rows, readable as Parquet). A new table is a Delta table (module doc); a folder of
    Parquet files without a log grows by the file alone. `source`/`author` fill rows that lack
    them; `added_at` defaults to now. With `batch_id`, a batch already written under that id is not
    written again (a retried or repeated write, e.g. `exvad synth --overwrite`): the URI of its file
    is returned (the table's URI if that file is gone from a Delta table, e.g. compacted by another
    engine). Two writers racing with one batch id may both write it (one writer per batch id)."""
    root = storage.normalize(uri)
    kind, files = _layout(root)
    if kind == "file":
        raise ExvadError(f"{uri} is a single Parquet file, which cannot grow; labels tables are folders: "
                         f"import into a new folder (exvad labels import --from {uri} ...)")
    if table.num_rows == 0:
        raise ExvadError("no labels to add")
    t = _conform(table)
    when = added_at or utcnow()
    fill = {"source": source, "author": author, "added_at": when}
    for col, value in fill.items():
        if value is None:
            continue
        arr = t.column(col)
        filled = pa.array([value if v is None else v for v in arr.to_pylist()], type=SCHEMA.field(col).type)
        t = t.set_column(t.schema.get_field_index(col), col, filled)
    if t.column("source").null_count:
        raise ExvadError("every labels row needs a source (synth, import:<format>, feedback)")
    validate(t, uri)
    sources = sorted(set(t.column("source").to_pylist()))
    stamp = when.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    suffix = f"-{_slug(batch_id)}.parquet" if batch_id is not None else None
    name = f"{stamp}-{_slug('+'.join(sources))}-{_slug(batch_id) if batch_id else uuid.uuid4().hex[:12]}.parquet"
    if kind == "folder":
        if suffix:
            done = [f for f in files if f.endswith(suffix)]
            if done:
                return done[0]
        target = storage.join(root, name)
        from exvad_ray.index.store import write_table_file  # atomic: readers never see half a file

        write_table_file(target, t)
        return target
    return _append_delta(root, t, name, batch_id, sources)


def _append_delta(root: str, t: pa.Table, name: str, batch_id: str | None, sources: list[str]) -> str:
    """One batch into the Delta labels table at `root` (created if new): its file, then one commit
    that adds it (with the batch id as application transaction). A file written but never
    committed (a writer killed between the two) is in no snapshot, so no reader sees it."""
    from deltalake import CommitProperties, Transaction
    from deltalake.transaction import AddAction

    table = _open_delta(root, create=True)
    app = APP_PREFIX + batch_id if batch_id is not None else None
    if app is not None and table.transaction_version(app) is not None:
        suffix = f"-{_slug(batch_id or '')}.parquet"
        done = sorted(f for f in table.file_uris() if f.endswith(suffix))
        return storage.normalize(done[0]) if done else root
    target = storage.join(root, name)
    fs, path = storage.arrow_filesystem(target)
    try:
        pq.write_table(t, path, filesystem=fs, compression="zstd")
        size = fs.get_file_info(path).size
        add = AddAction(path=name, size=int(size), partition_values={},
                        modification_time=int(utcnow().timestamp() * 1000), data_change=True,
                        stats=json.dumps(delta.file_stats(t)))
        meta = _commit_metadata(**{"exvad.labels_sources": "+".join(sources)},
                                **({"exvad.batch_id": batch_id} if batch_id is not None else {}))
        table.create_write_transaction(
            [add], mode="append", schema=table.schema(),
            commit_properties=CommitProperties(custom_metadata=meta,
                                               app_transactions=[Transaction(app_id=app, version=0)] if app else None))
    except Exception as exc:  # noqa: BLE001
        raise _delta_error(root, exc) from exc
    return target


def batch_digest(table: pa.Table, exclude: Sequence[str] = ("added_at",)) -> str:
    """Content digest of a batch (for `batch_id`: same rows -> same id)."""
    t = _conform(table)
    t = t.drop_columns([c for c in exclude if c in t.column_names])
    buf = io.BytesIO()
    pq.write_table(t, buf, compression="none")
    return hashlib.sha1(buf.getvalue()).hexdigest()[:16]


# ----------------------------------------------------------------------------------- reading


def read_history(uri: str) -> pa.Table:
    """Every row ever added, oldest first (full schema): a Delta table's current snapshot (its
    files from the log, never a listing), a folder's files, or the single file."""
    root = storage.normalize(uri)
    kind, files = _layout(root)
    if kind == "delta":
        try:
            files = sorted(storage.normalize(f) for f in _open_delta(root, create=False).file_uris())
        except ExvadError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise _delta_error(root, exc) from exc
    elif kind == "new":
        raise ExvadError(f"no labels table at {uri} (a Delta table or a folder of Parquet files, e.g. from "
                         f"`exvad labels import` or `exvad synth`)")
    parts = []
    for f in files:  # in name order: the UTC time of the append (ties in added_at keep it)
        try:
            with storage.open_file(f) as fh:
                t = pq.read_table(fh)
        except ExvadError:
            raise
        except Exception as exc:  # noqa: BLE001 - a corrupt file names itself
            raise ExvadError(f"cannot read labels file {f}: {exc}") from exc
        validate(t, f)
        parts.append(_conform(t))
    table = pa.concat_tables(parts) if parts else SCHEMA.empty_table()
    order = sorted(range(table.num_rows), key=lambda i: _time_key(table.column("added_at")[i].as_py()))
    return table.take(pa.array(order, pa.int64()))


def _time_key(value: dt.datetime | None) -> float:
    return -math.inf if value is None else value.timestamp()


def read_labels(uri: str, current: bool = True) -> pa.Table:
    """The labels table at `uri`: its current view (one row per video), or with current=False
    every row ever added (history, oldest first). Both have the full schema (SCHEMA)."""
    history = read_history(uri)
    return current_view(history) if current else history


def video_key(row: dict[str, Any]) -> str:
    return row.get("video_uri") or row["name"]


def current_view(history: pa.Table) -> pa.Table:
    """Fold history rows (oldest first) into one row per video, by the rules in the module doc."""
    rows = history.to_pylist()
    base: dict[str, dict[str, Any]] = {}
    verdicts: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["source"] == FEEDBACK:
            verdicts[r["segment_id"] or f"{video_key(r)}#{len(verdicts)}"] = r  # newest wins
        else:
            base[video_key(r)] = dict(r)  # newest import wins
    by_name: dict[str, list[str]] = {}
    for key, r in base.items():
        by_name.setdefault(r["name"], []).append(key)
    for r in verdicts.values():
        key = video_key(r)
        if key not in base:
            # an import keyed by name only (lists without URIs) is the same video as a verdict on it
            named = [k for k in by_name.get(r["name"], []) if base[k]["video_uri"] in (None, key)]
            if len(named) == 1:
                key = named[0]
                if base[key]["video_uri"] is None:
                    base[key]["video_uri"] = r["video_uri"]
            else:
                base[key] = {**r, "labels": [NORMAL], "segments": [], "split": r["split"] or "train"}
                by_name.setdefault(r["name"], []).append(key)
        row = base[key]
        row["segments"] = list(row["segments"] or []) + list(r["segments"] or [])
        if r["verdict"] == "confirmed":
            cls = [lab for lab in r["labels"] if lab != NORMAL]
            labels = [lab for lab in (row["labels"] or []) if lab != NORMAL]
            row["labels"] = labels + [c for c in cls if c not in labels]
        row["fps"] = row["fps"] or r["fps"]
        row["n_frames"] = row["n_frames"] or r["n_frames"]
        if _time_key(r["added_at"]) > _time_key(row["added_at"]):
            row["added_at"], row["author"] = r["added_at"], r["author"]
    out = []
    for row in base.values():
        row["labels"] = row["labels"] or [NORMAL]
        row["segment_id"] = row["verdict"] = None
        out.append(row)
    out.sort(key=lambda r: (r["name"], r["video_uri"] or ""))
    return pa.Table.from_pylist(out, schema=SCHEMA)


# ----------------------------------------------------------------------------------- feedback


def seconds_to_frames(start_s: float, end_s: float, fps: float) -> tuple[int, int]:
    """[start_s, end_s) -> the source frames it covers, [floor, ceil); times within 1/1000 frame of
    a frame boundary (rounded decimals) snap to it."""
    def snap(v: float, fn: Any) -> int:
        r = round(v)
        return int(r) if abs(v - r) < 1e-3 else int(fn(v))

    return max(0, snap(start_s * fps, math.floor)), snap(end_s * fps, math.ceil)


def feedback_row(segment: dict[str, Any], verdict: str, cls: str | None = None, author: str | None = None,
                 split: str | None = None) -> dict[str, Any]:
    """A feedback row for a flagged segment (a row of the index's segments table, with the video's
    `fps` and, if known, `n_frames`): its [start_s, end_s) becomes frames."""
    if verdict not in VERDICTS:
        raise ExvadError(f"verdict must be one of {', '.join(VERDICTS)}, not {verdict!r}")
    for key in ("segment_id", "start_s", "end_s"):
        if segment.get(key) is None:
            raise ExvadError(f"segment lacks {key!r}")
    uri = segment.get("video_uri") or segment.get("uri")
    if not uri:
        raise ExvadError("segment lacks the video's uri")
    fps = segment.get("fps")
    if not fps or fps <= 0:
        raise ExvadError(f"segment {segment['segment_id']}: the video's frame rate is unknown "
                         "(pass the segment with `fps`, or index=URI)")
    n_frames = segment.get("n_frames")
    start, end = seconds_to_frames(float(segment["start_s"]), float(segment["end_s"]), float(fps))
    if n_frames:
        end = min(end, int(n_frames))
    if end <= start:
        raise ExvadError(f"segment {segment['segment_id']} is empty ([{segment['start_s']}, {segment['end_s']}) s)")
    if verdict == "confirmed":
        label = cls or segment.get("label")
        if not label or label == NORMAL:
            raise ExvadError("a confirmed segment needs an anomaly class (--class)")
    else:
        label = NORMAL
    return {"name": segment.get("name") or video_name(uri), "video_uri": uri, "labels": [label],
            "split": split, "segments": [{"start_frame": start, "end_frame": end, "label": label}],
            "fps": float(fps), "n_frames": n_frames, "source": FEEDBACK, "author": author,
            "segment_id": str(segment["segment_id"]), "verdict": verdict}


def record_feedback(labels_uri: str, segment: dict[str, Any], verdict: str, cls: str | None = None,
                    author: str | None = None, index: str | None = None) -> dict[str, Any]:
    """Record an analyst's verdict on a flagged segment: appends one feedback row (history kept;
    the newest verdict on a segment wins in the current view). `segment` is a segments-table row
    (segment_id, uri, start_s, end_s, label) plus the video's `fps`; without `fps`, `index` is read
    for it. Returns the row written."""
    seg = dict(segment)
    if not seg.get("fps") and index:
        seg.update(video_facts(index, seg.get("video_id"), seg.get("uri") or seg.get("video_uri")))
    row = feedback_row(seg, verdict, cls, author)
    append_labels(labels_uri, make_table([row]))
    return row


def video_facts(index: str, video_id: str | None, uri: str | None) -> dict[str, Any]:
    """fps, n_frames and name of one video from the index's videos table: by its id from the files
    the id cache names (a verdict must not read the whole table), else by its URI a page at a time."""
    for r in _video_rows(index, video_id, uri):
        return {"fps": r["fps"], "n_frames": r["n_frames"], "name": r["name"]}
    raise ExvadError(f"video {video_id or uri} is not in the videos table of {index}")


def _video_rows(index: str, video_id: str | None, uri: str | None) -> Iterator[dict[str, Any]]:
    """The current videos rows of this id, then those of this URI (read only while wanted)."""
    cols = ["video_id", "uri", "name", "fps", "n_frames"]
    if video_id:
        yield from videos_by_id(index, [video_id], cols).to_pylist()
    if uri:
        want = pa.array([uri], pa.string())
        for t in iter_videos(index, cols):
            yield from t.filter(pc.is_in(t.column("uri"), value_set=want)).to_pylist()


def videos_by_id(index: str, video_ids: Iterable[str], columns: list[str]) -> pa.Table:
    """The current rows of these videos (a verdict's one, a normality bank's few thousand), these
    columns, in the table's order, read from the files the id cache says hold them
    (`store.read_video_rows`): never the whole table on the driver."""
    from exvad_ray.index.store import read_video_rows
    from exvad_ray.index.supersede import current_rows

    root = storage.normalize(index)
    with _reading(index, "videos"):
        return current_rows(root, "videos", read_video_rows(root, "videos", video_ids, columns))


def iter_videos(index: str, columns: list[str], page: int = 256) -> Iterator[pa.Table]:
    """The current rows of an index's videos table, these columns only, a page of files at a time,
    in `read_index_table`'s order: a driver matching labels keeps what matched, never the whole
    table (1e7 videos: ~2 GB of strings)."""
    from exvad_ray.index import store
    from exvad_ray.index.supersede import current_rows, superseded_ids

    cols, root = list(dict.fromkeys(["video_id", *columns])), storage.normalize(index)
    with _reading(index, "videos"):
        gone, version = superseded_ids(root), store.index_version(root)
        pages = store.iter_table_files(root, "videos", page)
    while True:
        with _reading(index, "videos"):
            files = next(pages, None)
            if files is None:
                return
            t = current_rows(root, "videos", store.read_files(root, "videos", files, cols, version), gone=gone)
        yield t.select(columns)


def rows_matching(t: pa.Table, uris: pa.Array, names: pa.Array) -> pa.Table:
    """The rows of `t` whose `uri` is one of `uris` or whose `name` is one of `names` (a table
    without a `uri` column: by name only), filtered in Arrow before any row becomes Python."""
    hit = pc.is_in(t.column("name"), value_set=names)
    if "uri" in t.column_names:
        hit = pc.or_(hit, pc.is_in(t.column("uri"), value_set=uris))
    return t.filter(pc.fill_null(hit, False))


@contextlib.contextmanager
def _reading(index: str, table: str) -> Iterator[None]:
    """A missing index or an unreadable table as one line (`read_index_table`'s errors)."""
    if not storage.exists(storage.join(index, "videos")):
        raise ExvadError(f"no index at {index} (no videos table; run `exvad process` first)")
    try:
        yield
    except ExvadError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ExvadError(f"cannot read the {table} table of {index}: {exc}") from exc


def read_index_table(index: str, table: str, columns: list[str] | None = None) -> pa.Table:
    """One table of a pipeline index (with its partition columns)."""
    from exvad_ray.index.supersede import read_table

    if not storage.exists(storage.join(index, "videos")):
        raise ExvadError(f"no index at {index} (no videos table; run `exvad process` first)")
    try:
        return read_table(storage.normalize(index), table, columns)
    except ExvadError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ExvadError(f"cannot read the {table} table of {index}: {exc}") from exc


def label_lookup(labels_uri: str, strict: bool = True) -> LabelLookup:
    """Label row (current view) of a video: by its URI, else by `name` when that is unambiguous (rows from
    lists without URIs, or an index without a `uri` column). Several rows for one name and no URI to tell
    them apart: an error when `strict` (training must not guess), else no label (calibration skips it)."""
    return LabelLookup(read_labels(labels_uri).to_pylist(), strict)


class LabelLookup:
    """`label_lookup`'s callable. `uris` and `names` are the only keys it can match, so that a reader
    of the index keeps just the rows with one of them (`matching`) and never the whole table."""

    def __init__(self, rows: list[dict[str, Any]], strict: bool) -> None:
        self.strict = strict
        self.by_uri: dict[str, dict[str, Any]] = {}
        self.by_name: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            if r["video_uri"]:
                self.by_uri[r["video_uri"]] = r
            self.by_name.setdefault(r["name"], []).append(r)
        self.uris = pa.array(sorted(self.by_uri), pa.string())
        # a None name is a key too (a null matches a null in `pc.is_in`)
        self.names = pa.array(sorted(self.by_name, key=lambda n: (n is None, n or "")), pa.string())

    def __call__(self, name: str, uri: str | None) -> dict[str, Any] | None:
        if uri and uri in self.by_uri:
            return self.by_uri[uri]
        cands = [r for r in self.by_name.get(name, []) if not (uri and r["video_uri"])]
        if len(cands) > 1 and self.strict:
            raise ExvadError(f"labels table has {len(cands)} rows for video {name!r} and no URI to tell them apart")
        return cands[0] if len(cands) == 1 else None

    def matching(self, t: pa.Table) -> pa.Table:
        """The rows of `t` (videos rows: name, uri) this lookup may give a label; the others get none."""
        return rows_matching(t, self.uris, self.names)
