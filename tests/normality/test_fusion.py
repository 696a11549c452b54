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


def test_average_precision_matches_sklearn_with_ties_and_the_weight_can_follow_either_metric():
    from sklearn.metrics import average_precision_score

    from exvad_ray.normality import average_precision

    rng = np.random.default_rng(2)
    s = rng.integers(0, 7, 400).astype(float)
    y = rng.random(400) < 0.2
    assert average_precision(s, y) == pytest.approx(average_precision_score(y, s))
    assert average_precision(np.arange(5.0), np.array([0, 0, 0, 1, 1])) == 1.0
    assert np.isnan(average_precision(s, np.zeros(400)))
    # a part that ranks the top right but the bulk badly wins on AP, the other on AUC
    truth = [np.r_[np.ones(5), np.zeros(95)]]
    top = [np.r_[np.full(5, 10.0), np.full(45, 11.0) * (rng.random(45) < 0.04), rng.random(50)]]
    bulk = [np.r_[np.full(5, 0.8), rng.random(95) * 0.9]]
    w_ap, by_ap = choose_weight(top, bulk, truth, metric="ap")
    w_auc, by_auc = choose_weight(top, bulk, truth, metric="auc")
    assert by_ap[w_ap] == max(by_ap.values()) and by_auc[w_auc] == max(by_auc.values())
    with pytest.raises(ExvadError):
        choose_weight(top, bulk, truth, metric="f1")
    assert choose_weight([np.ones(3)], [np.ones(3)], [np.ones(3)])[0] == DEFAULT_WEIGHT  # no normal snippet
