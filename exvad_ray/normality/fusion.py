"""Fusion of the normality score with a detector's calibrated score.

The label-free k-NN score finds what the archive never shows, the weakly supervised detector what it
learnt to name; on the demo archive a plain rank average of the two beat both (issue 22). Both parts
are first calibrated (`calibration`), so a weighted mean is meaningful whatever each raw score's
scale: as surprises -log(1 - percentile of normal footage), which are unbounded (two percentiles
both near 1 average to near 1, and a fused threshold extrapolated beyond 1 is never reached), or as
ranks among a reference split's footage (`PercentileMap.fit` on all of it; no label needed). The
weight is chosen on a validation split when labels exist (`choose_weight`: snippet average
precision over a grid, `WEIGHT_METRIC`), else `DEFAULT_WEIGHT`. The fused value is itself
calibrated on normal footage (`calibration.calibrate_scores`) to get a percentile and a threshold; the
class comes from the detector.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from exvad_ray.errors import ExvadError

DEFAULT_WEIGHT = 0.5  # weight of the normality percentile when no labelled validation split exists
WEIGHT_GRID = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))
# what the weight is chosen by on val: "ap" - the order an analyst reads flagged footage in is what the
# fused score is for, and AP measures the top of it where AUC mostly measures the bulk of normal footage.
# On five development archives (the demo's generator, seeds 1-5; never the demo's test split) choosing by
# AP flagged 2 more of 40 anomalous test videos than by AUC, with no more normal ones flagged, at the same
# mean fused AP (0.646 against 0.645): bench/RESULTS.md "the weight's metric, on five development archives"
WEIGHT_METRIC = "ap"  # a key of WEIGHT_METRICS


def fuse(normality: np.ndarray, detector: np.ndarray, weight: float = DEFAULT_WEIGHT) -> np.ndarray:
    """Weighted mean of two calibrated scores (both surprises, or both ranks) of the same snippets."""
    a, b = np.asarray(normality, np.float64), np.asarray(detector, np.float64)
    if a.shape != b.shape:
        raise ExvadError(f"fusion needs one normality and one detector score per snippet ({a.shape} vs {b.shape})")
    if not 0.0 <= weight <= 1.0:
        raise ExvadError(f"the fusion weight must be in [0, 1], got {weight}")
    return weight * a + (1.0 - weight) * b


def rank_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC by the Mann-Whitney statistic (ties count half); nan without both classes."""
    s, y = np.asarray(scores, np.float64).ravel(), np.asarray(labels).astype(bool).ravel()
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), np.float64)
    sorted_s = s[order]
    # average ranks over ties
    bounds = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1], True])
    for a, b in zip(bounds[:-1], bounds[1:]):
        ranks[order[a:b]] = (a + b + 1) / 2.0
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision (sklearn's definition: precision at each distinct score, weighted by the
    recall gained there; tied scores enter together); nan without a positive."""
    s, y = np.asarray(scores, np.float64).ravel(), np.asarray(labels).astype(bool).ravel()
    n1 = int(y.sum())
    if n1 == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), len(s) - 1]  # the last row of each run of tied scores
    tp = np.cumsum(y)[last]
    precision, recall = tp / (last + 1.0), tp / n1
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


# the snippet metrics a weight (and `exvad rescore --fusion-scale auto`'s scale) can be chosen by
WEIGHT_METRICS = {"ap": average_precision, "auc": rank_auc}


def choose_weight(normality: Sequence[np.ndarray], detector: Sequence[np.ndarray], truth: Sequence[np.ndarray],
                  grid: Sequence[float] = WEIGHT_GRID, metric: str = WEIGHT_METRIC) -> tuple[float, dict[float, float]]:
    """The normality weight with the best snippet `metric` ("ap" or "auc") on labelled videos (per
    video: percentiles of both parts and 0/1 truth per snippet); ties go to the weight nearest
    DEFAULT_WEIGHT. Returns the weight and the metric at every weight of the grid."""
    if metric not in WEIGHT_METRICS:
        raise ExvadError(f"the fusion weight is chosen by {' or '.join(WEIGHT_METRICS)}, not {metric!r}")
    a = np.concatenate([np.asarray(x, np.float64) for x in normality])
    b = np.concatenate([np.asarray(x, np.float64) for x in detector])
    y = np.concatenate([np.asarray(x) for x in truth])
    score = WEIGHT_METRICS[metric]
    if not (y.any() and not y.all()):
        return DEFAULT_WEIGHT, {float(w): float("nan") for w in grid}
    values = {float(w): score(fuse(a, b, float(w)), y) for w in grid}
    best = max(values.values())
    return min((w for w, v in values.items() if v >= best - 1e-12), key=lambda w: abs(w - DEFAULT_WEIGHT)), values
