"""Fusion of calibrated parts: the weighted mean, the weight chosen on labelled videos, the AUC."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from exvad_ray.errors import ExvadError
from exvad_ray.normality import DEFAULT_WEIGHT, choose_weight, fuse, rank_auc


def test_rank_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, 300).astype(float)
    y = rng.integers(0, 2, 300)
    assert rank_auc(s, y) == pytest.approx(roc_auc_score(y, s))
    assert np.isnan(rank_auc(s, np.zeros(300)))


def test_the_weight_follows_the_better_part_and_fusion_beats_both():
    rng = np.random.default_rng(1)
    y = [rng.random(100) < 0.3 for _ in range(5)]
    # two noisy, independent views of the truth: their mean is better than either
    a = [0.5 * t + rng.random(100) for t in y]
    b = [0.5 * t + rng.random(100) for t in y]
    w, aucs = choose_weight(a, b, y)
    assert 0.2 <= w <= 0.8 and aucs[w] > max(aucs[0.0], aucs[1.0])
    w_only_a, _ = choose_weight(a, [rng.random(100) for _ in y], y)
    assert w_only_a >= 0.7
    assert choose_weight([np.zeros(3)], [np.zeros(3)], [np.zeros(3)])[0] == DEFAULT_WEIGHT
    assert np.allclose(fuse(np.ones(3), np.zeros(3), 0.25), 0.25)
    with pytest.raises(ExvadError):
        fuse(np.ones(3), np.ones(4))
