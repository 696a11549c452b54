"""Render one planned video and encode it to H.264 MP4 with PyAV.

Encoding is single-threaded with fixed x264 options (CRF, preset, fixed GOP, no scene cut), which
makes the output byte-identical for identical frames: reruns rewrite the same objects (same etag).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from fractions import Fraction
from functools import lru_cache

import av
import numpy as np

from exvad_ray.errors import ExvadError
from exvad_ray.synth.plan import VideoSpec, plan_intervals, video_name
from exvad_ray.synth.scene import Scene, make_scene
from exvad_ray.synth.sim import ANOMALY_CLASSES, NORMAL, Segment, Simulation


@lru_cache(maxsize=16)
def camera_scene(width: int, height: int, seed: int, camera: int) -> Scene:
    """The fixed scene of one camera (cached: every video of the camera shares it)."""
    return make_scene(width, height, seed, camera)


def encode_frames(frames: Iterable[np.ndarray], path: str, width: int, height: int, fps: float,
                  crf: int = 23, preset: str = "veryfast") -> int:
    """Encode RGB uint8 frames to an H.264 (yuv420p) MP4 at ``path``; returns the frame count."""
    rate = Fraction(fps).limit_denominator(1001)
    gop = max(int(round(fps * 2)), 1)
    n = 0
    with av.open(path, "w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.thread_count = 1
        stream.options = {
            "crf": str(crf), "preset": preset, "threads": "1",
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:threads=1:lookahead-threads=1",
        }
        for frame in frames:
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts = n
            vf.time_base = Fraction(1) / rate
            for packet in stream.encode(vf):
                container.mux(packet)
            n += 1
        for packet in stream.encode():
            container.mux(packet)
    return n


def render_video(spec: VideoSpec, path: str) -> int:
    """Render ``spec`` to a local MP4 file at ``path``; returns the number of frames written."""
    scene = camera_scene(spec.width, spec.height, spec.scene_seed, spec.camera)
    sim = Simulation(scene, spec.fps, spec.n_frames, list(spec.segments), spec.seed, spec.label)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    n = encode_frames(sim.frames(), path, spec.width, spec.height, spec.fps, spec.crf, spec.preset)
    if n != spec.n_frames:  # pragma: no cover - would be a bug in the simulation
        raise RuntimeError(f"{spec.name}: wrote {n} frames, planned {spec.n_frames}")
    return n


def render_frames(spec: VideoSpec) -> Iterable[np.ndarray]:
    """The raw RGB frames of ``spec`` (no encoding), e.g. for inspection."""
    scene = camera_scene(spec.width, spec.height, spec.scene_seed, spec.camera)
    return Simulation(scene, spec.fps, spec.n_frames, list(spec.segments), spec.seed, spec.label).frames()


def make_spec(label: str = "Fire", seed: int = 0, duration: float = 8.0, width: int = 320, height: int = 240,
              fps: float = 25.0, camera: int = 1, number: int = 1,
              segments: list[tuple[int, int]] | None = None) -> VideoSpec:
    """A single video's spec; ``segments`` as (start_frame, end_frame) pairs, else planned at random."""
    if label != NORMAL and label not in ANOMALY_CLASSES:
        raise ExvadError(f"unknown class {label!r}; known: {[NORMAL, *ANOMALY_CLASSES]}")
    n_frames = max(int(round(duration * fps)), 16)
    rng = np.random.default_rng([seed, 4242, number])
    if label == NORMAL:
        if segments:
            raise ExvadError("a Normal video has no anomaly segments")
        segs: tuple[Segment, ...] = ()
    elif segments is None:
        segs = plan_intervals(rng, n_frames, fps, label)
    else:
        for s, e in segments:
            if not (0 <= s < e <= n_frames):
                raise ExvadError(f"segment ({s}, {e}) is outside the video's {n_frames} frames")
        segs = tuple(Segment(int(s), int(e), label) for s, e in sorted(segments))
    return VideoSpec(name=video_name(label, number), label=label, number=number, camera=camera, date="2026-11-02",
                     width=width, height=height, fps=float(fps), n_frames=n_frames, segments=segs,
                     seed=int(np.random.SeedSequence([seed, 4242, number]).generate_state(1)[0]), scene_seed=seed)


def generate_video(path: str, label: str = "Fire", seed: int = 0, duration: float = 8.0, width: int = 320,
                   height: int = 240, fps: float = 25.0, camera: int = 1, number: int = 1,
                   segments: list[tuple[int, int]] | None = None) -> VideoSpec:
    """Write one synthetic video of class ``label`` to the local file ``path`` and return its spec
    (``spec.segments`` holds the anomalous frame intervals, ``spec.n_frames`` the length)."""
    spec = make_spec(label, seed, duration, width, height, fps, camera, number, segments)
    render_video(spec, path)
    return spec
