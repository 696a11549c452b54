"""The archive job's stages, declared in one place: name, the columns each reads, writes and drops,
and its resources in each layout. The job builds both layouts from these declarations and checks
the chain (`check_chain`) before anything runs.

Modelled on NeMo Curator's ``ProcessingStage`` (declared inputs/outputs/resources, ``setup()`` once
per actor) and ``ray.data.llm``'s processor stages (a UDF class + constructor arguments + map
kwargs, declared input keys). A declaration is not the work itself: `udf()` names the callable
class that does it (decode: `pipeline.decode`, models: `models.stages`, scoring: `pipeline.scoring`,
assembly: `pipeline.assemble`), each plain Python with a ``setup()`` that loads once per actor.

Layouts:
- fused (no GPUs): decode and every model stage run in one actor per core
  (`pipeline.fused.DecodeAndModelStage`); a stage's ``drops`` are popped right after it runs.
- per-stage (GPUs): decode is a task pool; every other stage its own actor pool with
  ``per_stage`` resources: ``cpus`` per actor (a quarter of it on clusters of <= 4 CPUs) and, for
  GPU stages, a share of the GPUs in proportion to ``per_stage.gpus`` (`plan_gpu_shares`).
  ``drop_columns(drops)`` follows each stage.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from exvad_ray.errors import ExvadError

# Columns of an archive item (pipeline.job.list_work), the input of the chain.
ITEM_COLUMNS = ("uri", "video_id", "size", "etag", "date", "camera", "processing_date")
# Columns every model stage may set (docs/CONTRACTS.md): a failed row's "stage: Type: message".
ERROR_COLUMN = "error"


@dataclasses.dataclass(frozen=True)
class Resources:
    """Per-actor (or per-task) resources in the per-stage layout. ``gpus``: the stage's GPU weight,
    i.e. the share of one GPU it asks for when GPUs are plentiful (0: a CPU stage)."""

    cpus: float = 0.5
    gpus: float = 0.0


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """What the stages of one run need to build their callables."""

    index: str
    run_id: str
    profile: str
    explainer: str  # transformers | vllm | none (resolved, never auto)
    detector: str | None
    label_set: str
    sampling: Any  # video.SamplingConfig
    class_names: tuple[str, ...] = ()
    localization: Any = None  # pipeline.assemble.LocalizationConfig
    progress: Any = None  # ProgressActor handle or None
    # a Delta index: each finished video's rows leave the assembler as a payload, and the driver
    # gathers them into batches, has them written and commits them (`pipeline.commits`)
    batch_writes: bool = False


class Stage:
    """A declared stage. Subclasses set the class attributes; options that change a stage's columns
    (the explainer mode) are applied in ``__init__`` on the instance."""

    name: ClassVar[str] = "stage"
    reads: tuple[str, ...] = ()  # required input columns
    optional_reads: tuple[str, ...] = ()  # used when present
    writes: tuple[str, ...] = ()
    drops: tuple[str, ...] = ()  # columns no later stage needs, dropped right after this stage
    per_stage: ClassVar[Resources] = Resources()
    fusable: ClassVar[bool] = True  # may run inside the fused per-core actor
    compute: ClassVar[str] = "actors"  # per-stage layout: "tasks" (flat_map) or "actors" (map_batches)
    pool_size: ClassVar[int | None] = None  # fixed actor count (None: ProcessConfig.model_actors)
    batch_size: ClassVar[int | None] = None  # windows per batch (None: ProcessConfig.batch_windows)
    tail: ClassVar[bool] = False  # a per-video stage at the stream's end (assembly): never fused

    def __init__(self, job: JobSpec):
        self.job = job

    def udf(self) -> tuple[type, tuple[Any, ...], dict[str, Any]]:
        """(callable class, constructor args, constructor kwargs) of the work."""
        raise NotImplementedError

    def whole_gpus(self) -> float:
        """GPUs this stage takes whole, outside the shared fractions (vLLM engines)."""
        return 0.0

    def instance(self) -> Any:
        cls, args, kwargs = self.udf()
        return cls(*args, **kwargs)

    def apply(self, ds: Any, res: dict[str, Any], batch_size: int) -> Any:
        """Add this stage to a Ray dataset in the per-stage layout (`res`: map_batches resources)."""
        from ray.data import ActorPoolStrategy

        cls, args, kwargs = self.udf()
        return ds.map_batches(cls, fn_constructor_args=args, fn_constructor_kwargs=kwargs,
                              batch_size=batch_size, batch_format="numpy",
                              compute=ActorPoolStrategy(size=res["actors"]),
                              num_cpus=res["num_cpus"], num_gpus=res["num_gpus"])

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "reads": list(self.reads), "optional_reads": list(self.optional_reads),
                "writes": list(self.writes), "drops": list(self.drops),
                "per_stage": dataclasses.asdict(self.per_stage), "fusable": self.fusable, "compute": self.compute}


class DecodeStage(Stage):
    name = "decode"
    reads = ITEM_COLUMNS
    writes = ("window_index", "snippet_offset", "n_snippets", "frames", "frame_index", "start_s", "end_s",
              "keyframes", "keyframe_s", "n_windows", "fps", "n_frames", "width", "height", "codec",
              "duration_s", "timing", "recorded_at", "recorded_at_source", "thumbs_blob", "thumbs_offsets")
    per_stage = Resources(cpus=1.0)
    compute = "tasks"

    def udf(self) -> tuple[type, tuple[Any, ...], dict[str, Any]]:
        from exvad_ray.pipeline.decode import DecodeStage as Decode

        return Decode, (self.job.index, self.job.run_id, self.job.sampling, self.job.progress), {}


class VisualStage(Stage):
    """Visual embedding of each snippet's frame (and of the keyframes when captions are made)."""

    name = "visual"
    per_stage = Resources(cpus=0.5, gpus=0.5)

    def __init__(self, job: JobSpec):
        super().__init__(job)
        self.keyframes = job.explainer != "none"
        self.reads = ("frames", "keyframes") if self.keyframes else ("frames",)
        self.writes = ("visual_embedding", "visual_model") + (("keyframe_embedding",) if self.keyframes else ())
        # Without captions nothing reads the keyframes: they go with the frames.
        self.drops = ("frames",) if self.keyframes else ("frames", "keyframes")

    def udf(self) -> tuple[type, tuple[Any, ...], dict[str, Any]]:
        from exvad_ray.models.stages import ClipImageStage

        return ClipImageStage, (self.job.profile,), {"keyframes": self.keyframes}


