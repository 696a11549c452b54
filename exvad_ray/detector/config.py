"""Detector hyper-parameters. Stored inside every checkpoint so that a model rebuilds itself."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from exvad_ray.errors import ConfigError

Fusion = Literal["add", "concat", "none"]


@dataclass
class DetectorConfig:
    """Architecture of the Ex-VAD detector (defaults follow VadCLIP's UCF-Crime settings).

    `embed_dim` is the CLIP feature size D (512 for ViT-B/16, smaller for the tiny profile);
    visual and class features live in that space so that the alignment map is a cosine.
    """

    embed_dim: int = 512
    num_classes: int = 14
    visual_length: int = 256  # training length and inference chunk size (snippets)
    layers: int = 2  # local transformer blocks
    heads: int = 1
    attn_window: int = 8  # 8 on UCF-Crime, 64 on XD-Violence
    gcn_threshold: float = 0.7
    fusion: Fusion = "add"  # how the explanation feature F_T joins the visual features
    prompt_context: bool = True  # learnable per-class context added to the class embeddings
    visual_prompt: bool = True  # VadCLIP's video-conditioned class features
    tau: float = 0.07

    def __post_init__(self) -> None:
        if self.fusion not in ("add", "concat", "none"):
            raise ConfigError(f"fusion must be 'add', 'concat' or 'none', not {self.fusion!r}")
        if self.embed_dim <= 0 or self.embed_dim % 2:
            raise ConfigError(f"embed_dim must be a positive even number, not {self.embed_dim}")
        if self.embed_dim % self.heads:
            raise ConfigError(f"heads ({self.heads}) must divide embed_dim ({self.embed_dim})")
        if self.num_classes < 2:
            raise ConfigError("a label set needs Normal plus at least one anomaly class")
        if self.attn_window < 1 or self.visual_length < 1:
            raise ConfigError("attn_window and visual_length must be positive")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectorConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
