"""One in-memory representation of labelled videos for training and evaluation, built from the
archive indexes (snippets + videos Parquet, joined with the labels table on URI or `name`) or from VadCLIP's
released feature layout (vadclip.py).

Segments are kept in *snippet frames*: 16 per snippet, the convention the field's metrics use
(snippet scores repeated 16 times). Labels-table segments are in source frames; they are rescaled
by n_snippets*16 / n_frames when the two differ (a pipeline that samples at another rate)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads

from exvad_ray import index, storage
from exvad_ray.errors import ExvadError
from exvad_ray.index.labels import SPLITS, LabelLookup, iter_videos, label_lookup  # noqa: F401 - SPLITS re-exported
from exvad_ray.records import (  # noqa: F401 - re-exported: train's API
    VideoRecord, canonical, class_index, conform, feature_dim, label_vector, resolve_labels, split_records,
)
from exvad_ray.units import SNIPPET_FRAMES

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# labels tables

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


def _segments(row: dict[str, Any], n_snippets: int) -> list[tuple[int, int, str]]:
    segs = row.get("segments") or []
    n_frames = row.get("n_frames")
    scale = 1.0
    if n_frames and n_frames > 0 and abs(n_frames - n_snippets * SNIPPET_FRAMES) > SNIPPET_FRAMES:
        scale = n_snippets * SNIPPET_FRAMES / float(n_frames)
    # "Normal" intervals (false alarms) are frames whose ground truth is 0 anyway: not anomaly segments
    return [(int(round(s["start_frame"] * scale)), int(round(s["end_frame"] * scale)), s["label"])
            for s in segs if canonical(s["label"]) != "normal"]


def _index_root(uri: str, table: str) -> str | None:
    """The index folder when `uri` is one of its table folders (``INDEX/<table>``), else None."""
    norm = storage.normalize(uri).rstrip("/")
    if norm.rsplit("/", 1)[-1] != table:
        return None
    return norm[: -len(table) - 1] or None


VIDEO_COLUMNS = ["video_id", "name", "uri", "fps", "explanation_embedding"]  # what a record takes from `videos`


def _labelled_videos(uri: str, lookup: LabelLookup) -> tuple[pa.Table, int]:
    """The videos rows the labels may match (URI or name one of theirs) and how many videos there
    are. An index's table is read a page of files at a time, VIDEO_COLUMNS only (an explanation
    embedding is kilobytes), so the driver holds the labelled videos, never the archive's."""
    root = _index_root(uri, "videos")
    if root is None:
        t = read_table(uri)  # a standalone file: its columns are checked by the caller
        return (lookup.matching(t) if "name" in t.column_names else t), t.num_rows
    parts, n = [], 0
    for t in iter_videos(root, VIDEO_COLUMNS):
        n += t.num_rows
        parts.append(lookup.matching(t))
    return (pa.concat_tables(parts) if parts else index.read_files(root, "videos", [], VIDEO_COLUMNS)), n


def _snippet_embeddings(uri: str, video_ids: list[str]) -> dict[str, np.ndarray]:
    root = _index_root(uri, "snippets")
    if root is not None:
        return index.read_snippet_embeddings(root, video_ids)
    table = read_table(uri, ["video_id", "snippet_index", "visual_embedding"])
    return {vid: cols[0] for vid, cols in
            index.snippet_columns_by_video(table, ["visual_embedding"], video_ids).items()}


def load_index_records(
    snippets_uri: str,
    videos_uri: str,
    labels_uri: str,
    splits: Sequence[str] | None = None,
) -> list[VideoRecord]:
    """Join the pipeline's indexes with the labels table's current view (index.labels) on the
    video's URI, or on `name` for label rows without one. Videos without a label are left out
    (counted in the log)."""
    lookup = label_lookup(labels_uri)
    videos, n_videos = _labelled_videos(videos_uri, lookup)
    for col in ("video_id", "name"):
        if col not in videos.column_names:
            raise ExvadError(f"videos index {videos_uri} lacks column {col!r}")
    uris = videos.column("uri").to_pylist() if "uri" in videos.column_names else [None] * videos.num_rows
    vid_rows = {}
    for i, (vid, name, uri) in enumerate(zip(videos.column("video_id").to_pylist(), videos.column("name").to_pylist(), uris)):
        lab = lookup(name, uri)
        if lab is not None and (splits is None or lab["split"] in splits):
            vid_rows[vid] = (i, name, lab)
    if not vid_rows:
        raise ExvadError(f"no video of {videos_uri} has a label in {labels_uri}"
                         + (f" for split(s) {list(splits)}" if splits else "") + " (joined on URI or `name`)")
    feats_by_id = _snippet_embeddings(snippets_uri, list(vid_rows))
    has_text = "explanation_embedding" in videos.column_names
    fps_col = videos.column("fps").to_pylist() if "fps" in videos.column_names else [None] * videos.num_rows
    text_col = videos.column("explanation_embedding").to_pylist() if has_text else [None] * videos.num_rows
    records: list[VideoRecord] = []
    for vid, f in feats_by_id.items():
        row_i, name, lab = vid_rows[vid]
        text = text_col[row_i]
        tf = np.asarray(text, np.float32) if text else None
        fps = float(fps_col[row_i]) if fps_col[row_i] else None
        records.append(VideoRecord(name, f, tf, list(lab["labels"] or ["Normal"]), _segments(lab, len(f)), lab["split"],
                                   fps))
    missing = len(vid_rows) - len(records)
    unlabelled = n_videos - len(vid_rows)
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
