"""Zero-shot scoring without a trained detector, for every kind of encoders.

- Aligned encoders (CLIP): each snippet's image feature against the label-augmented class
  embeddings, softmax(cos / 0.07) (``detector.inference.ZeroShotScorer``), as in the paper.
- Encoders that are not aligned (``lite``): text to text, in the spirit of LAVAD's scoring from
  captions. Each snippet gets the tag caption of its own frame (the ImageNet head applied to its
  stored features, so nothing is decoded again), the caption is embedded with the text encoder, and
  that embedding is scored against the same label-augmented class embeddings (label text and its top-k
  descriptions, embedded by the same text encoder). Anomaly score = 1 - p(Normal).

Both expose ``score(features (T, D_image), text_feature=None) -> (scores (T,), probs (T, C))``,
``predict_video`` and ``class_names``, like a trained detector.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from exvad_ray.models.tag_captioner import tag_caption


class CaptionZeroShotScorer:
    """Snippet features -> tag captions -> text embeddings -> class probabilities (see the module doc)."""

    def __init__(self, encoders: Any, class_embeddings: np.ndarray, class_names: list[str],
                 min_prob: float, max_tags: int, tau: float = 0.07):
        from exvad_ray.detector.inference import ZeroShotScorer

        self.encoders, self.min_prob, self.max_tags = encoders, min_prob, max_tags
        self.text_scorer = ZeroShotScorer(class_embeddings, class_names, tau)
        self.class_names = list(class_names)
        self._cache: dict[str, np.ndarray] = {}  # tag captions repeat a lot

    def captions(self, features: np.ndarray) -> list[str]:
        probs = self.encoders.classify_features(features)
        names = self.encoders.class_names
        return [tag_caption(p, names, self.min_prob, self.max_tags) for p in probs]

    def score(self, features: np.ndarray, text_feature: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        feats = np.asarray(features, np.float32)
        if len(feats) == 0:
            return np.zeros(0, np.float32), np.zeros((0, len(self.class_names)), np.float32)
        caps = self.captions(feats)
        new = sorted({c for c in caps if c not in self._cache})
        if new:
            self._cache.update(zip(new, self.encoders.embed_texts(new)))
        return self.text_scorer.score(np.stack([self._cache[c] for c in caps]))

    def predict_video(self, features: np.ndarray, text_feature: np.ndarray | None = None):
        from exvad_ray.detector.video_level import video_prediction

        scores, probs = self.score(features, text_feature)
        return scores, probs, video_prediction(scores, probs, self.class_names)


def zero_shot_scorer(profile: Any, label_set: Any, k: int | None = None) -> Any:
    """The profile's zero-shot scorer: CLIP image-text for aligned encoders, captions-to-text otherwise."""
    from exvad_ray.detector.inference import ZeroShotScorer
    from exvad_ray.models.encoders import load_encoders
    from exvad_ray.models.labels import label_set_embeddings
    from exvad_ray.models.profiles import load_profile

    prof = load_profile(profile)
    emb, names = label_set_embeddings(label_set, prof, k=k or prof.label_k)
    enc = load_encoders(prof.clip)
    if enc.aligned:
        return ZeroShotScorer(emb, names)
    return CaptionZeroShotScorer(enc, emb, names, prof.captioner.min_prob, prof.captioner.max_tags)
