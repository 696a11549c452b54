"""Metrics against hand-computed cases, sklearn, and an mAP with a known answer."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from exvad_ray.errors import ExvadError
from exvad_ray.eval.metrics import (class_ap, detection_map, frame_auc_ap, frame_ground_truth, per_class_frame_ap,
                                    repeat_to_frames, video_accuracy)

NAMES = ["Normal", "A", "B", "C", "D"]


def test_frame_auc_ap_hand_computed():
    # video 1: snippet 0 scores 0.8 (normal frames), snippet 1 scores 0.4 (anomalous frames 16..32)
    # video 2: one normal snippet at 0.3. Positives (0.4) beat 16 of 32 negatives -> AUC 0.5;
    # ranking 0.8 (16 neg), 0.4 (16 pos): precision at full recall 16/32 -> AP 0.5.
    auc, ap = frame_auc_ap([np.array([0.8, 0.4]), np.array([0.3])], [[(16, 32)], []])
    assert auc == pytest.approx(0.5) and ap == pytest.approx(0.5)


def test_frame_auc_ap_matches_sklearn_on_random_videos():
    rng = np.random.default_rng(0)
    scores, segs = [], []
    for i in range(12):
        t = int(rng.integers(5, 40))
        scores.append(rng.random(t))
        segs.append([(int(rng.integers(0, 8 * t)), int(rng.integers(8 * t, 16 * t + 30)))] if i % 2 else [])
    auc, ap = frame_auc_ap(scores, segs)
    gt = np.concatenate([frame_ground_truth(len(s), g) for s, g in zip(scores, segs)])
    flat = np.concatenate([np.repeat(s, 16) for s in scores])
    assert auc == pytest.approx(roc_auc_score(gt, flat)) and ap == pytest.approx(average_precision_score(gt, flat))
    assert len(gt) == 16 * sum(len(s) for s in scores)  # segments past the end are clipped


def test_frame_auc_needs_both_classes():
    with pytest.raises(ExvadError):
        frame_auc_ap([np.array([0.1, 0.2])], [[]])


def test_class_ap_hand_computed():
    props = [[0, 0, 10, 0.9], [0, 20, 30, 0.8], [1, 0, 10, 0.7]]
    gt = [(0, 20, 30), (1, 0, 10)]
    # ranked: FP, TP (precision 1/2), TP (precision 2/3) -> (1/2 + 2/3) / 2
    assert class_ap(props, gt, 0.5) == pytest.approx((0.5 + 2 / 3) / 2)
    assert class_ap([], gt, 0.5) == 0.0


def _probs(n_frames, runs):
    """(frames, 5) probabilities; columns constant (no proposal) except the given runs."""
    p = np.full((n_frames, 5), 0.2)
    for c, s, e in runs:
        p[:, c] = 0.0
        p[s:e, c] = 1.0
    return p


def test_detection_map_known_answer():
    # video 0: class A predicted exactly on its ground truth (IoU 1);
    # video 1: class B predicted on frames 48..80, ground truth 32..64 -> IoU 16/48 = 1/3
    probs = [_probs(64, [(1, 0, 32)]), _probs(96, [(2, 48, 80)])]
    segs = [[(0, 32)], [(32, 64)]]
    labs = [["A"], ["B"]]
    dm = detection_map(probs, segs, labs, NAMES)
    assert [round(dm.map_at[t], 6) for t in (0.1, 0.2, 0.3, 0.4, 0.5)] == [100, 100, 100, 50, 50]
    assert dm.average == pytest.approx(80.0)
    assert set(dm.per_class) == {"A", "B"}  # C, D have no ground truth: no AP, not a zero


def test_class_without_proposals_does_not_zero_the_map():
    probs = [_probs(64, [(1, 0, 32)]), _probs(96, [(2, 32, 64)])]
    segs = [[(0, 32)], [(32, 64), (70, 90)]]
    labs = [["A"], ["B", "C"]]  # class C has ground truth but never a proposal
    fixed = detection_map(probs, segs, labs, NAMES)
    assert fixed.map_at[0.5] == pytest.approx(100 * 2 / 3)
    assert fixed.per_class["C"][0.5] == 0.0
    quirky = detection_map(probs, segs, labs, NAMES, reference_quirks=True)
    assert quirky.map_at[0.5] == 0.0  # the public code's behaviour


def test_per_class_ap_and_accuracy():
    probs = [np.array([[0.9, 0.1, 0, 0, 0], [0.1, 0.9, 0, 0, 0]]), np.array([[0.5, 0.2, 0.3, 0, 0]])]
    ap = per_class_frame_ap(probs, [[(16, 32)], []], [["A"], []], NAMES)
    assert ap == {"A": pytest.approx(1.0)}
    acc, per = video_accuracy(["A", "Normal", "B"], [["A"], ["A"], ["B", "C"]])
    assert acc == pytest.approx(2 / 3) and per == {"A": 0.5, "B": 1.0, "C": 1.0}
    assert repeat_to_frames(np.array([1, 2])).tolist() == [1] * 16 + [2] * 16


def test_decisions_count_false_alarms_per_hour_and_segments_found():
    """The job's flagging rule at a threshold, hand-counted: 2 normal videos of 60 snippets at 16 fps
    (60 s each), one with two separate runs (2 false alarms), and an anomalous video whose one run
    overlaps the first of its two labelled segments."""
    from exvad_ray.detector.localize import LocalizationConfig
    from exvad_ray.eval.metrics import decisions

    quiet = np.full(60, 0.1, np.float32)
    noisy = quiet.copy()
    noisy[5:8] = 0.9
    noisy[30:33] = 0.8
    anomalous = quiet.copy()
    anomalous[10:14] = 0.95
    gt = [[], [], [(10 * 16, 12 * 16), (40 * 16, 45 * 16)]]
    d = decisions([quiet, noisy, anomalous], [False, False, True], gt, [16.0, 16.0, None],
                  LocalizationConfig(threshold=0.5))
    assert (d.false_alarms, d.normal_hours) == (2, round(120 / 3600, 4))
    assert d.false_alarms_per_hour == pytest.approx(2 / (120 / 3600))
    assert (d.normal_videos_flagged, d.normal_videos, d.anomalous_videos_flagged, d.anomalous_videos) == (1, 2, 1, 1)
    assert (d.labelled_segments_found, d.labelled_segments, d.segments_found) == (1, 2, 0.5)
    strict = decisions([quiet, noisy, anomalous], [False, False, True], gt, [16.0, 16.0, None],
                       LocalizationConfig(threshold=0.85))
    assert strict.false_alarms == 1 and strict.labelled_segments_found == 1  # the 0.8 run is no longer flagged


def test_a_scoring_without_classes_evaluates_fine_grained_labels_as_anomaly():
    """The normality model alone scores Normal/Anomaly: the split's class labels (Fire, Fighting...) are
    evaluated as Anomaly, and the video rule flags at the scoring's own threshold (a percentile)."""
    from exvad_ray.eval.evaluate import compute_report, stored_results
    from exvad_ray.records import VideoRecord

    feats = np.zeros((4, 2), np.float32)
    recs = [VideoRecord("fire", feats, None, ["Fire"], [(16, 48, "Fire")], "test"),
            VideoRecord("calm", feats, None, ["Normal"], [], "test")]
    stored = {"fire": (np.array([0.1, 0.9995, 0.9999, 0.2], np.float32), np.tile([[0.5, 0.5]], (4, 1))),
              "calm": (np.array([0.1, 0.6, 0.7, 0.2], np.float32), np.tile([[0.5, 0.5]], (4, 1)))}
    results = stored_results(recs, stored, ["Normal", "Anomaly"], threshold=0.999)
    assert [r.labels for r in results] == [["Anomaly"], ["Normal"]]
    assert [r.prediction.video_class for r in results] == ["Anomaly", "Normal"]
    report = compute_report(results, ["Normal", "Anomaly"])
    assert report.frame_level and report.auc == 1.0 and report.accuracy == 1.0


