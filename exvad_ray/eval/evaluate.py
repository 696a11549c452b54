"""Score labelled videos with a detector (or the zero-shot scorer) and compute the field's metrics.
Used for validation inside training and by `exvad evaluate` on the test split."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from exvad_ray import storage
from exvad_ray.detector.inference import VideoPrediction
from exvad_ray.detector.localize import LocalizationConfig
from exvad_ray.detector.video_level import video_prediction
from exvad_ray.errors import ExvadError
from exvad_ray.eval.metrics import (
    IOU_THRESHOLDS,
    Decisions,
    decisions,
    frame_auc_ap,
    per_class_frame_ap,
    repeat_to_frames,
    detection_map,
    vadclip_detection_map,
    video_accuracy,
)
from exvad_ray.records import VideoRecord, conform


class Scorer(Protocol):
    class_names: list[str]

    def predict_video(self, features: np.ndarray, text_feature: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray, VideoPrediction]: ...


@dataclass
class VideoResult:
    name: str
    labels: list[str]
    segments: list[tuple[int, int, str]]
    anomaly_scores: np.ndarray  # (T,)
    class_probs: np.ndarray  # (T, C)
    prediction: VideoPrediction
    fps: float | None = None
    # the anomaly scores' order where float32 percentiles lose it (a calibrated scoring's surprises, which
    # rank footage beyond all normal footage that percentiles tie at 1.0); AUC/AP rank by it when every video has it
    rank_scores: np.ndarray | None = None

    @property
    def is_anomaly(self) -> bool:
        return any(lab.lower() != "normal" for lab in self.labels)


@dataclass
class EvalReport:
    """All metrics of one evaluation. `frame_level` says whether AUC/AP are frame-level (temporal
    ground truth available) or video-level (weak labels only, e.g. a validation split)."""

    n_videos: int
    frame_level: bool
    auc: float
    ap: float
    accuracy: float
    per_class_accuracy: dict[str, float]
    map_at: dict[float, float] = field(default_factory=dict)
    map_avg: float = float("nan")
    per_class_ap: dict[str, float] = field(default_factory=dict)
    per_class_map: dict[str, dict[float, float]] = field(default_factory=dict)
    # VadCLIP's published procedure (comparable with published tables): every class, Normal included,
    # and a whole IoU threshold scored 0 as soon as one class has no proposal; map_at/map_avg above
    # are the corrected figures (classes with ground truth; a class without proposals scores AP 0)
    vadclip_map_at: dict[float, float] = field(default_factory=dict)
    vadclip_map_avg: float = float("nan")
    vadclip_procedure: str = "ucf"
    # what the flagging rule decides at the threshold a deployment uses (false alarms per hour of
    # normal footage, videos flagged, labelled segments found); None without temporal ground truth
    decisions: Decisions | None = None
    videos: list[VideoResult] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, float]:
        """Flat numeric metrics (for Ray Train reports and bench results)."""
        out = {"auc": self.auc, "ap": self.ap, "accuracy": self.accuracy, "map_avg": self.map_avg,
               "vadclip_map_avg": self.vadclip_map_avg}
        out |= {f"map@{k:.1f}": v for k, v in self.map_at.items()}
        return out

    def to_dict(self) -> dict[str, Any]:
        def clean(v: Any) -> Any:
            if isinstance(v, float) and math.isnan(v):
                return None
            if isinstance(v, dict):
                return {str(k): clean(x) for k, x in v.items()}
            return v
        return clean({
            "n_videos": self.n_videos, "frame_level": self.frame_level, "auc": self.auc, "ap": self.ap,
            "accuracy": self.accuracy, "per_class_accuracy": self.per_class_accuracy,
            "map_at_iou": self.map_at, "map_avg": self.map_avg, "per_class_ap": self.per_class_ap,
            "per_class_map": self.per_class_map,
            "decisions": self.decisions.to_dict() if self.decisions else None,
            "corrected": {"auc": self.auc, "ap": self.ap, "map_at_iou": self.map_at, "map_avg": self.map_avg,
                          "about": "mAP over classes with ground truth; a class without proposals scores AP 0"},
            "vadclip_procedure": {"auc": self.auc, "ap": self.ap, "map_at_iou": self.vadclip_map_at,
                                  "map_avg": self.vadclip_map_avg, "dataset": self.vadclip_procedure,
                                  "about": "VadCLIP's published getDetectionMAP: all classes incl. Normal, "
                                           "an IoU scores 0 if any class has no proposal; comparable with "
                                           "published tables"},
            "videos": {v.name: {"labels": v.labels, "predicted": v.prediction.video_class,
                                "video_score": v.prediction.video_score} for v in self.videos},
        })

    def write_json(self, uri: str) -> None:
        storage.write_bytes(uri, json.dumps(self.to_dict(), indent=2).encode())


def score_records(scorer: Scorer, records: Sequence[VideoRecord]) -> list[VideoResult]:
    out = []
    for r in records:
        scores, probs, pred = scorer.predict_video(r.features, r.text_feature)
        out.append(VideoResult(r.name, list(r.labels), list(r.segments), scores, probs, pred, r.fps))
    return out


BINARY = ("normal", "anomaly")  # a scoring without a class model (the normality model alone) names two classes


def as_binary(records: Sequence[VideoRecord]) -> list[VideoRecord]:
    """Records whose anomalous labels and segments are all "Anomaly": how a scoring that tells normal from
    anomalous but no class (the normality model alone) is evaluated; frame AUC/AP are unchanged."""
    def one(label: str) -> str:
        return "Normal" if label.lower() == "normal" else "Anomaly"
    return [dataclasses.replace(r, labels=sorted({one(lab) for lab in r.labels}) or ["Normal"],
                                segments=[(s, e, one(lab)) for s, e, lab in r.segments]) for r in records]


def stored_results(records: Sequence[VideoRecord], stored: dict[str, tuple[np.ndarray, np.ndarray]],
                   class_names: Sequence[str], threshold: float = 0.5) -> list[VideoResult]:
    """Results from scores already written to an index (a scoring of `exvad process` or `exvad rescore`):
    `stored` maps a video's name to its (anomaly scores (T,), class probabilities (T,C)[, their unsaturated
    order (T,) or None]: `scorings.scores_by_name`); the video-level
    prediction is derived as a scorer's `predict_video` does, at the scoring's own `threshold` (a
    calibrated scoring flags at a percentile of normal footage, not at 0.5)."""
    names = list(class_names)
    if tuple(n.lower() for n in names) == BINARY:
        records = as_binary(records)
    out = []
    for r in conform(records, names):
        if r.name not in stored:
            raise ExvadError(f"the scoring has no scores for video {r.name!r}")
        scores, probs, *order = stored[r.name]
        if len(scores) != r.n_snippets:
            raise ExvadError(f"the scoring has {len(scores)} snippet scores for video {r.name!r}, the index "
                             f"{r.n_snippets} snippets")
        out.append(VideoResult(r.name, list(r.labels), list(r.segments), scores, probs,
                               video_prediction(scores, probs, names, threshold=threshold), r.fps,
                               order[0] if order else None))
    return out


def compute_report(results: Sequence[VideoResult], class_names: Sequence[str], procedure: str = "ucf",
                   localization: LocalizationConfig | None = None) -> EvalReport:
    """Frame-level metrics when the anomalous videos carry temporal ground truth, else
    video-level AUC/AP from the top-k video scores (weakly labelled splits). With frame-level ground
    truth, also the decisions of the flagging rule at `localization` (default: the job's, threshold 0.5)."""
    if not results:
        raise ExvadError("no videos to evaluate")
    acc, per_acc = video_accuracy([r.prediction.video_class for r in results], [r.labels for r in results])
    anomalous = [r for r in results if r.is_anomaly]
    frame_level = bool(anomalous) and all(r.segments for r in anomalous) and len(anomalous) < len(results)
    auc = ap = float("nan")
    if frame_level:
        ranked = all(r.rank_scores is not None for r in results)
        auc, ap = frame_auc_ap([r.rank_scores if ranked else r.anomaly_scores for r in results],
                               [[(s, e) for s, e, _ in r.segments] for r in results])
    else:
        y = np.array([r.is_anomaly for r in results], np.int8)
        if 0 < y.sum() < len(y):
            s = np.array([r.prediction.video_score for r in results])
            auc, ap = float(roc_auc_score(y, s)), float(average_precision_score(y, s))
    report = EvalReport(len(results), frame_level, auc, ap, acc, per_acc)
    if frame_level:
        segs = [[(s, e) for s, e, _ in r.segments] for r in results]
        labs = [[lab for _, _, lab in r.segments] for r in results]
        dm = detection_map([repeat_to_frames(r.class_probs) for r in results], segs, labs, class_names)
        report.map_at, report.map_avg, report.per_class_map = dm.map_at, dm.average, dm.per_class
        report.per_class_ap = per_class_frame_ap([r.class_probs for r in results], segs, labs, class_names)
        ref = vadclip_detection_map([repeat_to_frames(r.class_probs) for r in results], segs, labs, class_names,
                                    [not r.is_anomaly for r in results], procedure)
        report.vadclip_map_at, report.vadclip_map_avg, report.vadclip_procedure = ref.map_at, ref.average, procedure
        report.decisions = decisions([r.anomaly_scores for r in results], [r.is_anomaly for r in results], segs,
                                     [r.fps for r in results], localization or LocalizationConfig())
    report.videos = list(results)
    return report


def evaluate_records(scorer: Scorer, records: Sequence[VideoRecord], class_names: Sequence[str] | None = None,
                     procedure: str = "ucf", localization: LocalizationConfig | None = None) -> EvalReport:
    names = list(class_names or scorer.class_names)
    return compute_report(score_records(scorer, conform(records, names)), names, procedure, localization)


__all__ = ["EvalReport", "IOU_THRESHOLDS", "VideoResult", "compute_report", "evaluate_records", "score_records",
           "stored_results"]
