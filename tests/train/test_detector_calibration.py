"""The trained detector's threshold calibrated on its val split's Normal videos (`train.api.calibrate_detector`),
on hand-made score distributions: the threshold is on the detector's own scale, its percentile among normal
footage meets the false-alarm target, and a card without normal videos says so (flags at 0.5)."""

from __future__ import annotations

import numpy as np
import pytest

from exvad_ray.normality import PercentileMap, count_segments
from exvad_ray.records import VideoRecord
from exvad_ray.train.api import _card_markdown, _raw_at, calibrate_detector


class Fixed:
    """A stand-in detector whose score is the record's first feature."""

    def score(self, features: np.ndarray, text: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        s = features[:, 0].astype(np.float32)
        return s, np.stack([1 - s, s], 1)


def record(name: str, scores: np.ndarray, split: str = "val", labels: tuple[str, ...] = ("Normal",)) -> VideoRecord:
    return VideoRecord(name, np.asarray(scores, np.float32)[:, None], None, list(labels), split=split, fps=16.0)


def test_raw_at_inverts_the_percentile_map_inside_and_beyond_normal_footage():
    raw = np.random.default_rng(0).normal(0.2, 0.05, 5000)
    pmap = PercentileMap.fit(raw)
    for p in (0.1, 0.5, 0.9, 0.99):
        assert pmap(_raw_at(pmap, p)) == pytest.approx(p, abs=2e-3)
    far = _raw_at(pmap, 1 - 1e-6)  # beyond the most unusual normal score: the exponential tail
    assert far > raw.max() and pmap(far) == pytest.approx(1 - 1e-6, abs=1e-9)


def test_detector_threshold_from_normal_val_videos_meets_the_false_alarm_target():
    rng = np.random.default_rng(1)
    # 40 normal val videos of 1 hour each in total (16 fps, 16 frames per snippet: 1 s per snippet), one
    # anomalous val video and train videos that must not count
    normal = [record(f"n{i}", np.clip(rng.normal(0.3, 0.08, 90), 0, 1)) for i in range(40)]
    others = [record("a", np.full(90, 0.95), labels=("Fighting",)), record("t", np.full(90, 0.9), split="train")]
    cal = calibrate_detector(Fixed(), normal + others, per_hour=2.0)
    assert cal["normal_videos"] == 40 and cal["split"] == "val" and cal["false_alarms"]["hours"] == pytest.approx(1.0)
    assert 0.3 < cal["threshold"] < 0.95 and cal["single_snippet_score"] >= cal["threshold"]
    pmap = PercentileMap.from_dict(cal["map"])
    assert pmap(cal["threshold"]) == pytest.approx(cal["percentile_threshold"], abs=1e-3)
    segs, _videos = count_segments([pmap(r.features[:, 0]) for r in normal], cal["percentile_threshold"])
    assert segs <= 2  # at most 2 false alarms in the hour of normal footage
    md = _card_markdown_for(cal)
    assert "## Calibrated threshold" in md and f"{cal['threshold']:.4f}" in md


def test_no_normal_val_video_leaves_the_fixed_threshold():
    cal = calibrate_detector(Fixed(), [record("a", np.full(10, 0.9), labels=("Fighting",))])
    assert cal["threshold"] is None and "0.5" in cal["note"]


def _card_markdown_for(cal: dict) -> str:
    card = {"model": "m", "created": "now", "label_set": {"name": "x", "class_names": ["Normal", "A"]},
            "data": {"splits": {}}, "preset": None,
            "config": {"detector": {"embed_dim": 4, "layers": 0, "attention_block": 8, "fusion": "add"},
                       "train": {"lr": 1e-3, "loss": {"contrast": 1.0}}},
            "selection": {"best_epoch": 1, "metric": "auc", "val_metrics": {}}, "test_metrics": None,
            "lineage": {}, "versions": {}, "calibration": cal}
    return _card_markdown(card)
