"""Training data from VadCLIP's released CLIP features (.npy per video and crop, CSV lists
`path,label`), so that users with those features can train and evaluate directly."""

from __future__ import annotations

import io
import logging

import numpy as np

from exvad_ray import storage
from exvad_ray.annotations import (parse_feature_list, parse_ucf_temporal, parse_xd_annotations, read_text,
                                   split_crop, xd_row)
from exvad_ray.errors import ExvadError
from exvad_ray.records import VideoRecord

log = logging.getLogger(__name__)


def _locate(path: str, feature_root: str | None) -> str:
    """The CSVs hold the authors' absolute paths: look under feature_root by class/file, then file."""
    if feature_root is None:
        return path
    parts = path.replace("\\", "/").split("/")
    for tail in (parts[-2:], parts[-1:]):
        cand = storage.join(feature_root, *tail)
        if storage.exists(cand):
            return cand
    raise ExvadError(f"feature file {parts[-1]} not found under {feature_root}")


def _load_npy(uri: str) -> np.ndarray:
    arr = np.load(io.BytesIO(storage.read_bytes(uri)), allow_pickle=False)
    if arr.ndim != 2:
        raise ExvadError(f"{uri}: expected (n_snippets, D) features, got shape {arr.shape}")
    return arr.astype(np.float32, copy=False)


def load_vadclip_records(
    csv_uri: str,
    split: str,
    dataset: str,
    feature_root: str | None = None,
    annotations: str | None = None,
    crops: str = "one",
) -> list[VideoRecord]:
    """Records from a VadCLIP feature list. `dataset` 'ucf' or 'xd' picks how labels are read
    (UCF: class column; XD: codes); `annotations` adds temporal ground truth (UCF
    Temporal_Anomaly_Annotation.txt or XD annotations*.txt). crops='one' keeps the first listed crop
    per video (what VadCLIP tests on), 'all' keeps every crop as its own training video."""
    if dataset not in ("ucf", "xd"):
        raise ExvadError(f"dataset must be 'ucf' or 'xd', not {dataset!r}")
    if crops not in ("one", "all"):
        raise ExvadError(f"crops must be 'one' or 'all', not {crops!r}")
    entries = parse_feature_list(read_text(csv_uri))
    ucf_ann = parse_ucf_temporal(read_text(annotations)) if annotations and dataset == "ucf" else {}
    xd_ann = parse_xd_annotations(read_text(annotations)) if annotations and dataset == "xd" else {}
    seen: set[str] = set()
    records = []
    for path, label in entries:
        name, crop = split_crop(path)
        if crops == "one" and name in seen:
            continue
        seen.add(name)
        feats = _load_npy(_locate(path, feature_root))
        if dataset == "ucf":
            labels = ["Normal" if label.lower().startswith("normal") else label]
            segs = [(s, e, labels[0]) for s, e in ucf_ann.get(name, ("", []))[1]] if labels != ["Normal"] else []
        else:
            row = xd_row(name, split, xd_ann)
            labels = row["labels"]
            segs = [(s["start_frame"], s["end_frame"], s["label"]) for s in row["segments"]]
        rec_name = name if crops == "one" else f"{name}__{crop}"
        records.append(VideoRecord(rec_name, feats, None, labels, segs, split))
    if not records:
        raise ExvadError(f"feature list {csv_uri} lists no features")
    log.info("loaded %d videos from %s", len(records), csv_uri)
    return records
