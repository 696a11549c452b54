"""One in-memory representation of labelled videos for training and evaluation, built from the
archive indexes (snippets + videos Parquet, joined with a labels table on `name`) or from VadCLIP's
released feature layout (importers.py).

Segments are kept in *snippet frames*: 16 per snippet, the convention the field's metrics use
(snippet scores repeated 16 times). Labels-table segments are in source frames; they are rescaled
by n_snippets*16 / n_frames when the two differ (a pipeline that samples at another rate)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from exvad_ray import index, storage
from exvad_ray.errors import ExvadError
from exvad_ray.records import (  # noqa: F401 - re-exported: train's API
    VideoRecord, canonical, class_index, conform, feature_dim, label_vector, resolve_labels, split_records,
)
from exvad_ray.units import SNIPPET_FRAMES

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")

LABELS_SCHEMA = pa.schema([
    ("name", pa.string()),
    ("video_uri", pa.string()),
    ("labels", pa.list_(pa.string())),
    ("split", pa.string()),
    ("segments", pa.list_(pa.struct([("start_frame", pa.int64()), ("end_frame", pa.int64()), ("label", pa.string())]))),
    ("fps", pa.float64()),
    ("n_frames", pa.int64()),
])


# ---------------------------------------------------------------------------------------------
# labels tables

def labels_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """Build a labels table (contract schema) from dicts; missing optional fields become null."""
    norm = []
    for r in rows:
        norm.append({
            "name": r["name"], "video_uri": r.get("video_uri"), "labels": list(r.get("labels") or ["Normal"]),
            "split": r.get("split", "train"),
            "segments": [{"start_frame": int(s["start_frame"]), "end_frame": int(s["end_frame"]), "label": s["label"]}
                         for s in (r.get("segments") or [])],
            "fps": r.get("fps"), "n_frames": r.get("n_frames"),
        })
    return pa.Table.from_pylist(norm, schema=LABELS_SCHEMA)


def read_table(uri: str, columns: list[str] | None = None) -> pa.Table:
    """A Parquet file or (hive-partitioned) directory at any storage URI."""
    fs, path = storage.arrow_filesystem(uri)
    try:
        dataset = pads.dataset(path, filesystem=fs, format="parquet", partitioning="hive")
        if columns is not None:
            missing = [c for c in columns if c not in dataset.schema.names]
            if missing:
                raise ExvadError(f"{uri} lacks column(s) {missing}; has {dataset.schema.names}")
        return dataset.to_table(columns=columns)
    except (FileNotFoundError, OSError) as exc:
        raise ExvadError(f"cannot read Parquet at {uri}: {exc}") from exc


def write_labels(table: pa.Table, uri: str) -> None:
    import pyarrow.parquet as pq

    fs, path = storage.arrow_filesystem(uri)
    parent = path.rsplit("/", 1)[0]
    if parent:
        fs.create_dir(parent, recursive=True)
    pq.write_table(table, path, filesystem=fs)


def read_labels(uri: str) -> pa.Table:
    table = read_table(uri)
    for col in ("name", "labels", "split"):
        if col not in table.column_names:
            raise ExvadError(f"labels table {uri} lacks column {col!r}")
    bad = set(table.column("split").to_pylist()) - set(SPLITS)
    if bad:
        raise ExvadError(f"labels table {uri}: unknown split(s) {sorted(bad)}; use train/val/test")
    return table


def _label_rows(table: pa.Table) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for r in table.to_pylist():
        if r["name"] in rows:
            raise ExvadError(f"labels table has two rows for video {r['name']!r}")
        rows[r["name"]] = r
    return rows


def _segments(row: dict[str, Any], n_snippets: int) -> list[tuple[int, int, str]]:
    segs = row.get("segments") or []
    n_frames = row.get("n_frames")
    scale = 1.0
    if n_frames and n_frames > 0 and abs(n_frames - n_snippets * SNIPPET_FRAMES) > SNIPPET_FRAMES:
        scale = n_snippets * SNIPPET_FRAMES / float(n_frames)
    return [(int(round(s["start_frame"] * scale)), int(round(s["end_frame"] * scale)), s["label"]) for s in segs]


def _index_root(uri: str, table: str) -> str | None:
    """The index folder when `uri` is one of its table folders (``INDEX/<table>``), else None."""
    norm = storage.normalize(uri).rstrip("/")
    if norm.rsplit("/", 1)[-1] != table:
        return None
    return norm[: -len(table) - 1] or None


def _read_index_table(uri: str, table: str, columns: list[str]) -> pa.Table:
    """Columns of an index table: through the index reader (``INDEX/<table>``: schema-checked, any
    schema version), or from a standalone Parquet file/folder with today's column names."""
    root = _index_root(uri, table)
    if root is not None:
        return index.read_table(root, table, columns)
    return read_table(uri, columns)


