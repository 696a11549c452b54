"""The fused scoring's scales (exvad_ray.pipeline.normality_scoring.fusion_parts): each keeps the
order of its part; the surprise scales are unbounded beyond every reference value (so a fused
threshold extrapolated past the calibration footage stays reachable); plain ranks saturate at 1."""

from __future__ import annotations

import numpy as np
import pytest

from exvad_ray.errors import ExvadError
from exvad_ray.normality import PercentileMap
from exvad_ray.pipeline.normality_scoring import SCALES, Fusion, fusion_parts


def _maps():
    rng = np.random.default_rng(0)
    normal_det = rng.normal(0.2, 0.05, 2000)
    footage_n, footage_d = rng.exponential(1.0, 3000), np.concatenate([normal_det, rng.normal(0.7, 0.1, 1000)])
    return (PercentileMap.fit(normal_det).to_dict(),
            {"normality": PercentileMap.fit(footage_n).to_dict(), "detector": PercentileMap.fit(footage_d).to_dict()})


@pytest.mark.parametrize("scale", SCALES)
def test_each_scale_keeps_the_order_of_its_parts(scale):
    dmap, ranks = _maps()
    n = np.linspace(0, 30, 50)
    d = np.linspace(0, 3, 50)
    a, b = fusion_parts(scale, dmap, ranks, n, d)
    assert np.all(np.diff(a) >= 0) and np.all(np.diff(b) >= 0)
    beyond = fusion_parts(scale, dmap, ranks, np.array([40.0, 80.0]), np.array([5.0, 9.0]))
    if scale == "rank":
        assert np.all(beyond[0] <= 1) and np.all(beyond[1] <= 1)
    else:  # beyond every reference value the parts still grow
        assert beyond[0][1] > beyond[0][0] > a[-1] and beyond[1][1] > beyond[1][0]


def test_rank_surprise_is_the_ranks_as_surprises():
    dmap, ranks = _maps()
    n, d = np.array([0.1, 1.0, 2.5]), np.array([0.1, 0.5, 0.8])
    ra, rb = fusion_parts("rank", dmap, ranks, n, d)
    sa, sb = fusion_parts("rank_surprise", dmap, ranks, n, d)
    assert sa == pytest.approx(-np.log1p(-ra)) and sb == pytest.approx(-np.log1p(-rb))
    fusion = Fusion(0.3, "rank_surprise", dmap, {}, ranks)
    assert fusion.raw(n, d) == pytest.approx(0.3 * sa + 0.7 * sb)
    with pytest.raises(ExvadError, match="rank maps"):
        fusion_parts("rank_surprise", dmap, None, n, d)
