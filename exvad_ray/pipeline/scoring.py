"""Ex-VAD scoring stage: per window, anomaly score and class probabilities per snippet, from a
trained detector checkpoint or, without one, zero-shot from the label-augmented class embeddings."""

from __future__ import annotations

from typing import Any

import numpy as np

from exvad_ray.errors import ExvadError
from exvad_ray.pipeline.assemble import has_error


def zero_shot_scorer(profile: str, label_set: str) -> Any:
    from exvad_ray.detector.inference import ZeroShotScorer
    from exvad_ray.models import label_set_embeddings

    return ZeroShotScorer(*label_set_embeddings(label_set, profile, k=4))


def scorer_class_names(detector: str | None, label_set: str) -> list[str]:
    """Class names in score order, known on the driver before any actor starts."""
    if detector:
        from exvad_ray.checkpoints import load_detector

        return list(load_detector(detector, device="cpu").class_names)
    from exvad_ray.models import load_label_set

    names = [c.name for c in load_label_set(label_set).classes]
    if not names or names[0].lower() != "normal":
        raise ExvadError(f"label set {label_set!r} must list Normal first")
    return names


class ScoreStage:
    """Adds `anomaly_scores` (n,) and `class_probs` (n, C) to each window row (declared in
    pipeline.stages.ScoreStage)."""

    name = "score"

    def __init__(self, detector: str | None, profile: str, label_set: str):
        self.detector_uri, self.profile, self.label_set = detector, profile, label_set
        self.scorer: Any = None

    def setup(self) -> None:
        if self.scorer is not None:
            return
        if self.detector_uri:
            from exvad_ray.checkpoints import load_detector

            self.scorer = load_detector(self.detector_uri)
        else:
            self.scorer = zero_shot_scorer(self.profile, self.label_set)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        self.setup()
        n = len(batch["video_id"])
        scores, probs = [], []
        errors = list(batch["error"]) if "error" in batch else [None] * n
        for i in range(n):
            try:
                if has_error(errors[i]):
                    raise RuntimeError("skipped: earlier stage failed")
                feats = batch["visual_embedding"][i]
                feats = np.stack(list(feats)) if feats.dtype == object else np.asarray(feats, np.float32)
                text = batch["explanation_embedding"][i] if "explanation_embedding" in batch else None
                text = None if text is None or np.size(text) == 0 else np.asarray(text, np.float32)
                s, p = self.scorer.score(feats, text)
            except Exception as exc:  # noqa: BLE001 - recorded on the row
                if not has_error(errors[i]):
                    errors[i] = f"{self.name}: {type(exc).__name__}: {exc}"
                s, p = np.zeros(0, np.float32), np.zeros((0, 1), np.float32)
            scores.append(s)
            probs.append(p)
        out = dict(batch)
        out["anomaly_scores"] = _objects(scores)
        out["class_probs"] = _objects(probs)
        out["error"] = np.array(errors, dtype=object)
        return out


def _objects(values: list[np.ndarray]) -> np.ndarray:
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr
