"""Label-free normality: score footage against what the archive normally shows (issue 22).

A bank of normal snippets (the labelled Normal videos, or the whole archive trimmed of its most
isolated moments) per camera and globally; a snippet's score is its cosine k-NN distance to the bank,
per half of the visual embedding ([appearance | motion] in `lite`), calibrated into the percentile of
normal footage that is less unusual; thresholds come from a target false-alarm rate. Reiss & Hoshen
use k-NN over pretrained features for video anomaly detection; this package adds the calibration,
per-camera banks, evidence and fusion with the trained detector (docs/NORMALITY.md).

Arrays only, like `exvad_ray.detector`: it imports numpy, faiss, `exvad_ray.errors` and the job's
localisation rule; reading the index and storage is the fit job's (`exvad_ray.train.normality`).
"""

from exvad_ray.normality.bank import Bank, BankBuilder, k_center
from exvad_ray.normality.calibration import (
    PercentileMap, ScoreCalibration, Threshold, calibrate_scores, count_segments, fit_threshold, localization_at,
)
from exvad_ray.normality.fusion import (
    DEFAULT_WEIGHT, WEIGHT_METRIC, WEIGHT_METRICS, average_precision, choose_weight, fuse, rank_auc,
)
from exvad_ray.normality.halves import Layout, detect_layout
from exvad_ray.normality.model import (
    COMBINE_RULES, GLOBAL, BankCalibration, NormalityModel, NormalityScores, calibrate_bank, combine, smooth_series,
)

__all__ = [
    "COMBINE_RULES", "DEFAULT_WEIGHT", "GLOBAL", "WEIGHT_METRIC", "WEIGHT_METRICS", "Bank", "BankBuilder",
    "BankCalibration", "Layout", "NormalityModel", "NormalityScores", "PercentileMap", "ScoreCalibration", "Threshold",
    "average_precision", "calibrate_bank", "calibrate_scores", "choose_weight", "combine", "count_segments",
    "detect_layout", "fit_threshold", "fuse", "k_center", "localization_at", "rank_auc", "smooth_series",
]