def _snippet_embeddings(uri: str, video_ids: list[str]) -> dict[str, np.ndarray]:
    root = _index_root(uri, "snippets")
    if root is not None:
        return index.read_snippet_embeddings(root, video_ids)
    table = read_table(uri, ["video_id", "snippet_index", "visual_embedding"])
    table = table.filter(pc.is_in(table.column("video_id"), pa.array(video_ids, pa.string())))
    table = table.sort_by([("video_id", "ascending"), ("snippet_index", "ascending")])
    ids = table.column("video_id").to_numpy(zero_copy_only=False)
    feats = index.embeddings_matrix(table.column("visual_embedding"))
    bounds = np.flatnonzero(ids[1:] != ids[:-1]) + 1 if len(ids) else np.zeros(0, np.int64)
    return {str(ids[s]): np.ascontiguousarray(feats[s:e])
            for s, e in zip(np.r_[0, bounds], np.r_[bounds, len(ids)]) if e > s}


def load_index_records(
    snippets_uri: str,
    videos_uri: str,
    labels_uri: str,
    splits: Sequence[str] | None = None,
) -> list[VideoRecord]:
    """Join the pipeline's indexes with a labels table on `name` (via videos.video_id).
    Videos without a label row are left out (counted in the log)."""
    labels = _label_rows(read_labels(labels_uri))
    videos = _read_index_table(videos_uri, "videos", ["video_id", "name", "explanation_embedding"])
    vid_rows = {}
    for i, (vid, name) in enumerate(zip(videos.column("video_id").to_pylist(), videos.column("name").to_pylist())):
        if name in labels and (splits is None or labels[name]["split"] in splits):
            vid_rows[vid] = (i, name)
    if not vid_rows:
        raise ExvadError(f"no video of {videos_uri} has a label in {labels_uri}"
                         + (f" for split(s) {list(splits)}" if splits else "") + " (joined on `name`)")
    feats_by_id = _snippet_embeddings(snippets_uri, list(vid_rows))
    text_col = videos.column("explanation_embedding").to_pylist()
    records: list[VideoRecord] = []
    for vid, f in feats_by_id.items():
        row_i, name = vid_rows[vid]
        lab = labels[name]
        text = text_col[row_i]
        tf = np.asarray(text, np.float32) if text else None
        records.append(VideoRecord(name, f, tf, list(lab["labels"] or ["Normal"]), _segments(lab, len(f)), lab["split"]))
    missing = len(vid_rows) - len(records)
    unlabelled = videos.num_rows - len(vid_rows)
    log.info("loaded %d labelled videos (%d without snippets, %d videos not selected/unlabelled)",
             len(records), missing, unlabelled)
    records.sort(key=lambda r: r.name)
    return records


# ---------------------------------------------------------------------------------------------
# training rows (fixed length, for Ray Data and the torch loop)

def uniform_pool(features: np.ndarray, length: int) -> np.ndarray:
    """Mean-pool a longer video into `length` bins (VadCLIP's uniform_extract with avg=True)."""
    bounds = np.linspace(0, len(features), length + 1).astype(np.int64)
    out = np.empty((length, features.shape[1]), np.float32)
    for i in range(length):
        a, b = bounds[i], bounds[i + 1]
        out[i] = features[a:b].mean(0) if b > a else features[min(a, len(features) - 1)]
    return out


def training_row(record: VideoRecord, class_names: Sequence[str], length: int,
                 text_dim: int | None = None) -> dict[str, Any]:
    """Fixed-shape row: features pooled/padded to `length`, real length, text, multi-hot label.
    `text_dim` is the explanation feature size (the detector's embed_dim; None = the visual size)."""
    f = np.asarray(record.features, np.float32)
    if len(f) == 0:
        raise ExvadError(f"video {record.name} has no snippets")
    if len(f) > length:
        f, n = uniform_pool(f, length), length
    else:
        n = len(f)
        f = np.concatenate([f, np.zeros((length - n, f.shape[1]), np.float32)])
    d = f.shape[1] if text_dim is None else text_dim
    has_text = record.text_feature is not None
    text = np.asarray(record.text_feature, np.float32) if has_text else np.zeros(d, np.float32)
    if text.shape != (d,):
        raise ExvadError(f"video {record.name}: explanation feature has shape {text.shape}, expected ({d},)")
    lab = label_vector(record.labels, class_names)
    return {"name": record.name, "features": f, "length": n, "text": text, "has_text": has_text,
            "label": lab, "is_anomaly": bool(lab[1:].sum() > 0)}
