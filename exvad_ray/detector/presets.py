"""Dataset presets: every hyper-parameter as VadCLIP's public code (nwpu-zxr/VadCLIP) and the Ex-VAD
paper state them for UCF-Crime and XD-Violence. Plain values (no torch, no training imports): the
train CLI/API turn them into a DetectorConfig and a TrainConfig; explicit settings override them.
The source of each value is `SOURCES[preset][key]` (also tabulated in docs/DETECTOR.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from exvad_ray.errors import ConfigError


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    detector: dict[str, Any]  # DetectorConfig fields
    train: dict[str, Any]  # TrainConfig fields; loss weights under "loss"
    sources: dict[str, str] = field(default_factory=dict)  # "detector.layers" -> where the value comes from


_COMMON_DETECTOR = {"heads": 1, "visual_length": 256, "gcn_threshold": 0.7, "tau": 0.07, "visual_prompt": True,
                    "class_pooling": "logits", "prompt_context": True, "fusion": "add"}
_COMMON_SOURCES = {
    "detector.heads": "src/{ds}_option.py --visual-head 1",
    "detector.visual_length": "src/{ds}_option.py --visual-length 256; Ex-VAD paper (sequence length 256)",
    "detector.gcn_threshold": "src/model.py adj4: F.threshold(adj, 0.7, 0)",
    "detector.tau": "src/model.py: logits2 = ... / 0.07",
    "detector.visual_prompt": "src/model.py forward: text_features + visual_attn, then + mlp1(...)",
    "detector.class_pooling": "src/model.py forward: visual_attn = logits1^T @ visual_features (raw logits)",
    "detector.prompt_context": "stands in for src/model.py text_prompt_embeddings (--prompt-prefix/--prompt-postfix 10); "
                               "the CLIP text encoder is not run in training here",
    "detector.fusion": "Ex-VAD paper, MADM (F_T fused with the visual features; 'add' or 'concat')",
    "train.weight_decay": "src/{ds}_train.py: torch.optim.AdamW(model.parameters(), lr=args.lr) (default 0.01)",
    "train.epochs": "src/{ds}_option.py --max-epoch 10; Ex-VAD paper (10 epochs)",
    "train.lr_gamma": "src/{ds}_option.py --scheduler-rate 0.1 (MultiStepLR)",
    "train.seed": "src/{ds}_option.py --seed 234",
    "train.loss.bce": "src/{ds}_train.py: loss = loss1 + loss2 + ...",
    "train.loss.align": "src/{ds}_train.py: loss = loss1 + loss2 + ...",
}


def _sources(ds: str, extra: dict[str, str]) -> dict[str, str]:
    return {k: v.format(ds=ds) for k, v in _COMMON_SOURCES.items()} | extra


PRESETS: dict[str, Preset] = {
    "ucf": Preset(
        "ucf", "UCF-Crime (VadCLIP src/ucf_option.py, src/ucf_train.py)",
        _COMMON_DETECTOR | {"layers": 2, "attention_block": 8},
        {"epochs": 10, "batch_size": 128, "lr": 2e-5, "lr_milestones": (4, 8), "lr_gamma": 0.1,
         "weight_decay": 0.01, "seed": 234, "loss": {"bce": 1.0, "align": 1.0, "contrast": 0.1}},
        _sources("ucf", {
            "detector.layers": "src/ucf_option.py --visual-layers 2",
            "detector.attention_block": "src/ucf_option.py --attn-window 8; Ex-VAD paper (window 8 on UCF-Crime)",
            "train.batch_size": "src/ucf_option.py --batch-size 64, one normal and one anomalous loader: 64 + 64 per step",
            "train.lr": "src/ucf_option.py --lr 2e-5; Ex-VAD paper",
            "train.lr_milestones": "src/ucf_option.py --scheduler-milestones [4, 8]",
            "train.loss.contrast": "src/ucf_train.py: loss3 / 13 * 1e-1 (13 anomaly classes: mean |cos| x 0.1); "
                                   "the Ex-VAD paper writes lambda = 1",
        })),
    "xd": Preset(
        "xd", "XD-Violence (VadCLIP src/xd_option.py, src/xd_train.py)",
        _COMMON_DETECTOR | {"layers": 1, "attention_block": 64},
        {"epochs": 10, "batch_size": 96, "lr": 1e-5, "lr_milestones": (3, 6, 10), "lr_gamma": 0.1,
         "weight_decay": 0.01, "seed": 234, "loss": {"bce": 1.0, "align": 1.0, "contrast": 1e-4}},
        _sources("xd", {
            "detector.layers": "src/xd_option.py --visual-layers 1",
            "detector.attention_block": "src/xd_option.py --attn-window 64; Ex-VAD paper (window 64 on XD-Violence)",
            "train.batch_size": "src/xd_option.py --batch-size 96 (one shuffled loader; here 48 normal + 48 anomalous)",
            "train.lr": "src/xd_option.py --lr 1e-5; Ex-VAD paper",
            "train.lr_milestones": "src/xd_option.py --scheduler-milestones [3, 6, 10]",
            "train.loss.contrast": "src/xd_train.py: loss3 / 6, loss = ... + loss3 * 1e-4 (mean |cos| x 1e-4); "
                                   "Ex-VAD paper lambda = 1e-4",
        })),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose from {', '.join(sorted(PRESETS))}") from None
