"""Video-level decision from per-snippet scores (torch-free: the pipeline's assembler uses it)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class VideoPrediction:
    """Video-level summary of per-snippet scores (same top-k rule as training)."""

    video_score: float
    video_class: str
    class_scores: np.ndarray  # (C,) top-k mean class probabilities


def _topk_k(n: int) -> int:
    return min(n, n // 16 + 1)


def video_prediction(anomaly_scores: np.ndarray, class_probs: np.ndarray, class_names: list[str],
                     threshold: float = 0.5) -> VideoPrediction:
    """Video score = mean of the top-k snippet scores (k = T//16 + 1); class = Normal when that is
    below `threshold`, else the anomaly class with the highest top-k mean probability."""
    n = len(anomaly_scores)
    if n == 0:
        return VideoPrediction(0.0, class_names[0], np.zeros(len(class_names), np.float32))
    k = _topk_k(n)
    score = float(np.sort(anomaly_scores)[::-1][:k].mean())
    cls = np.sort(class_probs, axis=0)[::-1][:k].mean(0).astype(np.float32)
    name = class_names[0] if score < threshold else class_names[1 + int(np.argmax(cls[1:]))]
    return VideoPrediction(score, name, cls)
