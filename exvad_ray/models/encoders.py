"""The encoder interface the stages use, and its one factory.

Every profile's ``clip`` entry names a kind of encoders; all kinds offer the same small interface, so
the paper's CLIP, the tiny models and the ``lite`` profile run through the same stage code:

- ``embed_images(uint8 NHWC) -> float32 (N, image_dim)`` (visual features per frame),
- ``embed_snippets(list of uint8 (T_i, H, W, 3)) -> list of float32 (T_i, snippet_dim)``: the features of
  each sequence's snippets (one frame per snippet, in time order). CLIP's is the frame's image feature
  (``snippet_dim == image_dim``); ``lite`` with ``motion`` appends a motion feature made from the
  neighbouring snippets of the same sequence (``snippet_dim == 2 * image_dim``),
- ``embed_texts(list[str]) -> float32 (N, text_dim)``, L2-normalised,
- ``image_dim``, ``text_dim``, ``model_id``, and ``aligned``: whether images and texts share one space
  (CLIP: yes, so captions can be cleaned and snippets scored zero-shot by image-text similarity;
  ``lite``: no, so both go through captions and text-to-text similarity instead).
"""

from __future__ import annotations

import importlib
from typing import Protocol, Sequence

import numpy as np

from exvad_ray.models.profiles import ClipSpec

# kind -> (module, class): the architectures themselves are data (architectures/*.json).
ENCODER_KINDS: dict[str, tuple[str, str]] = {
    "open_clip": ("exvad_ray.models.clip", "ClipModel"),
    "lite": ("exvad_ray.models.lite", "LiteEncoders"),
}


class Encoders(Protocol):
    aligned: bool
    image_dim: int
    text_dim: int
    model_id: str

    snippet_dim: int

    def embed_images(self, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray: ...

    def embed_snippets(self, sequences: Sequence[np.ndarray]) -> list[np.ndarray]: ...

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...


def split_rows(feats: np.ndarray, sequences: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Rows of one concatenated result back into per-sequence arrays."""
    bounds = np.cumsum([len(s) for s in sequences])[:-1]
    return list(np.split(feats, bounds)) if len(sequences) else []


def frame_snippets(encoders: Encoders, sequences: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Snippet features that are the frames' own image features, in as few model calls as possible."""
    if not len(sequences):
        return []
    return split_rows(encoders.embed_images(np.concatenate(list(sequences))), sequences)


_SHARED: dict[str, Encoders] = {}


def load_encoders(spec: ClipSpec) -> Encoders:
    """One instance per spec and process: the image, cleaning, text and scoring stages that run in one
    actor (the fused CPU pipeline) hold one copy of the weights, loaded once. Inference only, so
    sharing is safe."""
    key = spec.model_dump_json()
    if key not in _SHARED:
        module, cls = ENCODER_KINDS[spec.kind]
        _SHARED[key] = getattr(importlib.import_module(module), cls)(spec)
    return _SHARED[key]
