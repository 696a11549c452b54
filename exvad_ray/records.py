"""A labelled video as training and evaluation see it (`VideoRecord`), and the label-name rules
both apply. Shared by exvad_ray.train and exvad_ray.eval, which must not import each other's
modules for it (docs/CONTRACTS.md, import graph)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from exvad_ray.errors import ExvadError


@dataclass
class VideoRecord:
    """A labelled video: visual embeddings per snippet, optional explanation feature, weak labels,
    optional temporal ground truth (snippet frames, [start, end), class name) and its split."""

    name: str
    features: np.ndarray  # (T, D) float32
    text_feature: np.ndarray | None  # (D,) float32
    labels: list[str]
    segments: list[tuple[int, int, str]] = field(default_factory=list)
    split: str = "train"
    fps: float | None = None  # the source frame rate, when known (an index's videos table): hours of footage

    @property
    def n_snippets(self) -> int:
        return int(self.features.shape[0])

    @property
    def is_normal(self) -> bool:
        return all(canonical(lab) == "normal" for lab in self.labels)


def normal_labels(labels: Sequence[str] | None) -> bool:
    """Whether a video's labels say it is normal footage: none (a labels row without classes), or
    only "Normal" in any spelling ('normal', 'NORMAL'), as `VideoRecord.is_normal` decides."""
    return all(canonical(str(lab)) == "normal" for lab in (labels or ["Normal"]))


def canonical(label: str) -> str:
    """Case/spacing-insensitive class key: 'Road Accidents' == 'RoadAccidents' == 'road_accidents'."""
    return re.sub(r"[^a-z0-9]", "", label.lower())


def class_index(class_names: Sequence[str]) -> dict[str, int]:
    return {canonical(n): i for i, n in enumerate(class_names)}


def resolve_labels(labels: Iterable[str], class_names: Sequence[str]) -> list[str]:
    """Map label strings onto the label set's spelling; unknown labels are a user error."""
    idx = class_index(class_names)
    out = []
    for lab in labels:
        i = idx.get(canonical(lab))
        if i is None:
            raise ExvadError(f"label {lab!r} is not in the label set ({', '.join(class_names)})")
        out.append(class_names[i])
    return out


def label_vector(labels: Iterable[str], class_names: Sequence[str]) -> np.ndarray:
    """Multi-hot (C,) float32 over the label set; no labels means Normal."""
    vec = np.zeros(len(class_names), np.float32)
    names = resolve_labels(labels, class_names) or [class_names[0]]
    for n in names:
        vec[list(class_names).index(n)] = 1.0
    return vec


def conform(records: Sequence[VideoRecord], class_names: Sequence[str]) -> list[VideoRecord]:
    """Records with labels and segment labels spelled as in the label set (checks them all up front)."""
    out = []
    for r in records:
        segs = [(s, e, resolve_labels([lab], class_names)[0]) for s, e, lab in r.segments]
        out.append(VideoRecord(r.name, r.features, r.text_feature, resolve_labels(r.labels, class_names) or
                               [class_names[0]], segs, r.split, r.fps))
    return out




def split_records(records: Sequence[VideoRecord], split: str) -> list[VideoRecord]:
    return [r for r in records if r.split == split]


def feature_dim(records: Sequence[VideoRecord]) -> int:
    dims = {r.features.shape[1] for r in records if r.features.ndim == 2}
    if len(dims) != 1:
        raise ExvadError(f"videos have feature sizes {sorted(dims)}; one size is needed")
    return dims.pop()
