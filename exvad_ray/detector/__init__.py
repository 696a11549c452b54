"""Ex-VAD detector: network, losses, checkpoints and the scoring API the pipeline calls."""

from exvad_ray.detector.config import DetectorConfig
from exvad_ray.detector.inference import (
    CHECKPOINT_FORMAT,
    ExVADDetector,
    VideoPrediction,
    ZeroShotScorer,
    video_prediction,
)
from exvad_ray.detector.losses import LossWeights, exvad_loss, mil_align, mil_bce, normal_contrast, topk_mean
from exvad_ray.detector.model import DetectorOutput, ExVADNet

__all__ = [
    "CHECKPOINT_FORMAT", "DetectorConfig", "DetectorOutput", "ExVADDetector", "ExVADNet", "LossWeights",
    "VideoPrediction", "ZeroShotScorer", "exvad_loss", "mil_align", "mil_bce", "normal_contrast",
    "topk_mean", "video_prediction",
]