class CaptionStage(Stage):
    name = "caption"
    reads = ("keyframes",)
    writes = ("captions", "caption_model")
    drops = ("keyframes",)
    per_stage = Resources(cpus=0.5, gpus=1.0)

    def udf(self) -> tuple[type, tuple[Any, ...], dict[str, Any]]:
        from exvad_ray.models.stages import CaptionStage as Caption

        return Caption, (self.job.profile,), {}


class CleanStage(Stage):
    """Each keyframe's caption -> the window's caption closest to the keyframe (text-image similarity)."""

    name = "clean"
    reads = ("captions", "keyframe_embedding")
    writes = ("clean_captions",)
    drops = ("keyframe_embedding",)
    per_stage = Resources(cpus=0.5)

    def udf(self) -> tuple[type, tuple[Any, ...], dict[str, Any]]:
        from exvad_ray.models.stages import CaptionCleaningStage

        return CaptionCleaningStage, (self.job.profile,), {}


class ExplainStage(Stage):
    """Window explanation from the time-stamped cleaned captions (transformers backend)."""

    name = "explain"
    reads = ("keyframe_s", "window_index", "n_windows", "start_s", "end_s")
    optional_reads = ("clean_captions", "captions", "caption_model")
    writes = ("explanation", "explanation_model", "caption_model")
    per_stage = Resources(cpus=0.5, gpus=1.0)

    def udf(self) -> tuple[type, tuple[Any, ...], dict[str, Any]]:
        from exvad_ray.models.stages import ExplanationStage

        return ExplanationStage, (self.job.profile,), {}


class VllmExplainStage(ExplainStage):
    """The same step on vLLM engines (``ray.data.llm``): a prompt stage, then the engine processor,
    which takes whole GPUs (``vllm.concurrency`` x ``tensor_parallel_size`` from the profile)."""

    writes = ("explanation", "explanation_model", "explanation_tokens")
    per_stage = Resources(cpus=0.25, gpus=0.0)  # the engines' GPUs come from the profile, not a share
    fusable = False

    def whole_gpus(self) -> float:
        from exvad_ray.models import load_profile

        v = load_profile(self.job.profile, check_local=False).explainer.vllm
        return float(v.concurrency * v.tensor_parallel_size)

    def udf(self) -> tuple[type, tuple[Any, ...], dict[str, Any]]:
        from exvad_ray.models.stages import ExplanationPromptStage

        return ExplanationPromptStage, (), {}

    def apply(self, ds: Any, res: dict[str, Any], batch_size: int) -> Any:
        from ray.data import ActorPoolStrategy

        from exvad_ray.models import load_profile
        from exvad_ray.models.vllm_explainer import build_vllm_explainer

        cls, args, kwargs = self.udf()
        ds = ds.map_batches(cls, fn_constructor_args=args, fn_constructor_kwargs=kwargs, batch_size=batch_size,
                            batch_format="numpy", compute=ActorPoolStrategy(size=1), num_cpus=res["num_cpus"])
        return build_vllm_explainer(load_profile(self.job.profile).explainer, cpu_stage_num_cpus=res["num_cpus"])(ds)


