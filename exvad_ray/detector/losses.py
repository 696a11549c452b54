"""Ex-VAD training losses under weak (video-level) supervision, written for padded batches."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from exvad_ray.detector.model import DetectorOutput, valid_mask


def topk_counts(lengths: torch.Tensor) -> torch.Tensor:
    """k = floor(len/16) + 1 per video (VadCLIP/Ex-VAD)."""
    return torch.div(lengths, 16, rounding_mode="floor") + 1


def topk_mean(values: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean of each video's k largest values over real snippets. values (B,T) or (B,T,C) -> (B,) or (B,C)."""
    squeeze = values.dim() == 2
    if squeeze:
        values = values[..., None]
    b, t, _ = values.shape
    valid = valid_mask(lengths, t)[..., None]
    ordered = values.masked_fill(~valid, float("-inf")).sort(dim=1, descending=True).values
    k = topk_counts(lengths).clamp(max=t)
    take = (torch.arange(t, device=values.device)[None, :] < k[:, None])[..., None]
    out = torch.where(take, ordered, torch.zeros_like(ordered)).sum(1) / k[:, None].to(values.dtype)
    return out[..., 0] if squeeze else out


def mil_bce(binary_logits: torch.Tensor, lengths: torch.Tensor, is_anomaly: torch.Tensor) -> torch.Tensor:
    """Top-k MIL BCE: mean of the top-k sigmoid scores against normal(0)/abnormal(1). No clamp of
    its own, as VadCLIP: torch's BCE clamps the log at -100 (its gradient stays finite at 0 and 1)."""
    video = topk_mean(torch.sigmoid(binary_logits), lengths)
    return F.binary_cross_entropy(video, is_anomaly.to(video.dtype))


def mil_align(align_logits: torch.Tensor, lengths: torch.Tensor, label_multi_hot: torch.Tensor) -> torch.Tensor:
    """MIL-Align: per class the top-k mean of the (already /tau) alignment logits, softmax,
    cross-entropy against the normalised multi-hot video labels."""
    video = topk_mean(align_logits, lengths)
    target = label_multi_hot / label_multi_hot.sum(1, keepdim=True).clamp(min=1e-6)
    return -(target * F.log_softmax(video, dim=1)).sum(1).mean()


def normal_contrast(class_features: torch.Tensor) -> torch.Tensor:
    """Mean |cos| between the Normal class (index 0) and every anomaly class: pushes them apart."""
    normed = F.normalize(class_features, dim=-1)
    return (normed[1:] @ normed[0]).abs().mean()


@dataclass
class LossWeights:
    """Weights of the three terms. `contrast` multiplies the *mean* |cos|: VadCLIP's code uses 0.1 on
    UCF-Crime (`loss3 / 13 * 1e-1`, 13 anomaly classes) and 1e-4 on XD-Violence (`loss3 / 6`, then
    `* 1e-4`). The Ex-VAD paper writes lambda = 1 (UCF) / 1e-4 (XD) on a term it does not spell out;
    the code's value is the one its published numbers come from (docs/DETECTOR.md, deviations)."""

    bce: float = 1.0
    align: float = 1.0
    contrast: float = 0.1


def exvad_loss(
    out: DetectorOutput,
    lengths: torch.Tensor,
    label_multi_hot: torch.Tensor,
    weights: LossWeights | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss and its parts. Class 0 is Normal: a video is anomalous when any other class is set."""
    w = weights or LossWeights()
    is_anomaly = (label_multi_hot[:, 1:].sum(1) > 0).float()
    l1 = mil_bce(out.binary_logits, lengths, is_anomaly)
    l2 = mil_align(out.align_logits, lengths, label_multi_hot)
    l3 = normal_contrast(out.class_features)
    total = w.bce * l1 + w.align * l2 + w.contrast * l3
    return total, {"loss": float(total.detach()), "loss_bce": float(l1.detach()),
                   "loss_align": float(l2.detach()), "loss_contrast": float(l3.detach())}
