"""Synthetic camera archive: real H.264 videos of fixed scenes with normal activity and injected
anomalies (Fire, Fighting, FallingObject, CrowdRush), with UCF-Crime style temporal annotations, a
Parquet labels table and stratified train/val/test splits. The demo's and the tests' data."""

from exvad_ray.synth.archive import (
    ANNOTATION_FILE,
    LABELS_FILE,
    LABELS_SCHEMA,
    SPLITS_DIR,
    AnnotationFormatError,
    AnnotationRecord,
    SynthSummary,
    annotations_text,
    generate_archive,
    labels_table,
    parse_temporal_annotations,
    read_labels,
)
from exvad_ray.synth.plan import SPLITS, SynthConfig, SynthConfigError, VideoSpec, plan_archive
from exvad_ray.synth.sim import ANOMALY_CLASSES, NORMAL, Segment
from exvad_ray.synth.video import generate_video, make_spec, render_frames, render_video

CLASSES: tuple[str, ...] = (NORMAL, *ANOMALY_CLASSES)

__all__ = [
    "ANNOTATION_FILE", "ANOMALY_CLASSES", "CLASSES", "LABELS_FILE", "LABELS_SCHEMA", "NORMAL", "SPLITS",
    "SPLITS_DIR", "AnnotationFormatError", "AnnotationRecord", "Segment", "SynthConfig", "SynthConfigError",
    "SynthSummary", "VideoSpec", "annotations_text", "generate_archive", "generate_video", "labels_table",
    "make_spec", "parse_temporal_annotations", "plan_archive", "read_labels", "render_frames", "render_video",
]
