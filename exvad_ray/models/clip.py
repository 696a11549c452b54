"""CLIP image and text embeddings through open_clip (numpy in, L2-normalised float32 out)."""

from __future__ import annotations

import logging
import os
from typing import Sequence

import numpy as np

from exvad_ray.errors import ConfigError
from exvad_ray.models._util import as_images, as_texts, chunks, resize_center_crop
from exvad_ray.models.profiles import ClipSpec, model_id, resolve_device, resolve_dtype

log = logging.getLogger(__name__)


def _open_clip_name(spec: ClipSpec) -> tuple[str, str | None]:
    """A plain local directory becomes open_clip's ``local-dir:`` schema; everything else passes through."""
    name = spec.model
    if not name.startswith(("local-dir:", "hf-hub:")) and os.path.isdir(os.path.expanduser(name)):
        name = "local-dir:" + os.path.expanduser(name)
    if name.startswith("local-dir:"):
        name = "local-dir:" + os.path.expanduser(name[len("local-dir:"):])
    return name, spec.pretrained


class ClipModel:
    """open_clip model loaded with ``create_model_and_transforms``; preprocessing is done batched in
    torch with the model's own constants (image size, mean, std) instead of PIL per image.
    One of the encoder kinds of models/encoders.py (``aligned``: image and text share one space)."""

    aligned = True

    def __init__(self, spec: ClipSpec):
        import open_clip
        import torch

        self.spec = spec
        self.device = resolve_device(spec.device)
        self.dtype = resolve_dtype(spec.dtype, self.device)
        name, pretrained = _open_clip_name(spec)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=pretrained, device=self.device, load_weights=True,
            )
            self.tokenizer = open_clip.get_tokenizer(name)
        except (FileNotFoundError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"cannot load CLIP model {spec.model!r} (pretrained={pretrained!r}): {exc}") from exc
        self.model = model.to(self.device, dtype=self.dtype).eval()
        pp = getattr(model.visual, "preprocess_cfg", None) or {}
        size = model.visual.image_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.mean = torch.tensor(pp.get("mean", open_clip.OPENAI_DATASET_MEAN), dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(pp.get("std", open_clip.OPENAI_DATASET_STD), dtype=torch.float32).view(1, 3, 1, 1)
        self.interpolation = pp.get("interpolation", "bicubic")
        self.model_id = model_id(spec.model) + (f":{pretrained}" if pretrained else "")
        self.dim = int(model.text_projection.shape[1] if getattr(model, "text_projection", None) is not None
                       else model.visual.output_dim)
        self.image_dim = self.text_dim = self.snippet_dim = self.dim
        self._torch = torch

    @classmethod
    def shared(cls, spec: ClipSpec) -> ClipModel:
        """The process-wide instance for this spec (``encoders.load_encoders``)."""
        from exvad_ray.models.encoders import load_encoders

        return load_encoders(spec)  # type: ignore[return-value]

    def _preprocess(self, images: np.ndarray):
        """uint8 NHWC -> normalised NCHW: resize the shorter side to the model size, centre crop."""
        x = resize_center_crop(images, self.image_size, self.device, self.interpolation)
        x = (x / 255.0 - self.mean.to(x.device)) / self.std.to(x.device)
        return x.to(self.dtype)

    def embed_images(self, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """uint8 (N, H, W, 3) RGB of any size -> float32 (N, D), L2-normalised."""
        images = as_images(images)
        torch = self._torch
        out = []
        with torch.inference_mode():
            for sl in chunks(len(images), self.spec.batch_size):
                feats = self.model.encode_image(self._preprocess(images[sl]), normalize=True)
                out.append(feats.float().cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    def embed_snippets(self, sequences: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Each snippet's feature is its frame's image feature (encoders.frame_snippets)."""
        from exvad_ray.models.encoders import frame_snippets

        return frame_snippets(self, sequences)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """list of str -> float32 (N, D), L2-normalised (truncated to the model's context length)."""
        texts = as_texts(texts)
        torch = self._torch
        out = []
        with torch.inference_mode():
            for sl in chunks(len(texts), self.spec.text_batch_size):
                tokens = self.tokenizer(texts[sl]).to(self.device)
                feats = self.model.encode_text(tokens, normalize=True)
                out.append(feats.float().cpu().numpy())
        return np.concatenate(out).astype(np.float32)
