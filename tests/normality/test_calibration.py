"""Calibration on hand-made distributions: percentiles, the exponential tail, thresholds from a
false-alarm rate (measured and extrapolated), and the detector's scores calibrated the same way."""

from __future__ import annotations

import numpy as np
import pytest

from exvad_ray.detector.localize import LocalizationConfig
from exvad_ray.errors import ExvadError
from exvad_ray.normality import PercentileMap, calibrate_scores, count_segments, fit_threshold, localization_at


def test_percentiles_are_the_fraction_of_normal_footage_less_unusual():
    pm = PercentileMap.fit(np.arange(1, 1000, dtype=float))  # 1..999
    assert pm(500.0) == pytest.approx(0.5, abs=1e-3)
    assert pm(100.0) == pytest.approx(0.1, abs=1e-3)
    assert pm(0.0) <= pm(1.0) < 0.002
    # beyond the most unusual normal value: strictly increasing towards 1 (reaching it only at float precision)
    beyond = pm(np.array([999.0, 1000.0, 1100.0, 1500.0]))
    assert np.all(np.diff(beyond) > 0) and beyond[-1] < 1.0 and beyond[0] == pytest.approx(0.999, abs=1e-3)
    p = pm(np.linspace(-10, 30000, 500))
    assert np.all(np.diff(p) >= 0) and p.min() >= 0 and p.max() <= 1


def test_the_map_survives_serialisation_and_small_or_tied_inputs():
    pm = PercentileMap.fit(np.random.default_rng(0).exponential(1.0, 5000))
    again = PercentileMap.from_dict(pm.to_dict())
    x = np.linspace(0, 20, 50)
    assert np.allclose(pm(x), again(x))
    assert 0.5 < PercentileMap.fit(np.array([0.3]))(0.3001) < 1
    tied = PercentileMap.fit(np.full(100, 0.2))
    assert tied(0.1) < tied(0.2001) < 1
    with pytest.raises(ExvadError):
        PercentileMap.fit(np.array([]))


def test_the_exponential_tail_matches_an_exponential_distribution():
    """For exponential normal scores the tail's extrapolated exceedance is the true one."""
    x = np.random.default_rng(1).exponential(1.0, 20000)
    pm = PercentileMap.fit(x)
    far = x.max() + 3.0
    assert 1 - pm(far) == pytest.approx(np.exp(-far), rel=0.5)


def run(n: int, spikes: list[tuple[int, int]], base: float = 0.2, high: float = 0.999) -> np.ndarray:
    s = np.full(n, base)
    for a, b in spikes:
        s[a:b] = high
    return s


def test_counting_uses_the_jobs_localisation_rule():
    # one two-snippet run, one lone snippet (below the single-snippet rarity), one run merged over a gap of 1
    s = run(100, [(10, 12), (30, 31), (50, 52), (53, 55)], high=0.95)
    assert count_segments([s], 0.9) == (2, 1)
    cfg = localization_at(0.9, LocalizationConfig(min_snippets=3))
    assert cfg.threshold == 0.9 and cfg.min_snippets == 3 and cfg.single_snippet_score == pytest.approx(0.99)


def test_threshold_measured_on_long_normal_footage():
    """10 hours of normal footage, 0.64 s snippets; runs of 3 snippets at rarer and rarer levels:
    5 runs per hour at percentile 0.99, 0.5 per hour at 0.999, 0.05 per hour at 0.9999."""
    rng = np.random.default_rng(2)
    hours, snip = 10.0, 0.64
    per_video = int(3600 / snip)
    series = []
    for h in range(int(hours)):
        s = rng.uniform(0, 0.9, per_video)
        for level, count in ((0.99, 5), (0.999, 0.5), (0.9999, 0.05)):
            k = rng.poisson(count)
            for a in rng.integers(0, per_video - 3, k):
                s[a:a + 3] = level
        series.append(s)
    thr = fit_threshold(series, [per_video * snip] * len(series), per_hour=1.0)
    assert thr.method == "measured" and thr.hours == pytest.approx(hours, rel=1e-3)
    assert 0.99 < thr.threshold <= 0.999 + 1e-9
    assert thr.segments / thr.hours <= 1.0
    assert fit_threshold(series, [per_video * snip] * len(series), per_hour=10.0).threshold < 0.99 + 1e-9


def test_threshold_extrapolated_on_short_footage_is_above_everything_normal():
    """Five minutes of footage cannot show a 1-per-hour rate: the threshold lies beyond what was seen."""
    rng = np.random.default_rng(3)
    series = [rng.uniform(0, 1, 90) for _ in range(5)]  # 5 videos x 90 snippets x 0.64 s = 4.8 min
    thr = fit_threshold(series, [90 * 0.64] * 5, per_hour=1.0)
    assert thr.method == "extrapolated" and thr.segments == 0 and thr.videos == 0
    assert thr.threshold > 0.999  # 1 per hour among ~5600 snippets an hour
    looser = fit_threshold(series, [90 * 0.64] * 5, per_hour=100.0)
    assert looser.threshold < thr.threshold
    with pytest.raises(ExvadError):
        fit_threshold(series, [60.0] * 5, per_hour=0)


def test_a_detector_score_is_calibrated_the_same_way():
    """A detector whose normal videos score high (0.6-0.8) is not flagged at its own calibrated
    threshold, where a fixed 0.5 would flag every normal video."""
    rng = np.random.default_rng(4)
    normal = [rng.uniform(0.6, 0.8, 200) for _ in range(20)]
    cal = calibrate_scores(normal, [200 * 0.64] * 20, per_hour=1.0)
    held_out = [rng.uniform(0.6, 0.8, 200) for _ in range(10)]
    assert sum(count_segments([cal(s)], cal.threshold.threshold)[0] for s in held_out) == 0
    assert all(count_segments([s], 0.5)[0] for s in held_out)  # the fixed 0.5 flags them all
    event = np.r_[rng.uniform(0.6, 0.8, 50), np.full(5, 0.99), rng.uniform(0.6, 0.8, 50)]
    assert count_segments([cal(event)], cal.threshold.threshold)[0] == 1
    assert type(cal).from_dict(cal.to_dict()).threshold == cal.threshold
