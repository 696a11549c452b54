"""Write a synthetic archive: videos under ``camNN/YYYY-MM-DD/``, UCF-Crime temporal annotations,
the Parquet labels table (docs/CONTRACTS.md) and split lists, to any storage location.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa

from exvad_ray import storage
from exvad_ray.errors import ExvadError, StorageError
from exvad_ray.index import labels as index_labels
from exvad_ray.index.labels import LABELS_SCHEMA, make_table  # noqa: F401 - LABELS_SCHEMA re-exported
from exvad_ray.synth.plan import SPLITS, SynthConfig, VideoSpec, local_tmpdir, plan_archive, split_names
from exvad_ray.synth.video import render_video

ANNOTATION_FILE = "annotations/Temporal_Anomaly_Annotation.txt"
LABELS_FILE = "annotations/labels"  # a labels table: a folder of Parquet files (index.labels)
SPLITS_DIR = "annotations/splits"

class AnnotationFormatError(ExvadError):
    """A Temporal_Anomaly_Annotation.txt line cannot be parsed."""


@dataclass
class SynthSummary:
    """What ``generate_archive`` wrote."""

    uri: str
    videos: list[VideoSpec]
    bytes_written: int = 0
    seconds: float = 0.0
    video_uris: dict[str, str] = field(default_factory=dict)

    @property
    def n_videos(self) -> int:
        return len(self.videos)

    @property
    def n_frames(self) -> int:
        return sum(v.n_frames for v in self.videos)

    @property
    def per_class(self) -> dict[str, int]:
        return dict(sorted(Counter(v.label for v in self.videos).items()))

    @property
    def per_split(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {s: {} for s in SPLITS}
        for v in self.videos:
            out[v.split][v.label] = out[v.split].get(v.label, 0) + 1
        return {s: dict(sorted(c.items())) for s, c in out.items()}

    @property
    def annotations_uri(self) -> str:
        return storage.join(self.uri, ANNOTATION_FILE)

    @property
    def labels_uri(self) -> str:
        return storage.join(self.uri, LABELS_FILE)

    def text(self) -> str:
        lines = [f"synthetic archive {self.uri}: {self.n_videos} videos, {self.n_frames} frames, "
                 f"{self.bytes_written / 1e6:.1f} MB in {self.seconds:.1f} s"]
        lines.append("  classes: " + ", ".join(f"{k} {v}" for k, v in self.per_class.items()))
        for s, c in self.per_split.items():
            lines.append(f"  {s}: {sum(c.values())} (" + ", ".join(f"{k} {v}" for k, v in c.items()) + ")")
        lines.append(f"  annotations: {self.annotations_uri}")
        lines.append(f"  labels:      {self.labels_uri}")
        return "\n".join(lines)


# ------------------------------------------------------------------------------ annotation formats


def annotation_line(spec: VideoSpec) -> str:
    """UCF-Crime ``Temporal_Anomaly_Annotation`` line: ``name.mp4  Class  s1  e1  s2  e2  `` (frames,
    -1 when absent, two spaces between and after fields as in the public file)."""
    if len(spec.segments) > 2:
        raise ValueError(f"{spec.name}: the UCF format holds at most two intervals")
    nums: list[int] = []
    for seg in spec.segments:
        nums += [seg.start_frame, seg.end_frame]
    nums += [-1] * (4 - len(nums))
    return "  ".join([f"{spec.name}.mp4", spec.label, *map(str, nums)]) + "  "


def annotations_text(specs: list[VideoSpec]) -> str:
    return "".join(annotation_line(s) + "\n" for s in sorted(specs, key=lambda s: s.name))


@dataclass(frozen=True)
class AnnotationRecord:
    """One parsed annotation line; ``name`` without extension (and without ``_x264``-style suffix
    kept as is: names are compared exactly)."""

    name: str
    label: str
    segments: tuple[tuple[int, int], ...]


def parse_temporal_annotations(text: str) -> list[AnnotationRecord]:
    """Parse UCF-Crime temporal annotations (ours and the public file: ``.mp4`` optional), with the
    reader of the format that the labels importers use too."""
    from exvad_ray.annotations import parse_ucf_temporal

    try:
        parsed = parse_ucf_temporal(text)
    except ExvadError as exc:
        raise AnnotationFormatError(str(exc)) from exc
    return [AnnotationRecord(name, label, tuple(segs)) for name, (label, segs) in parsed.items()]


def labels_table(specs: list[VideoSpec], uris: dict[str, str]) -> pa.Table:
    """The archive's labels (docs/CONTRACTS.md), one row per video, sorted by name, source "synth"."""
    return make_table([{
        "name": s.name, "video_uri": uris.get(s.name), "labels": [s.label], "split": s.split,
        "segments": [{"start_frame": g.start_frame, "end_frame": g.end_frame, "label": g.label} for g in s.segments],
        "fps": float(s.fps), "n_frames": int(s.n_frames), "source": "synth",
    } for s in sorted(specs, key=lambda s: s.name)])


