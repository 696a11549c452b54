"""Scoring API used by the pipeline: a trained detector from checkpoint bytes (callers read storage:
exvad_ray.checkpoints), or a zero-shot scorer (class embeddings only) when no checkpoint exists yet."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from exvad_ray.detector.config import DetectorConfig
from exvad_ray.detector.model import ExVADNet
from exvad_ray.detector.video_level import VideoPrediction, video_prediction  # noqa: F401 - re-exported
from exvad_ray.errors import ExvadError

CHECKPOINT_FORMAT = "exvad-detector/1"


def _check_inputs(features: np.ndarray, dim: int) -> np.ndarray:
    feats = np.asarray(features, dtype=np.float32)
    if feats.ndim != 2 or feats.shape[1] != dim:
        raise ExvadError(f"features must have shape (T, {dim}), got {feats.shape}")
    return feats


@dataclass
class ExVADDetector:
    """A trained detector. `score` handles any length by chunks of `config.visual_length`."""

    net: ExVADNet
    class_names: list[str]
    meta: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"

    @property
    def config(self) -> DetectorConfig:
        return self.net.config

    @classmethod
    def build(cls, config: DetectorConfig, class_embeddings: np.ndarray, class_names: list[str]) -> ExVADDetector:
        if len(class_names) != len(class_embeddings):
            raise ExvadError(f"{len(class_names)} class names for {len(class_embeddings)} class embeddings")
        if class_names[0].lower() != "normal":
            raise ExvadError(f"class 0 must be Normal, got {class_names[0]!r}")
        net = ExVADNet(config, torch.as_tensor(np.asarray(class_embeddings, np.float32)))
        return cls(net.eval(), list(class_names))

    # checkpoints ---------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"format": CHECKPOINT_FORMAT, "config": self.config.to_dict(),
                "class_names": list(self.class_names),
                "state_dict": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
                "meta": self.meta}

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        torch.save(self.state(), buf)
        return buf.getvalue()

    @classmethod
    def from_state(cls, state: dict[str, Any], device: str = "cpu") -> ExVADDetector:
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ExvadError(f"not an Ex-VAD detector checkpoint (format {state.get('format')!r})")
        config = DetectorConfig.from_dict(state["config"])
        net = ExVADNet(config, state["state_dict"]["class_embeddings"])
        net.load_state_dict(state["state_dict"])
        return cls(net.to(device).eval(), list(state["class_names"]), dict(state.get("meta") or {}), device)

    @classmethod
    def from_bytes(cls, data: bytes, device: str = "cpu") -> ExVADDetector:
        try:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as exc:  # corrupt or foreign file
            raise ExvadError(f"cannot read detector checkpoint: {exc}") from exc
        return cls.from_state(state, device)

    # scoring -------------------------------------------------------------------------------
    @torch.no_grad()
    def logits(self, features: np.ndarray, text_feature: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(binary logits (T,), alignment logits (T,C)) for one video of any length."""
        feats = _check_inputs(features, self.config.input_dim)
        t, chunk = len(feats), self.config.visual_length  # chunks of visual_length snippets, the last padded
        c = self.config.num_classes
        if t == 0:
            return np.zeros(0, np.float32), np.zeros((0, c), np.float32)
        if t < chunk and not self.config.reference_parity:
            # Padding is masked out of attention, the graphs and the GCN's conv (it stays zero), so a
            # short video scored unpadded gives the same logits (to float rounding) at a fraction of
            # the work: 5x less per video at ~22 snippets (bench/RESULTS.md, rescore). VadCLIP's
            # code lets padding take part, so reference parity keeps the full chunk.
            chunk = t
        n = -(-t // chunk)
        padded = np.zeros((n * chunk, feats.shape[1]), np.float32)
        padded[:t] = feats
        x = torch.from_numpy(padded.reshape(n, chunk, -1)).to(self.device)
        lengths = torch.tensor([min(chunk, t - i * chunk) for i in range(n)], device=self.device)
        text = has = None
        if text_feature is not None:
            tf = np.asarray(text_feature, np.float32).reshape(-1)
            if tf.shape[0] != self.config.embed_dim:
                raise ExvadError(f"text feature must have {self.config.embed_dim} values, got {tf.shape[0]}")
            text = torch.from_numpy(tf).to(self.device)[None].expand(n, -1)
            has = torch.ones(n, dtype=torch.bool, device=self.device)
        out = self.net(x, lengths, text, has)
        b = out.binary_logits.reshape(-1)[:t].float().cpu().numpy()
        a = out.align_logits.reshape(n * chunk, -1)[:t].float().cpu().numpy()
        return b, a

    def score(self, features: np.ndarray, text_feature: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(anomaly scores (T,) from the binary head, class probabilities (T,C) from the alignment map)."""
        b, a = self.logits(features, text_feature)
        scores = 1.0 / (1.0 + np.exp(-b))
        probs = torch.softmax(torch.from_numpy(a), dim=-1).numpy()
        return scores.astype(np.float32), probs.astype(np.float32)

    def predict_video(self, features: np.ndarray, text_feature: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, VideoPrediction]:
        scores, probs = self.score(features, text_feature)
        return scores, probs, video_prediction(scores, probs, self.class_names)


@dataclass
class ZeroShotScorer:
    """No trained weights: class probabilities softmax(cos(F, F_L)/tau), anomaly = 1 - p(Normal)."""

    class_embeddings: np.ndarray
    class_names: list[str]
    tau: float = 0.07

    def __post_init__(self) -> None:
        emb = np.asarray(self.class_embeddings, np.float32)
        if emb.ndim != 2 or len(emb) != len(self.class_names):
            raise ExvadError(f"class embeddings {emb.shape} do not match {len(self.class_names)} class names")
        self._emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)

    def score(self, features: np.ndarray, text_feature: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        feats = _check_inputs(features, self._emb.shape[1])
        f = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
        logits = f @ self._emb.T / self.tau
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        return (1.0 - probs[:, 0]).astype(np.float32), probs.astype(np.float32)

    def predict_video(self, features: np.ndarray, text_feature: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, VideoPrediction]:
        scores, probs = self.score(features, text_feature)
        return scores, probs, video_prediction(scores, probs, self.class_names)
