"""Helpers for the model tests (plain functions; tests/models is on sys.path under pytest)."""

from __future__ import annotations

import numpy as np


def images(n: int, seed: int = 0, size: int = 224) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def window_batch(n_snippets=(5, 3), n_kf=(3, 2), seed: int = 0) -> dict:
    """Two window rows in Ray's numpy batch format (ragged columns as object arrays)."""
    rows = len(n_snippets)

    def obj(values):
        out = np.empty(len(values), dtype=object)
        for i, v in enumerate(values):
            out[i] = v
        return out

    frames = [images(n, seed + i) for i, n in enumerate(n_snippets)]
    keyframes = [images(k, seed + 10 + i) for i, k in enumerate(n_kf)]
    return {
        "video_id": np.array([f"vid{i}" for i in range(rows)], dtype=object),
        "uri": np.array([f"s3://b/v{i}.mp4" for i in range(rows)], dtype=object),
        "window_index": np.zeros(rows, dtype=np.int64),
        "snippet_offset": np.zeros(rows, dtype=np.int64),
        "n_snippets": np.array(n_snippets, dtype=np.int64),
        "frames": obj(frames),
        "frame_index": obj([np.arange(n, dtype=np.int64) * 16 + 8 for n in n_snippets]),
        "start_s": obj([np.arange(n, dtype=np.float64) * 16 / 30 for n in n_snippets]),
        "end_s": obj([(np.arange(n, dtype=np.float64) + 1) * 16 / 30 for n in n_snippets]),
        "keyframes": obj(keyframes),
        "keyframe_s": obj([np.linspace(0, n_snippets[i] * 16 / 30, k) for i, k in enumerate(n_kf)]),
    }
