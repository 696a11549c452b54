"""The tag captioner of the ``lite`` profile: no language model, the ImageNet head of the visual encoder.

A keyframe's caption is a short sentence of its top ImageNet classes (at most ``max_tags``) whose
probability is at least ``min_prob``: "a frame showing volcano, fountain and stage." When no class
reaches the floor the caption says so: "an unclear frame, perhaps volcano." Every word comes from a
fixed template or from timm's ImageNet-1k class names, so it never invents text. Honest and cheap: it
reuses the features the image stage already computed (the head is one linear layer on them).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from exvad_ray.models._util import as_images
from exvad_ray.models.profiles import CaptionerSpec, ClipSpec

CAPTION_PREFIX = "a frame showing"
UNCLEAR_PREFIX = "an unclear frame, perhaps"
TEMPLATE_WORDS = frozenset({"a", "an", "frame", "showing", "unclear", "perhaps", "and"})


def frame_tags(probs: np.ndarray, min_prob: float, max_tags: int) -> list[int]:
    """Indices of the top classes with probability >= min_prob (best first, at most max_tags)."""
    order = np.argsort(-np.asarray(probs), kind="stable")[:max_tags]
    return [int(j) for j in order if probs[j] >= min_prob]


def tag_caption(probs: np.ndarray, class_names: Sequence[str], min_prob: float, max_tags: int) -> str:
    """One keyframe's caption from its ImageNet class probabilities (1000,)."""
    tags = [class_names[j] for j in frame_tags(probs, min_prob, max_tags)]
    if not tags:
        return f"{UNCLEAR_PREFIX} {class_names[int(np.argmax(probs))]}."
    listed = tags[0] if len(tags) == 1 else ", ".join(tags[:-1]) + " and " + tags[-1]
    return f"{CAPTION_PREFIX} {listed}."


class TagCaptioner:
    """``caption(uint8 NHWC) -> list[str]`` with the shared ``lite`` encoders' ImageNet head."""

    def __init__(self, spec: CaptionerSpec, encoders: object | None = None):
        from exvad_ray.models.encoders import load_encoders

        self.spec = spec
        self.encoders = encoders or load_encoders(ClipSpec(kind="lite", model=spec.model, device=spec.device,
                                                           dtype=spec.dtype, batch_size=spec.batch_size))
        self.model_id = f"imagenet-tags/{spec.model}@p{spec.min_prob:g}k{spec.max_tags}"

    def tag_probs(self, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        return self.encoders.classify_images(as_images(images))  # type: ignore[attr-defined]

    def caption(self, images: np.ndarray | Sequence[np.ndarray]) -> list[str]:
        names = self.encoders.class_names  # type: ignore[attr-defined]
        return [tag_caption(p, names, self.spec.min_prob, self.spec.max_tags) for p in self.tag_probs(images)]


def build_captioner(profile: object) -> object:
    """The profile's captioner: a transformers image-to-text model or the ImageNet tag captioner (which
    shares the profile's ``lite`` encoders when they hold the same visual model)."""
    spec = profile.captioner  # type: ignore[attr-defined]
    if spec.kind == "imagenet-tags":
        from exvad_ray.models.encoders import load_encoders

        enc = profile.clip  # type: ignore[attr-defined]
        return TagCaptioner(spec, load_encoders(enc) if enc.kind == "lite" and enc.model == spec.model else None)
    from exvad_ray.models.captioner import Captioner

    return Captioner(spec)
