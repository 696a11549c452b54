"""Caption cleaning (LAVAD, used by Ex-VAD): each frame's caption is replaced by the caption, among all of
that video's captions, whose CLIP text embedding is most similar to the frame's CLIP image embedding."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from exvad_ray.errors import ExvadError


def clean_captions(image_features: np.ndarray, caption_features: np.ndarray, captions: Sequence[str]) -> list[str]:
    """image_features (n, D), caption_features (m, D) (one per caption) -> n cleaned captions.

    Features are L2-normalised here, so cosine similarity is used whatever the caller passed;
    ties go to the earliest caption.
    """
    img = np.asarray(image_features, dtype=np.float32)
    cap = np.asarray(caption_features, dtype=np.float32)
    captions = list(captions)
    if img.ndim != 2 or cap.ndim != 2:
        raise ExvadError(f"features must be 2-d (n, D), got {img.shape} and {cap.shape}")
    if len(captions) != len(cap):
        raise ExvadError(f"{len(captions)} captions but {len(cap)} caption features")
    if img.shape[1] != cap.shape[1]:
        raise ExvadError(f"feature sizes differ: image {img.shape[1]}, text {cap.shape[1]}")
    if len(img) == 0:
        return []
    if len(cap) == 0:
        raise ExvadError("no captions to choose from")
    img = img / np.maximum(np.linalg.norm(img, axis=1, keepdims=True), 1e-12)
    cap = cap / np.maximum(np.linalg.norm(cap, axis=1, keepdims=True), 1e-12)
    best = np.argmax(img @ cap.T, axis=1)
    return [captions[j] for j in best]
