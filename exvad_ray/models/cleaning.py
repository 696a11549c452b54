"""Caption cleaning. Aligned encoders (CLIP): LAVAD's rule, used by Ex-VAD: each frame's caption is replaced
by the caption, among all of that window's captions, whose CLIP text embedding is most similar to the
frame's CLIP image embedding. Encoders that are not aligned (lite): :func:`clean_tag_captions`."""

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


def clean_tag_captions(probs: np.ndarray, captions: Sequence[str], min_prob: float, max_tags: int) -> list[str]:
    """Caption cleaning for encoders that are not aligned (``lite``): CLIP image-text retrieval is not
    possible, so keyframe captions are checked against their own confidence and their neighbours.

    Rule, per keyframe i of one window (probs (n, 1000) from the ImageNet head, captions (n,)):
    1. low confidence: no class reaches ``min_prob`` -> dropped;
    2. contradiction: both neighbours i-1 and i+1 share a tag with each other but neither shares
       one with i (an isolated flicker between two agreeing frames) -> dropped.
    A dropped caption becomes "" (the prompt shows "(no caption)"; summaries skip it), so captions
    stay aligned with their keyframe times. Kept captions are unchanged.
    """
    from exvad_ray.models.tag_captioner import frame_tags

    probs = np.asarray(probs, dtype=np.float32)
    captions = list(captions)
    if probs.ndim != 2 or len(probs) != len(captions):
        raise ExvadError(f"{len(captions)} captions but class probabilities of shape {probs.shape}")
    tags = [set(frame_tags(p, min_prob, max_tags)) for p in probs]
    out = []
    for i, cap in enumerate(captions):
        flicker = 0 < i < len(tags) - 1 and bool(tags[i - 1] & tags[i + 1]) and \
            not (tags[i] & (tags[i - 1] | tags[i + 1]))
        out.append("" if not tags[i] or flicker else cap)
    return out


def row_cleaner(encoders: object, batch_captions: Sequence[Sequence[str]], captioner: object):
    """A function ``(keyframe_embedding (n, D), captions (n,)) -> cleaned captions`` for one batch:
    CLIP image-text retrieval for aligned encoders (one text-encoder call for the batch's distinct
    captions), the tag rule of :func:`clean_tag_captions` otherwise."""
    if getattr(encoders, "aligned", True):
        uniq = sorted({c for cs in batch_captions for c in cs})
        table = dict(zip(uniq, encoders.embed_texts(uniq))) if uniq else {}  # type: ignore[attr-defined]
        return lambda img, cs: clean_captions(img, np.stack([table[c] for c in cs]), cs)
    min_prob, max_tags = captioner.min_prob, captioner.max_tags  # type: ignore[attr-defined]
    return lambda img, cs: clean_tag_captions(encoders.classify_features(img), cs,  # type: ignore[attr-defined]
                                              min_prob, max_tags)
