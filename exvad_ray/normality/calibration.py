"""Calibration: raw scores -> percentiles of normal footage, and thresholds from a false-alarm rate.

A raw k-NN distance means nothing to an analyst and differs per camera and per half; a percentile
does: p = the fraction of normal footage that is less unusual (0.99 = more unusual than 99 % of what
this camera normally shows). The map is fitted on leave-one-video-out scores of the bank's own normal
footage (a video never matches itself), stored as quantiles and applied with `np.interp`. Above the
most unusual normal snippet the map continues as an exponential tail fitted to the top 10 % (peaks
over threshold with shape 0), so it stays strictly increasing (up to float precision, far out): the ranking of footage beyond anything
normal is kept instead of every such snippet tying at 1.

Decision thresholds come from a target rate of false alarms (segments flagged per hour of normal
footage), not from a fixed 0.5: `fit_threshold` runs the job's own localisation rule
(`exvad_ray.detector.localize`) over the normal videos' percentile series and counts segments per
hour at candidate thresholds. When the normal footage is too short to measure the target rate (fewer
than `MIN_EXPECTED` expected false alarms in it), the rate is extrapolated: segments per hour are
proportional to the exceedance 1 - t (measured where segments occur), and the threshold is the more
conservative of the measured and extrapolated ones. A video is flagged when at least one of its
segments is (video threshold = segment threshold, through the same rule).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from exvad_ray.detector.localize import LocalizationConfig, localize
from exvad_ray.errors import ExvadError

N_QUANTILES = 1001
TAIL_FROM = 0.9  # the exponential tail is fitted to values above this quantile
MIN_EXPECTED = 3.0  # fewer expected false alarms on the calibration footage: extrapolate
SINGLE_SNIPPET_RARITY = 10.0  # a lone snippet flags when its exceedance is 10x rarer than the threshold's


@dataclasses.dataclass(frozen=True)
class PercentileMap:
    """Monotone map raw -> percentile in [0, 1]: `values` are raw quantiles at `levels`."""

    values: np.ndarray
    levels: np.ndarray
    n: int
    tail_scale: float

    @classmethod
    def fit(cls, raw: np.ndarray, n_points: int = N_QUANTILES) -> PercentileMap:
        x = np.sort(np.asarray(raw, np.float64).ravel())
        x = x[np.isfinite(x)]
        if len(x) == 0:
            raise ExvadError("calibration needs scores of normal footage; none were given")
        n = len(x)
        levels = np.linspace(1.0 / (n + 1), n / (n + 1.0), min(n_points, n))
        q = np.clip((levels * (n + 1) - 1) / max(n - 1, 1), 0.0, 1.0)
        values = np.quantile(x, q) if n > 1 else np.full(len(levels), x[0])
        values = np.maximum.accumulate(values)
        top = x[x > np.quantile(x, TAIL_FROM)]
        excess = float(np.mean(top - np.quantile(x, TAIL_FROM))) if len(top) else 0.0
        spread = float(x[-1] - x[0])
        scale = max(excess, 1e-3 * spread, 1e-3 * abs(float(x[-1])), 1e-9)
        return cls(values, levels, n, scale)

    def __call__(self, raw: np.ndarray | float) -> np.ndarray:
        return -np.expm1(-self.surprise(raw))

    def surprise(self, raw: np.ndarray | float) -> np.ndarray:
        """-log(1 - percentile): the same order, without the float saturation near 1 (linear in raw
        in the exponential tail), so that combining and recalibrating keeps the extreme ranks."""
        x = np.asarray(raw, np.float64)
        p = np.interp(x, self.values, self.levels)
        s = -np.log1p(-p)
        top, top_level = self.values[-1], self.levels[-1]
        above = x > top
        if np.any(above):
            s = np.where(above, -np.log1p(-top_level) + (x - top) / self.tail_scale, s)
        return s

    def to_dict(self) -> dict:
        return {"values": self.values.tolist(), "levels": self.levels.tolist(), "n": self.n,
                "tail_scale": self.tail_scale}

    @classmethod
    def from_dict(cls, d: dict) -> PercentileMap:
        return cls(np.asarray(d["values"], np.float64), np.asarray(d["levels"], np.float64), int(d["n"]),
                   float(d["tail_scale"]))


def localization_at(threshold: float, base: LocalizationConfig = LocalizationConfig()) -> LocalizationConfig:
    """The job's localisation rule on percentiles: flag at `threshold`, runs of at least
    `base.min_snippets` (a lone snippet when its exceedance is 10x rarer), gaps as `base`."""
    single = 1.0 - (1.0 - threshold) / SINGLE_SNIPPET_RARITY
    return LocalizationConfig(threshold=float(threshold), min_snippets=base.min_snippets,
                              single_snippet_score=float(single), max_gap=base.max_gap)


def count_segments(series: Sequence[np.ndarray], threshold: float,
                   base: LocalizationConfig = LocalizationConfig()) -> tuple[int, int]:
    """(segments, videos with at least one segment) that the rule flags at `threshold`."""
    cfg = localization_at(threshold, base)
    counts = [len(localize(np.asarray(s), cfg)) if len(s) and np.max(s) >= threshold else 0 for s in series]
    return int(sum(counts)), int(sum(c > 0 for c in counts))


@dataclasses.dataclass(frozen=True)
class Threshold:
    """A decision threshold on percentiles, and how it was set."""

    threshold: float
    per_hour: float  # target false alarms per hour of normal footage
    hours: float  # normal footage it was measured on
    method: str  # "measured" | "extrapolated"
    segments: int  # segments the rule flags on that footage at the threshold
    videos: int  # normal videos flagged there
    n_videos: int

    def localization(self, base: LocalizationConfig = LocalizationConfig()) -> LocalizationConfig:
        return localization_at(self.threshold, base)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Threshold:
        return cls(**d)


def fit_threshold(series: Sequence[np.ndarray], seconds: Sequence[float], per_hour: float = 1.0,
                  base: LocalizationConfig = LocalizationConfig(), grid: int = 200) -> Threshold:
    """Lowest percentile threshold at which the rule flags at most `per_hour` segments per hour of
    the normal footage `series` (percentile series, one per video, lasting `seconds`); extrapolated
    when the footage is too short to measure that rate (module doc)."""
    if per_hour <= 0:
        raise ExvadError(f"the false-alarm rate must be positive (per hour), got {per_hour}")
    series = [np.asarray(s, np.float64) for s in series]
    hours = float(np.sum(seconds)) / 3600.0
    n_snippets = sum(len(s) for s in series)
    if n_snippets == 0 or hours <= 0:
        raise ExvadError("calibration needs normal footage with snippets; none was given")
    # candidate thresholds: exceedances 1 - t from 0.5 down to 1e-7, log-spaced
    exceed = np.logspace(np.log10(0.5), -7, grid)
    counts = np.array([count_segments(series, 1.0 - e, base)[0] for e in exceed])
    rate = counts / hours
    # the lowest threshold above which the rate never exceeds the target (at low thresholds runs merge
    # into a few long segments, so the count is not monotone there)
    bad = np.flatnonzero(rate > per_hour)
    e_measured = exceed[0] if not len(bad) else exceed[min(bad[-1] + 1, len(exceed) - 1)]
    method = "measured"
    e = e_measured
    if per_hour * hours < MIN_EXPECTED:
        seen = counts > 0
        per_exceed = (counts[seen] / hours / exceed[seen]) if seen.any() else np.array([])
        # segments per hour per unit exceedance where segments were seen; else every snippet one segment
        c = float(np.median(per_exceed[-min(len(per_exceed), 20):])) if len(per_exceed) else n_snippets / hours
        e_extra = per_hour / max(c, 1e-12)
        if e_extra < e:
            e, method = e_extra, "extrapolated"
    t = float(1.0 - e)
    segs, vids = count_segments(series, t, base)
    return Threshold(t, float(per_hour), hours, method, segs, vids, len(series))


@dataclasses.dataclass(frozen=True)
class ScoreCalibration:
    """Any snippet score (a detector's, a fusion's) made a percentile of normal footage, with its
    false-alarm threshold: the same treatment the normality model gets."""

    map: PercentileMap
    threshold: Threshold

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        return self.map(raw)

    def to_dict(self) -> dict:
        return {"map": self.map.to_dict(), "threshold": self.threshold.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> ScoreCalibration:
        return cls(PercentileMap.from_dict(d["map"]), Threshold.from_dict(d["threshold"]))


def calibrate_scores(normal_series: Sequence[np.ndarray], seconds: Sequence[float], per_hour: float = 1.0,
                     base: LocalizationConfig = LocalizationConfig()) -> ScoreCalibration:
    """Percentile map and threshold of a score from its values on normal videos (e.g. the trained
    detector's scores on its validation split's normal videos)."""
    pairs = [(np.asarray(s, np.float64), float(t)) for s, t in zip(normal_series, seconds) if len(s)]
    if not pairs:
        raise ExvadError("calibration needs scores of normal footage; none were given")
    pmap = PercentileMap.fit(np.concatenate([s for s, _ in pairs]))
    return ScoreCalibration(pmap, fit_threshold([pmap(s) for s, _ in pairs], [t for _, t in pairs], per_hour, base))
