"""Detector hyper-parameters. Stored inside every checkpoint so that a model rebuilds itself."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from exvad_ray.errors import ConfigError

Fusion = Literal["add", "concat", "none"]
ClassPooling = Literal["logits", "sigmoid"]


RENAMED = {"attn_window": "attention_block"}  # old name -> glossary name (docs/CONTRACTS.md)


@dataclass
class DetectorConfig:
    """Architecture of the Ex-VAD detector (defaults follow VadCLIP's UCF-Crime settings).

    `embed_dim` is the text/class space D (512 for CLIP ViT-B/16, 384 for MiniLM): class embeddings
    and explanation features live there, and the alignment map is a cosine in it. `visual_dim` is
    the size of the per-snippet visual features; None means embed_dim (CLIP: one shared space). When
    it differs (e.g. EfficientNet-Lite0's 1280 with MiniLM's 384) a learned linear projection maps
    visual features into embed_dim before the LGT-Adapter.
    """

    embed_dim: int = 512
    visual_dim: int | None = None  # None = embed_dim; else a learned projection visual_dim -> embed_dim
    # the detector reads features[:, visual_offset:] of each snippet: the lite profile stores [appearance |
    # motion] (2 x 1280) and its detector reads the motion half, measured better alone (bench/RESULTS.md)
    visual_offset: int = 0
    num_classes: int = 14
    visual_length: int = 256  # training length and inference chunk size (snippets)
    layers: int = 2  # local transformer blocks
    heads: int = 1
    attention_block: int = 8  # snippets per local self-attention block: 8 on UCF-Crime, 64 on XD-Violence
    gcn_threshold: float = 0.7
    fusion: Fusion = "add"  # how the explanation feature F_T joins the visual features
    prompt_context: bool = True  # learnable per-class context added to the class embeddings
    visual_prompt: bool = True  # VadCLIP's video-conditioned class features
    # weights of the video-conditioned class features: VadCLIP pools with the raw binary logits
    # ("logits", the presets); the default "sigmoid" measured better AUC/AP (docs/DETECTOR.md, deviation 2)
    class_pooling: ClassPooling = "sigmoid"
    tau: float = 0.07
    # Compute what VadCLIP's code computes (docs/DETECTOR.md, "Deviations"): padded snippets take part
    # in attention, the distance graph, the GCN residual and the class pooling. Off: padding is masked.
    reference_parity: bool = False

    def __post_init__(self) -> None:
        if self.fusion not in ("add", "concat", "none"):
            raise ConfigError(f"fusion must be 'add', 'concat' or 'none', not {self.fusion!r}")
        if self.embed_dim <= 0 or self.embed_dim % 2:
            raise ConfigError(f"embed_dim must be a positive even number, not {self.embed_dim}")
        if self.embed_dim % self.heads:
            raise ConfigError(f"heads ({self.heads}) must divide embed_dim ({self.embed_dim})")
        if self.visual_dim is not None and self.visual_dim <= 0:
            raise ConfigError(f"visual_dim must be positive, not {self.visual_dim}")
        if self.visual_offset < 0:
            raise ConfigError(f"visual_offset must be 0 or more, not {self.visual_offset}")
        if self.num_classes < 2:
            raise ConfigError("a label set needs Normal plus at least one anomaly class")
        if self.attention_block < 1 or self.visual_length < 1:
            raise ConfigError("attention_block and visual_length must be positive")
        if self.class_pooling not in ("logits", "sigmoid"):
            raise ConfigError(f"class_pooling must be 'logits' or 'sigmoid', not {self.class_pooling!r}")
        if self.reference_parity:
            self._check_parity()

    def _check_parity(self) -> None:
        """Settings VadCLIP's network cannot express are refused rather than silently approximated."""
        if self.projects_input or self.visual_offset:
            raise ConfigError("reference_parity needs visual_dim == embed_dim and no visual_offset (VadCLIP has no "
                              "input projection)")
        if self.class_pooling != "logits" or not self.visual_prompt:
            raise ConfigError("reference_parity needs visual_prompt with class_pooling='logits' (VadCLIP's pooling)")
        if self.visual_length % self.attention_block:
            raise ConfigError(f"reference_parity needs attention_block ({self.attention_block}) to divide visual_length "
                              f"({self.visual_length}): VadCLIP's mask leaves the remainder without any key (NaN)")

    @property
    def input_dim(self) -> int:
        """Size of the per-snippet features the detector takes in (it reads those from visual_offset on)."""
        return self.visual_offset + self.visual_width

    @property
    def visual_width(self) -> int:
        """Size of the part of each snippet's features the detector reads."""
        return self.embed_dim if self.visual_dim is None else self.visual_dim

    @property
    def projects_input(self) -> bool:
        return self.visual_width != self.embed_dim

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectorConfig:
        known = {f.name for f in fields(cls)}
        data = {RENAMED.get(k, k): v for k, v in data.items()}  # checkpoints written before the rename
        data.setdefault("class_pooling", "sigmoid")  # what checkpoints without the field were trained with
        return cls(**{k: v for k, v in data.items() if k in known})