def read_labels(uri: str) -> pa.Table:
    """An archive's labels, current view (``uri`` = the archive root or the labels table)."""
    target = storage.join(uri, LABELS_FILE) if storage.exists(storage.join(uri, LABELS_FILE)) else uri
    return index_labels.read_labels(target)


# ------------------------------------------------------------------------------------ generation


def _render_to(args: tuple[VideoSpec, str]) -> tuple[str, int]:
    spec, path = args
    render_video(spec, path)
    return spec.name, os.path.getsize(path)


def generate_archive(uri: str, config: SynthConfig | None = None,
                     progress: Callable[[str], None] | None = None) -> SynthSummary:
    """Generate the archive described by ``config`` at ``uri`` (local path, file:// or s3://).

    Videos are encoded to a local temporary file, then copied with ``storage.put_file``; the same
    seed always writes the same bytes, so a rerun rewrites identical objects.
    """
    config = config or SynthConfig()
    root = storage.normalize(uri)
    specs = plan_archive(config)
    say = progress or (lambda _msg: None)
    t0 = time.perf_counter()
    summary = SynthSummary(uri=root, videos=specs)
    tmp = tempfile.mkdtemp(prefix="exvad-synth-", dir=local_tmpdir())
    try:
        jobs = [(s, os.path.join(tmp, f"{s.name}.mp4")) for s in specs]
        if config.workers > 1:
            import multiprocessing as mp

            pool = ProcessPoolExecutor(max_workers=config.workers, mp_context=mp.get_context("spawn"))
            results = pool.map(_render_to, jobs)
        else:
            pool = None
            results = map(_render_to, jobs)
        try:
            for i, ((spec, path), (_, size)) in enumerate(zip(jobs, results, strict=True), 1):
                dest = storage.join(root, spec.relpath)
                storage.put_file(path, dest)
                os.remove(path)
                summary.video_uris[spec.name] = dest
                summary.bytes_written += size
                segs = ", ".join(f"{g.start_frame}-{g.end_frame}" for g in spec.segments) or "-"
                say(f"[{i}/{len(specs)}] {spec.relpath} {spec.label} {spec.split} "
                    f"{spec.n_frames} frames, anomalous frames {segs} ({time.perf_counter() - t0:.1f} s)")
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ann = annotations_text(specs).encode()
    storage.write_bytes(storage.join(root, ANNOTATION_FILE), ann)
    # same archive -> same batch id: a rerun into the same location adds no second labels file
    table = labels_table(specs, summary.video_uris)
    written = index_labels.append_labels(storage.join(root, LABELS_FILE), table,
                                         batch_id="synth-" + index_labels.batch_digest(table))
    summary.bytes_written += len(ann) + len(storage.read_bytes(written))
    for split, names in split_names(specs).items():
        data = "".join(n + "\n" for n in names).encode()
        storage.write_bytes(storage.join(root, SPLITS_DIR, f"{split}.txt"), data)
    summary.seconds = time.perf_counter() - t0
    return summary


def archive_is_empty(uri: str) -> bool:
    """True when nothing exists at ``uri`` yet (or it is an empty folder/prefix)."""
    fs, path = storage.filesystem(uri)
    try:
        if not fs.exists(path):
            return True
        return fs.isdir(path) and not fs.ls(path)
    except Exception as exc:  # noqa: BLE001
        raise StorageError(f"cannot access {uri}: {exc}") from exc

