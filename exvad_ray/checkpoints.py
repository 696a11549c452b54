"""Detector checkpoints at storage URIs. The detector package works on bytes
(`ExVADDetector.from_bytes` / `to_bytes`) and never touches storage; this module is the caller side
that reads and writes them (a local path, file:// or s3://). Normality models (`exvad_ray.normality`,
also bytes only) are saved and loaded here the same way."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from exvad_ray import storage
from exvad_ray.errors import ExvadError

if TYPE_CHECKING:  # the detector imports torch (about 3 s); ids and URIs do not need it
    from exvad_ray.detector import ExVADDetector

CHECKPOINT_FILE = "model.pt"


def checkpoint_uri(uri: str) -> str:
    """`uri` itself when it names a file, else `<uri>/model.pt` (a run folder)."""
    if not uri.endswith(".pt") and storage.exists(storage.join(uri, CHECKPOINT_FILE)):
        return storage.join(uri, CHECKPOINT_FILE)
    return uri


def check_checkpoint(uri: str, option: str = "--detector") -> str:
    """Before any cluster starts: `uri` (model.pt, or a folder holding one) exists and is a torch
    checkpoint archive (a zip holding `data.pkl`, read without importing torch); returns the file's
    URI. The weights themselves are checked where they are loaded. ConfigError names `option`."""
    import zipfile

    from exvad_ray.errors import ConfigError

    target = uri if uri.endswith(".pt") else storage.join(uri, CHECKPOINT_FILE)
    if not storage.exists(target):
        raise ConfigError(f"{option}: no checkpoint at {uri} (expected a model.pt or a folder holding one)")
    with storage.open_file(target, "rb") as f:
        try:
            with zipfile.ZipFile(f) as z:
                ok = any(n == "data.pkl" or n.endswith("/data.pkl") for n in z.namelist())
        except (zipfile.BadZipFile, OSError, ValueError):
            ok = False
    if not ok:
        raise ConfigError(f"{option}: {target} is not a detector checkpoint (not a torch checkpoint archive: "
                          "damaged, or another kind of file)")
    return target


def model_card_uri(checkpoint: str) -> str:
    """`model_card.json` beside a checkpoint file (`exvad train` writes both into one folder)."""
    return checkpoint.rsplit("/", 1)[0] + "/model_card.json"


def detector_id(uri: str) -> str:
    """Content id of a checkpoint, "det-" + 12 hex digits of its SHA-256: the same weights anywhere
    have the same id (scorings and model-card lineage name detectors by it)."""
    import hashlib

    target = checkpoint_uri(uri)
    if not storage.exists(target):
        raise ExvadError(f"no detector checkpoint at {uri}")
    return "det-" + hashlib.sha256(storage.read_bytes(target)).hexdigest()[:12]


def load_detector(uri: str, device: str | None = None) -> ExVADDetector:
    """Load `model.pt` (or a folder holding it) from any storage URI; device None: CUDA when present."""
    from exvad_ray.detector import ExVADDetector

    target = checkpoint_uri(uri)
    if not storage.exists(target):
        raise ExvadError(f"no detector checkpoint at {uri}")
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return ExVADDetector.from_bytes(storage.read_bytes(target), device)


def save_detector(detector: ExVADDetector, uri: str) -> None:
    storage.write_bytes(uri, detector.to_bytes())


# ------------------------------------------------------------------ normality models (exvad_ray.normality)
# Bytes only, like the detector's: `NormalityModel.from_bytes(read_normality(uri))`. checkpoints and
# normality stand on the same floor (docs/ARCHITECTURE.md), so neither imports the other.

NORMALITY_FILE = "normality.npz"


class _Serialisable(Protocol):
    card: dict[str, Any]

    def to_bytes(self) -> bytes: ...


def normality_uri(uri: str) -> str:
    """`uri` itself when it names the .npz, else `<uri>/normality.npz` (the folder `exvad normality fit
    --out` writes, beside its model_card.json)."""
    return uri if uri.endswith(".npz") else storage.join(uri, NORMALITY_FILE)


def save_normality(model: _Serialisable, uri: str) -> str:
    """Write a `NormalityModel` and its card (model_card.json beside it); returns the model's URI."""
    import json

    target = normality_uri(uri)
    storage.write_bytes(target, model.to_bytes())
    storage.write_bytes(model_card_uri(target), json.dumps(model.card, indent=1, default=str).encode())
    return target


def read_normality(uri: str) -> bytes:
    """The bytes of a normality model (its .npz or the folder holding it) at any storage URI."""
    target = normality_uri(uri)
    if not storage.exists(target):
        raise ExvadError(f"no normality model at {uri} (write one with `exvad normality fit`)")
    return storage.read_bytes(target)
