"""Detector checkpoints at storage URIs. The detector package works on bytes
(`ExVADDetector.from_bytes` / `to_bytes`) and never touches storage; this module is the caller side
that reads and writes them (a local path, file:// or s3://)."""

from __future__ import annotations

from typing import TYPE_CHECKING

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
