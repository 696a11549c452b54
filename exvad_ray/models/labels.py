"""Label sets and label augmentation (Ex-VAD LAAM): per class, m descriptive sentences; the top-k most
similar to the label's own embedding are kept and merged with it into the class embedding."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from exvad_ray.errors import ConfigError
from exvad_ray.models.profiles import resolve_config

if TYPE_CHECKING:  # pragma: no cover
    from exvad_ray.models.encoders import Encoders


class LabelClass(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    prompt: str | None = None  # label text embedded as the label embedding; default: the name, lower case
    descriptions: list[str] = Field(default_factory=list)

    @property
    def label_text(self) -> str:
        return self.prompt or self.name.lower()


class LabelSet(BaseModel):
    """A taxonomy: the normal class first, then the anomaly classes in file order."""

    model_config = ConfigDict(extra="forbid")

    name: str
    normal: str = "Normal"
    classes: list[LabelClass]

    @model_validator(mode="after")
    def _normal_first(self) -> "LabelSet":
        names = [c.name for c in self.classes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate class names: {dupes}")
        others = [c for c in self.classes if c.name != self.normal]
        normal = next((c for c in self.classes if c.name == self.normal), None) or LabelClass(name=self.normal)
        self.classes = [normal, *others]
        if not others:
            raise ValueError("a label set needs at least one class besides the normal one")
        return self

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def anomaly_classes(self) -> list[str]:
        return self.class_names[1:]


def load_label_set(name_or_path: str | os.PathLike) -> LabelSet:
    """Load ``configs/labels/<name>.yaml`` (``ucf-crime`` -> ``ucf_crime.yaml``) or a YAML path."""
    path = resolve_config("labels", name_or_path)
    try:
        raw = yaml.safe_load(path.read_text())
        if not isinstance(raw, dict):
            raise ConfigError(f"label set {path} must be a mapping")
        raw.setdefault("name", path.stem)
        return LabelSet.model_validate(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"label set {path} is not valid YAML: {exc}") from exc
    except ValidationError as exc:
        raise ConfigError(f"label set {path} is invalid:\n{exc}") from exc


def select_top_k(label_feature: np.ndarray, description_features: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k descriptions most similar (cosine) to the label embedding, best first, ties to
    the earlier sentence. Fewer than k descriptions keeps all of them."""
    if len(description_features) == 0:
        return np.zeros(0, dtype=np.int64)
    lab = label_feature / max(float(np.linalg.norm(label_feature)), 1e-12)
    desc = description_features / np.maximum(np.linalg.norm(description_features, axis=1, keepdims=True), 1e-12)
    sims = desc @ lab
    return np.argsort(-sims, kind="stable")[: min(k, len(sims))]


def merge_class_embedding(label_feature: np.ndarray, selected_features: np.ndarray) -> np.ndarray:
    """The class embedding: mean of the label embedding and its selected description embeddings, L2-normalised."""
    stack = np.concatenate([label_feature[None, :], selected_features], axis=0) if len(selected_features) else \
        label_feature[None, :]
    merged = stack.mean(axis=0)
    return (merged / max(float(np.linalg.norm(merged)), 1e-12)).astype(np.float32)


def class_embeddings(clip: "Encoders", label_set: LabelSet | str, k: int = 4
                     ) -> tuple[np.ndarray, dict[str, list[str]]]:
    """(C, D) float32 class embeddings in ``label_set.class_names`` order, and the selected sentences."""
    if isinstance(label_set, (str, os.PathLike)):
        label_set = load_label_set(label_set)
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    labels = clip.embed_texts([c.label_text for c in label_set.classes])
    texts = [d for c in label_set.classes for d in c.descriptions]
    desc = clip.embed_texts(texts) if texts else np.zeros((0, labels.shape[1]), np.float32)
    out = np.zeros((len(label_set.classes), labels.shape[1]), dtype=np.float32)
    selected: dict[str, list[str]] = {}
    start = 0
    for i, c in enumerate(label_set.classes):
        feats = desc[start:start + len(c.descriptions)]
        start += len(c.descriptions)
        idx = select_top_k(labels[i], feats, k)
        selected[c.name] = [c.descriptions[j] for j in idx]
        out[i] = merge_class_embedding(labels[i], feats[idx])
    return out, selected


def label_set_embeddings(label_set: LabelSet | str, profile: Any = "lite", k: int = 4
                         ) -> tuple[np.ndarray, list[str]]:
    """Class embeddings (C, D) and class names (normal first) of a label set, with the profile's text
    encoder (one shared instance per process). The one way the scorer, the trainer and the CLI get them."""
    from exvad_ray.models.encoders import load_encoders
    from exvad_ray.models.profiles import load_profile

    if isinstance(label_set, (str, os.PathLike)):
        label_set = load_label_set(label_set)
    emb, _selected = class_embeddings(load_encoders(load_profile(profile).clip), label_set, k=k)
    return np.asarray(emb, np.float32), list(label_set.class_names)