class EmbedTextStage(Stage):
    name = "embed_text"
    reads = ("explanation",)
    writes = ("explanation_embedding",)
    per_stage = Resources(cpus=0.5)

    def udf(self) -> tuple[type, tuple[Any, ...], dict[str, Any]]:
        from exvad_ray.models.stages import TextEmbeddingStage

        return TextEmbeddingStage, (self.job.profile,), {}


class ScoreStage(Stage):
    """Snippet anomaly scores and class probabilities: a trained detector, or zero-shot."""

    name = "score"
    reads = ("visual_embedding",)
    optional_reads = ("explanation_embedding",)
    writes = ("anomaly_scores", "class_probs")
    per_stage = Resources(cpus=0.5)

    def udf(self) -> tuple[type, tuple[Any, ...], dict[str, Any]]:
        from exvad_ray.pipeline.scoring import ScoreStage as Score

        return Score, (self.job.detector, self.job.profile, self.job.label_set), {}


class AssembleStage(Stage):
    """A video's windows meet here (one actor); its rows go to every index table, videos last."""

    name = "assemble"
    reads = ("video_id", "uri", "window_index", "n_windows", "n_snippets", "start_s", "end_s", "frame_index",
             "thumbs_blob", "thumbs_offsets", "visual_embedding", "visual_model", "anomaly_scores", "class_probs",
             "fps", "n_frames", "width", "height", "codec", "size", "etag", "date", "camera", "processing_date")
    optional_reads = ("keyframe_s", "captions", "clean_captions", "caption_model", "explanation",
                      "explanation_model", "explanation_embedding", ERROR_COLUMN)
    writes = ("status", "stage", "reason", "hours", "segment_classes")
    per_stage = Resources(cpus=0.5)
    pool_size = 1
    batch_size = 1
    fusable = False
    tail = True

    def __init__(self, job: JobSpec):
        super().__init__(job)
        if job.batch_writes:  # the rows leave as a payload for the batch writer
            self.writes = (*self.writes, "payload")

    def udf(self) -> tuple[type, tuple[Any, ...], dict[str, Any]]:
        from exvad_ray.pipeline.assemble import VideoAssembler, VideoContext

        job = self.job
        ctx = VideoContext(job.index, job.run_id, list(job.class_names), job.detector or f"zero-shot:{job.label_set}",
                           job.label_set, job.localization, batch_writes=job.batch_writes)
        return VideoAssembler, (ctx, job.progress), {}


def build_chain(job: JobSpec) -> list[Stage]:
    """The stages of a run, in order, for its explainer mode."""
    chain: list[Stage] = [DecodeStage(job), VisualStage(job)]
    if job.explainer != "none":
        explain = VllmExplainStage(job) if job.explainer == "vllm" else ExplainStage(job)
        chain += [CaptionStage(job), CleanStage(job), explain, EmbedTextStage(job)]
    return chain + [ScoreStage(job), AssembleStage(job)]


def check_chain(chain: Sequence[Stage], source: Iterable[str] = ITEM_COLUMNS) -> list[set[str]]:
    """Walk the chain over the columns it would see; raise naming the stage and the column when a
    stage reads (or drops) a column that no earlier stage wrote or that was already dropped.
    Returns the columns available after each stage."""
    available = set(source)
    after: list[set[str]] = []
    for stage in chain:
        for col in stage.reads:
            if col not in available:
                raise ExvadError(f"stage {stage.name!r} reads column {col!r}, which no earlier stage writes "
                                 f"(or one dropped it); available: {', '.join(sorted(available))}")
        available |= set(stage.writes) | {ERROR_COLUMN}
        for col in stage.drops:
            if col not in available:
                raise ExvadError(f"stage {stage.name!r} drops column {col!r}, which is not there")
        available -= set(stage.drops)
        after.append(set(available))
    return after


def plan_gpu_shares(chain: Sequence[Stage], gpus: float, actors: int, fixed: float | None = None) -> dict[str, float]:
    """GPU share per actor of each GPU stage in the per-stage layout: ``fixed`` if given, else the
    stage's declared weight, scaled down so that every GPU stage's pool fits together in the GPUs
    that whole-GPU stages (vLLM engines) leave (in all of them when those take every GPU)."""
    weights = {s.name: s.per_stage.gpus for s in chain if s.per_stage.gpus > 0}
    if not gpus or not weights:
        return {name: 0.0 for name in weights}
    if fixed is not None:
        return {name: float(fixed) for name in weights}
    free = gpus - sum(s.whole_gpus() for s in chain)
    scale = min(1.0, (free if free > 0 else gpus) / (actors * sum(weights.values())))
    return {name: round(w * scale, 4) for name, w in weights.items()}
