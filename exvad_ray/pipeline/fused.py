"""All model stages chained inside one actor, for CPU-only clusters.

On a CPU machine every separate actor pool costs a process with its own torch and models (about
0.6 GB each) plus a serialisation hop per window, while buying no parallelism that decode tasks
and more fused actors do not give. So without GPUs the job runs the same stage classes, in the
same order, inside one `FusedModelStage` per actor. With GPUs, stages keep their own pools so each
gets its own GPU share.
"""

from __future__ import annotations

from typing import Any

from exvad_ray.pipeline.scoring import ScoreStage

FRAME_COLUMNS = ["frames"]
KEYFRAME_COLUMNS = ["keyframes", "keyframe_features"]


def model_stage_chain(profile: str, explainer: str, detector: str | None, label_set: str) -> list[Any]:
    """The stage instances in pipeline order (explainer: transformers | none)."""
    from exvad_ray.models import stages as ms

    chain: list[Any] = [ms.ClipImageStage(profile, keyframes=explainer != "none")]
    if explainer != "none":
        chain += [ms.CaptionStage(profile), ms.CaptionCleaningStage(profile), ms.ExplanationStage(profile),
                  ms.TextEmbeddingStage(profile)]
    chain.append(ScoreStage(detector, profile, label_set))
    return chain


class FusedModelStage:
    """CLIP -> captions -> cleaning -> explanation -> text features -> scoring, in one actor."""

    def __init__(self, profile: str, explainer: str, detector: str | None, label_set: str,
                 torch_threads: int | None = None):
        self.chain = model_stage_chain(profile, explainer, detector, label_set)
        self.torch_threads = torch_threads
        self._ready = False

    def setup(self) -> None:
        if self._ready:
            return
        if self.torch_threads:
            import torch

            torch.set_num_threads(self.torch_threads)
        for stage in self.chain:
            getattr(stage, "setup", lambda: None)()
        self._ready = True

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        self.setup()
        for stage in self.chain:
            batch = stage(batch)
            drop = FRAME_COLUMNS + (KEYFRAME_COLUMNS if type(stage).__name__ in ("CaptionCleaningStage", "ClipImageStage")
                                    and not _needs_keyframes_later(self.chain, stage) else [])
            for col in drop:
                batch.pop(col, None)
        return batch


def _needs_keyframes_later(chain: list[Any], stage: Any) -> bool:
    names = [type(s).__name__ for s in chain[chain.index(stage) + 1:]]
    return "CaptionStage" in names or "CaptionCleaningStage" in names