def test_auc_and_ap_rank_by_the_stored_order_where_float32_percentiles_tie():
    """Footage beyond all normal footage has percentiles that float32 rounds to 1.0: the anomalous
    snippets and a normal video's odd one tie there. A calibrated scoring stores their surprises
    beside them; the ranking metrics use that order (the decisions still use the percentiles)."""
    from exvad_ray.eval.evaluate import compute_report, stored_results
    from exvad_ray.records import VideoRecord

    feats = np.zeros((4, 2), np.float32)
    recs = [VideoRecord("fire", feats, None, ["Fire"], [(16, 48, "Fire")], "test"),
            VideoRecord("calm", feats, None, ["Normal"], [], "test")]
    probs = np.tile([[0.5, 0.5]], (4, 1))
    fire, calm = np.array([0.1, 1.0, 1.0, 0.2], np.float32), np.array([0.1, 1.0, 0.7, 0.2], np.float32)
    fire_s, calm_s = np.array([2.0, 40.0, 35.0, 3.0]), np.array([2.0, 20.0, 5.0, 3.0])
    tied = compute_report(stored_results(recs, {"fire": (fire, probs), "calm": (calm, probs)}, ["Normal", "Anomaly"],
                                         threshold=0.999), ["Normal", "Anomaly"])
    ordered = compute_report(stored_results(recs, {"fire": (fire, probs, fire_s), "calm": (calm, probs, calm_s)},
                                            ["Normal", "Anomaly"], threshold=0.999), ["Normal", "Anomaly"])
    assert tied.ap < 1.0 and tied.auc < 1.0
    assert ordered.ap == 1.0 and ordered.auc == 1.0
    assert ordered.decisions.normal_videos_flagged == tied.decisions.normal_videos_flagged
    # one video without the order (a scoring that does not store it): every video ranks by its percentiles
    mixed = compute_report(stored_results(recs, {"fire": (fire, probs, fire_s), "calm": (calm, probs, None)},
                                          ["Normal", "Anomaly"], threshold=0.999), ["Normal", "Anomaly"])
    assert (mixed.auc, mixed.ap) == (tied.auc, tied.ap)
