"""Synthetic CLIP-like feature sets with known temporal ground truth: for tests and benchmarks of
the detector, the training loop and the metrics without any video or model."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from exvad_ray.train.data import VideoRecord
from exvad_ray.units import SNIPPET_FRAMES


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def synthetic_feature_set(
    class_names: Sequence[str],
    n_per_class: int = 8,
    n_normal: int = 24,
    dim: int = 32,
    length: tuple[int, int] = (40, 160),
    signal: float = 0.6,
    noise: float = 1.0,
    seed: int = 0,
    split: str = "train",
    with_text: bool = False,
) -> tuple[list[VideoRecord], np.ndarray]:
    """Videos whose snippets are noise around a shared 'scene' vector; anomalous videos contain one
    event segment whose snippets move towards their class prototype by `signal`. Returns records and
    class embeddings (prototypes plus noise, Normal = scene direction). With `with_text`, every video
    gets an 'explanation feature' near its class prototype."""
    rng = np.random.default_rng(seed)
    proto_rng = np.random.default_rng(12345)  # prototypes shared between splits
    protos = _unit(proto_rng.normal(size=(len(class_names), dim)))
    scene = protos[0]
    class_emb = _unit(protos + 0.3 * proto_rng.normal(size=protos.shape) / np.sqrt(dim)).astype(np.float32)
    records: list[VideoRecord] = []
    plan = [(class_names[0], i) for i in range(n_normal)]
    plan += [(c, i) for c in class_names[1:] for i in range(n_per_class)]
    for cls, i in plan:
        t = int(rng.integers(length[0], length[1] + 1))
        feats = scene + noise * rng.normal(size=(t, dim)) / np.sqrt(dim)
        segs: list[tuple[int, int, str]] = []
        if cls != class_names[0]:
            ev = int(rng.integers(max(2, t // 6), max(3, t // 2)))
            s = int(rng.integers(0, t - ev + 1))
            feats[s:s + ev] += signal * protos[list(class_names).index(cls)]
            segs = [(s * SNIPPET_FRAMES, (s + ev) * SNIPPET_FRAMES, cls)]
        text = None
        if with_text:
            text = _unit(protos[list(class_names).index(cls)] + 0.5 * rng.normal(size=dim) / np.sqrt(dim)).astype(np.float32)
        records.append(VideoRecord(f"{split}_{cls}_{i:03d}", _unit(feats).astype(np.float32), text, [cls], segs, split))
    return records, class_emb
