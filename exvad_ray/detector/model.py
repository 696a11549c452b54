"""The Ex-VAD detector network: LGT-Adapter (local transformer + GCN), explanation fusion,
binary head and label-augmented alignment. Inputs are precomputed CLIP features, so the
network is small and trains on CPUs as well as GPUs."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from exvad_ray.detector.config import DetectorConfig


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def _mlp(width: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, width * 4), QuickGELU(), nn.Linear(width * 4, width))


def valid_mask(lengths: torch.Tensor, t: int) -> torch.Tensor:
    """(B,) lengths -> (B,T) bool, True on real snippets."""
    return torch.arange(t, device=lengths.device)[None, :] < lengths[:, None]


def local_attention_mask(t: int, block: int, valid: torch.Tensor, mask_padding: bool = True) -> torch.Tensor:
    """Attention blocks of `block` snippets on the diagonal (VadCLIP), restricted to real keys unless
    `mask_padding` is off (VadCLIP's code: padded keys take part): (B,1,T,T) bool, True = may attend.
    A query always sees itself so that fully padded blocks never produce NaN."""
    idx = torch.arange(t, device=valid.device)
    same = (idx[:, None] // block) == (idx[None, :] // block)
    allowed = same[None] & (valid[:, None, :] if mask_padding else torch.ones_like(valid)[:, None, :])
    allowed = allowed | torch.eye(t, dtype=torch.bool, device=valid.device)[None]
    return allowed[:, None]


class LocalAttentionBlock(nn.Module):
    """Pre-norm transformer block (CLIP style) with a boolean attention mask."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, width * 3)
        self.proj = nn.Linear(width, width)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = _mlp(width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, w = x.shape
        q, k, v = self.qkv(self.ln_1(x)).chunk(3, dim=-1)
        q, k, v = (z.view(b, t, self.heads, w // self.heads).transpose(1, 2) for z in (q, k, v))
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.proj(att.transpose(1, 2).reshape(b, t, w))
        return x + self.mlp(self.ln_2(x))


class GraphConvolution(nn.Module):
    """GCN layer with residual (identity, or a width-5 Conv1d when widths differ), as in VadCLIP."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        nn.init.xavier_uniform_(self.weight)
        self.residual: nn.Module | None = (
            None if in_features == out_features else nn.Conv1d(in_features, out_features, 5, padding=2)
        )

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        out = adj @ (x @ self.weight)
        res = x if self.residual is None else self.residual(x.transpose(1, 2)).transpose(1, 2)
        return out + res


def similarity_adjacency(x: torch.Tensor, valid: torch.Tensor, threshold: float) -> torch.Tensor:
    """Cosine similarity, values <= threshold set to 0, row softmax over real snippets only."""
    xn = F.normalize(x, dim=-1, eps=1e-20)
    sim = xn @ xn.transpose(1, 2)
    sim = torch.where(sim > threshold, sim, torch.zeros_like(sim))
    sim = sim.masked_fill(~valid[:, None, :], float("-inf"))
    adj = torch.softmax(sim, dim=-1)
    return adj * valid[:, :, None]


def distance_adjacency(valid: torch.Tensor, mask_padding: bool = True) -> torch.Tensor:
    """exp(-|i-j|/e) (VadCLIP's DistanceAdj) between real snippets, zero elsewhere; over all
    positions when `mask_padding` is off (VadCLIP's code)."""
    t = valid.shape[1]
    idx = torch.arange(t, device=valid.device, dtype=torch.float32)
    dist = torch.exp(-(idx[:, None] - idx[None, :]).abs() / math.e)
    if not mask_padding:
        return dist[None].expand(valid.shape[0], -1, -1)
    return dist[None] * (valid[:, :, None] & valid[:, None, :])


@dataclass
class DetectorOutput:
    binary_logits: torch.Tensor  # (B,T) before sigmoid
    align_logits: torch.Tensor  # (B,T,C) cosine / tau
    class_features: torch.Tensor  # (C,D) class embeddings with learned context (for the contrast loss)
    features: torch.Tensor  # (B,T,D) fused features F_F


class ExVADNet(nn.Module):
    """Ex-VAD's multimodal detection module over precomputed CLIP features.

    forward(features (B,T,V), lengths (B,), text (B,D) or None, has_text (B,) bool or None), where
    V = config.input_dim (the visual feature size) and D = config.embed_dim (the class/text space).
    """

    def __init__(self, config: DetectorConfig, class_embeddings: torch.Tensor):
        super().__init__()
        c, d = class_embeddings.shape
        if d != config.embed_dim or c != config.num_classes:
            raise ValueError(f"class embeddings {tuple(class_embeddings.shape)} do not match config "
                             f"(C={config.num_classes}, D={config.embed_dim})")
        self.config = config
        w, half = d, d // 2
        self.register_buffer("class_embeddings", class_embeddings.detach().float().clone())
        # visual features from a non-CLIP encoder enter the class/text space through a learned map
        self.input_proj = nn.Linear(config.visual_width, d) if config.projects_input else None
        self.position = nn.Embedding(config.visual_length, w)
        nn.init.normal_(self.position.weight, std=0.01)
        self.blocks = nn.ModuleList(LocalAttentionBlock(w, config.heads) for _ in range(config.layers))
        self.gc1, self.gc2 = GraphConvolution(w, half), GraphConvolution(half, half)
        self.gc3, self.gc4 = GraphConvolution(w, half), GraphConvolution(half, half)
        self.linear = nn.Linear(w, w)
        self.gelu = QuickGELU()
        if config.fusion == "add":
            self.text_proj = nn.Linear(d, w)
        elif config.fusion == "concat":
            self.fuse = nn.Linear(2 * w, w)
            with torch.no_grad():  # start as "visual features unchanged"; text weights learn
                self.fuse.weight[:, :w].copy_(torch.eye(w))
                self.fuse.weight[:, w:].normal_(std=0.01)
                self.fuse.bias.zero_()
        self.mlp2 = _mlp(w)
        self.classifier = nn.Linear(w, 1)
        if config.prompt_context:
            self.context = nn.Parameter(torch.zeros(c, d))
        if config.visual_prompt:
            self.mlp1 = _mlp(d)

    def encode_video(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """LGT-Adapter: local transformer then GCN over similarity and distance graphs. Padded
        snippets are masked out everywhere unless `reference_parity` (VadCLIP masks only the
        similarity graph)."""
        t = x.shape[1]
        mask_padding = not self.config.reference_parity
        x = x + self.position.weight[:t][None]
        mask = local_attention_mask(t, self.config.attention_block, valid, mask_padding)
        for block in self.blocks:
            x = block(x, mask)
        # padding stays zero so the GCN's residual conv sees no junk
        keep = valid[..., None].to(x.dtype) if mask_padding else torch.ones_like(x[..., :1])
        x = x * keep
        adj = similarity_adjacency(x, valid, self.config.gcn_threshold)
        dis = distance_adjacency(valid, mask_padding)
        x1 = self.gelu(self.gc2(self.gelu(self.gc1(x, adj)) * keep, adj))
        x2 = self.gelu(self.gc4(self.gelu(self.gc3(x, dis)) * keep, dis))
        return self.linear(torch.cat((x1, x2), dim=2))

    def fuse_text(self, v: torch.Tensor, text: torch.Tensor | None, has_text: torch.Tensor | None) -> torch.Tensor:
        """F_F from the visual features and the explanation feature F_T. A video without an
        explanation has a zero F_T, the same in training (has_text False in a batch) and at inference
        (text None): `add` adds Linear(0) = the projection's bias, `concat` sees zeros."""
        if self.config.fusion == "none":
            return v
        if text is None:
            text = torch.zeros(v.shape[0], v.shape[2], dtype=v.dtype, device=v.device)
        text = text.to(v.dtype)
        if has_text is not None:
            text = text * has_text[:, None].to(v.dtype)
        if self.config.fusion == "add":
            return v + self.text_proj(text)[:, None, :]
        return self.fuse(torch.cat((v, text[:, None, :].expand_as(v)), dim=2))

    def pooling_weights(self, binary: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Snippet weights of the video-conditioned class features: VadCLIP's raw binary logits
        (`logits`) or their sigmoid (`sigmoid`); over real snippets, or over all positions in
        reference parity (VadCLIP pools padding too)."""
        w = binary if self.config.class_pooling == "logits" else torch.sigmoid(binary)
        return w if self.config.reference_parity else w * valid

    def class_features(self) -> torch.Tensor:
        base = self.class_embeddings
        return base + self.context if self.config.prompt_context else base

    def forward(
        self,
        features: torch.Tensor,
        lengths: torch.Tensor,
        text: torch.Tensor | None = None,
        has_text: torch.Tensor | None = None,
    ) -> DetectorOutput:
        features = features.float()
        if self.config.visual_offset:
            features = features[..., self.config.visual_offset:]
        if self.input_proj is not None:
            features = self.input_proj(features)
        valid = valid_mask(lengths, features.shape[1])
        v = self.encode_video(features, valid)
        fused = self.fuse_text(v, text, has_text)
        binary = self.classifier(fused + self.mlp2(fused)).squeeze(-1)
        cls = self.class_features()
        per_video = cls[None].expand(features.shape[0], -1, -1)
        if self.config.visual_prompt:
            pooled = F.normalize(self.pooling_weights(binary, valid)[:, None, :] @ fused, dim=-1)  # (B,1,D)
            per_video = per_video + pooled
            per_video = per_video + self.mlp1(per_video)
        align = F.normalize(fused, dim=-1) @ F.normalize(per_video, dim=-1).transpose(1, 2) / self.config.tau
        return DetectorOutput(binary, align, cls, fused)
