"""What to generate: configuration, per-video specs (name, camera, date, length, anomaly intervals,
split) planned deterministically from the seed before any frame is drawn.

Each video's plan depends only on (seed, class, number), so asking for more videos per class adds
videos without changing the existing ones.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field, replace

import numpy as np

from exvad_ray.errors import ExvadError
from exvad_ray.synth.sim import ANOMALY_CLASSES, NORMAL, Segment

SPLITS: tuple[str, ...] = ("train", "val", "test")


class SynthConfigError(ExvadError):
    """An invalid `exvad synth` option."""


@dataclass(frozen=True)
class SynthConfig:
    """Size and look of a synthetic archive. Defaults: ~60 videos, 8-20 s, 320x240 at 25 fps."""

    videos_per_class: int = 10
    normal_videos: int = 20
    classes: tuple[str, ...] = ANOMALY_CLASSES
    duration: tuple[float, float] = (8.0, 20.0)  # seconds, min/max
    width: int = 320
    height: int = 240
    fps: float = 25.0
    seed: int = 0
    cameras: int = 3
    start_date: str = "2026-11-02"
    days: int = 3
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)  # train/val/test fractions per class
    crf: int = 23
    preset: str = "veryfast"
    workers: int = 1

    @classmethod
    def small(cls, **overrides: object) -> SynthConfig:
        """A tiny archive for tests: 2 videos per anomaly class, 4 normal videos, 4-6 s each."""
        base = cls(videos_per_class=2, normal_videos=4, duration=(4.0, 6.0))
        return replace(base, **overrides)  # type: ignore[arg-type]

    def validate(self) -> None:
        if self.videos_per_class < 0 or self.normal_videos < 0:
            raise SynthConfigError("video counts must be >= 0")
        if self.videos_per_class + self.normal_videos == 0:
            raise SynthConfigError("nothing to generate: --videos-per-class and --normal-videos are both 0")
        bad = [c for c in self.classes if c not in ANOMALY_CLASSES]
        if bad:
            raise SynthConfigError(f"unknown anomaly classes {bad}; known: {list(ANOMALY_CLASSES)}")
        lo, hi = self.duration
        if not (1.5 <= lo <= hi <= 3600):
            raise SynthConfigError(f"duration must satisfy 1.5 <= min <= max <= 3600 s, got {lo}-{hi}")
        if self.width < 64 or self.height < 48 or self.width % 2 or self.height % 2:
            raise SynthConfigError(f"size must be even and at least 64x48 (H.264, yuv420p), got {self.width}x{self.height}")
        if self.width * self.height > 1920 * 1080:
            raise SynthConfigError(f"size {self.width}x{self.height} is larger than 1920x1080")
        if not (1.0 <= self.fps <= 120.0):
            raise SynthConfigError(f"fps must be in 1..120, got {self.fps}")
        if self.cameras < 1 or self.days < 1:
            raise SynthConfigError("need at least one camera and one day")
        try:
            _dt.date.fromisoformat(self.start_date)
        except ValueError as exc:
            raise SynthConfigError(f"start date must be YYYY-MM-DD, got {self.start_date!r}") from exc
        if len(self.split) != 3 or min(self.split) < 0 or sum(self.split) <= 0:
            raise SynthConfigError(f"split fractions must be three non-negative numbers, got {self.split}")
        if self.workers < 1:
            raise SynthConfigError("workers must be >= 1")


@dataclass(frozen=True)
class VideoSpec:
    """One planned video. ``relpath`` is relative to the archive root."""

    name: str
    label: str
    number: int
    camera: int
    date: str
    width: int
    height: int
    fps: float
    n_frames: int
    segments: tuple[Segment, ...]
    seed: int
    split: str = "train"
    scene_seed: int = 0
    crf: int = 23
    preset: str = "veryfast"
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def relpath(self) -> str:
        return f"cam{self.camera:02d}/{self.date}/{self.name}.mp4"

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.fps


def video_name(label: str, number: int) -> str:
    """UCF-Crime style: ``Normal_Videos_001``, ``Fire_003``."""
    return f"Normal_Videos_{number:03d}" if label == NORMAL else f"{label}_{number:03d}"


def _class_index(label: str) -> int:
    return 0 if label == NORMAL else 1 + ANOMALY_CLASSES.index(label)


def plan_intervals(rng: np.random.Generator, n_frames: int, fps: float, label: str) -> tuple[Segment, ...]:
    """One or two non-overlapping anomaly intervals inside the video."""
    dur = n_frames / fps
    n = 2 if dur >= 10.0 and rng.random() < 0.3 else 1
    scale = 0.7 if n == 2 else 1.0
    lo, hi = min(2.5, 0.35 * dur) * scale, min(6.0, 0.45 * dur) * scale
    lengths = rng.uniform(lo, max(hi, lo), n)
    m0, m1, gap = min(0.8, 0.1 * dur), min(0.3, 0.05 * dur), 1.5
    free = max(dur - m0 - m1 - lengths.sum() - gap * (n - 1), 0.0)
    cuts = np.sort(rng.uniform(0.0, free, n))
    segs = []
    for i in range(n):
        start = m0 + cuts[i] + lengths[:i].sum() + gap * i
        s = int(round(start * fps))
        e = min(int(round((start + lengths[i]) * fps)), n_frames)
        segs.append(Segment(s, max(e, s + 1), label))
    return tuple(segs)


def _allocate(n: int, fractions: tuple[float, float, float], rotate: int) -> list[int]:
    """Largest-remainder split of ``n`` into train/val/test; ties rotate across classes so that tiny
    classes still fill val and test overall. At least one train video when n >= 1."""
    total = sum(fractions)
    ideal = [n * f / total for f in fractions]
    counts = [int(np.floor(x)) for x in ideal]
    order = sorted(range(3), key=lambda i: (-(ideal[i] - counts[i]), (i + rotate) % 3))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    if n >= 1 and counts[0] == 0 and fractions[0] > 0:
        j = 1 if counts[1] >= counts[2] else 2
        counts[j] -= 1
        counts[0] += 1
    return counts


def plan_archive(config: SynthConfig) -> list[VideoSpec]:
    """All videos of the archive, sorted by name, with their split."""
    config.validate()
    days = [(_dt.date.fromisoformat(config.start_date) + _dt.timedelta(days=i)).isoformat() for i in range(config.days)]
    specs: list[VideoSpec] = []
    groups = [(NORMAL, config.normal_videos)] + [(c, config.videos_per_class) for c in config.classes]
    for rot, (label, count) in enumerate(groups):
        ci = _class_index(label)
        class_specs = []
        for number in range(1, count + 1):
            rng = np.random.default_rng([config.seed, ci, number])
            dur = rng.uniform(*config.duration)
            n_frames = max(int(round(dur * config.fps)), 16)
            segs = () if label == NORMAL else plan_intervals(rng, n_frames, config.fps, label)
            class_specs.append(VideoSpec(
                name=video_name(label, number), label=label, number=number,
                camera=int(rng.integers(1, config.cameras + 1)), date=days[int(rng.integers(0, len(days)))],
                width=config.width, height=config.height, fps=float(config.fps), n_frames=n_frames, segments=segs,
                seed=int(np.random.SeedSequence([config.seed, ci, number]).generate_state(1)[0]),
                scene_seed=config.seed, crf=config.crf, preset=config.preset))
        # stratified split: shuffle within the class, then cut by the allocated counts
        perm = np.random.default_rng([config.seed, ci, 999_983]).permutation(len(class_specs))
        counts = _allocate(len(class_specs), config.split, rot)
        bounds = np.cumsum(counts)
        for rank, idx in enumerate(perm):
            split = SPLITS[int(np.searchsorted(bounds, rank, side="right"))]
            class_specs[idx] = replace(class_specs[idx], split=split)
        specs.extend(class_specs)
    specs.sort(key=lambda s: s.name)
    return specs


def parse_size(text: str) -> tuple[int, int]:
    """``320x240`` -> (320, 240)."""
    try:
        w, h = text.lower().split("x")
        return int(w), int(h)
    except ValueError as exc:
        raise SynthConfigError(f"size must look like 320x240, got {text!r}") from exc


def parse_duration(text: str) -> tuple[float, float]:
    """``12`` -> (12, 12); ``8-20`` -> (8, 20) seconds."""
    try:
        if "-" in text.strip("-"):
            lo, hi = text.split("-", 1)
            return float(lo), float(hi)
        v = float(text)
        return v, v
    except ValueError as exc:
        raise SynthConfigError(f"duration must be SECONDS or MIN-MAX, got {text!r}") from exc


def split_names(specs: list[VideoSpec]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for s in specs:
        out[s.split].append(s.relpath)
    return out


def local_tmpdir() -> str | None:
    """Where temporary encodes go (``EXVAD_TMPDIR`` or the system default)."""
    return os.environ.get("EXVAD_TMPDIR") or None
