"""Ex-VAD detector: network, losses, checkpoints and the scoring API the pipeline calls.

Exports resolve lazily, so that torch-free users (the pipeline's assembler needs only
`video_prediction`) do not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DetectorConfig": "config",
    "CHECKPOINT_FORMAT": "inference", "ExVADDetector": "inference", "ZeroShotScorer": "inference",
    "VideoPrediction": "video_level", "video_prediction": "video_level",
    "LossWeights": "losses", "exvad_loss": "losses", "mil_align": "losses", "mil_bce": "losses",
    "normal_contrast": "losses", "topk_mean": "losses",
    "DetectorOutput": "model", "ExVADNet": "model",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'exvad_ray.detector' has no attribute {name!r}")
    return getattr(importlib.import_module(f"exvad_ray.detector.{_EXPORTS[name]}"), name)
