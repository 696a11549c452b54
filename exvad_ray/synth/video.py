"""Render one planned video and encode it to H.264 MP4 with PyAV.

Encoding is single-threaded with fixed x264 options (CRF, preset, fixed GOP, no scene cut), and
every byte the encoder can see is fixed: the YUV frames are built here (``yuv420p_frame``) and the
heap is made deterministic while the encoder runs (``fixed_heap``). Together these make the output
byte-identical for identical frames, so reruns rewrite the same objects (same etag).
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
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


def yuv420p_frame(frame: np.ndarray) -> av.VideoFrame:
    """RGB uint8 (H, W, 3), H and W even -> a yuv420p VideoFrame whose every byte is set.

    BT.601 limited range in 8-bit fixed point (the coefficients swscale and x264 assume by default),
    chroma from the 2x2 block mean, in integer arithmetic, instead of libswscale's conversion, whose
    SIMD and C paths round differently and are chosen by the buffer's alignment. The row padding of
    each plane (linesize beyond the width, allocated uninitialised by PyAV) is filled by repeating
    the last column, so no byte handed to the encoder depends on heap history.
    """
    h, w = frame.shape[:2]
    rgb = frame.astype(np.int32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16
    q = rgb.reshape(h // 2, 2, w // 2, 2, 3).sum(axis=(1, 3))  # 2x2 block sums, 4x the mean
    qr, qg, qb = q[..., 0], q[..., 1], q[..., 2]
    u = ((-38 * qr - 74 * qg + 112 * qb + 512) >> 10) + 128
    v = ((112 * qr - 94 * qg - 18 * qb + 512) >> 10) + 128
    vf = av.VideoFrame(w, h, "yuv420p")
    for plane, data in zip(vf.planes, (y, u, v)):
        rows = np.frombuffer(plane, dtype=np.uint8).reshape(plane.height, plane.line_size)
        rows[:, :plane.width] = np.clip(data, 0, 255)
        rows[:, plane.width:] = rows[:, plane.width - 1:plane.width]
    return vf


_M_PERTURB = -6  # glibc mallopt parameter: fill every malloc'd block with a fixed byte
_heap_lock = threading.Lock()
_heap_users = 0


@lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    """The C library, looked up once (fixed_heap is entered around every encoder call)."""
    try:
        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "mallopt") else None
    except OSError:  # pragma: no cover - not glibc
        return None


@contextmanager
def fixed_heap() -> Iterator[None]:
    """Make freshly malloc'd memory hold a fixed byte while libx264 runs.

    libx264 reads some memory it allocated and never wrote: the same frames, encoded twice in one
    process, came out as different bytes whenever other allocations happened in between (measured:
    6 distinct files in 8 encodes of one video, decoded frames up to 23 grey levels apart; with the
    heap fixed, 8 of 8 identical; CI failure on 4d0297b). glibc's M_PERTURB initialises every new
    block to a fixed value, which pins down what is read. It is process-wide, so it is switched on
    only around encoder calls (reference-counted across threads); without glibc it does nothing.
    """
    global _heap_users
    libc = _libc()
    if libc is None:  # pragma: no cover - not glibc
        yield
        return
    with _heap_lock:
        _heap_users += 1
        if _heap_users == 1:
            libc.mallopt(_M_PERTURB, 0xA5)
    try:
        yield
    finally:
        with _heap_lock:
            _heap_users -= 1
            if _heap_users == 0:
                libc.mallopt(_M_PERTURB, 0)


def encode_frames(frames: Iterable[np.ndarray], path: str, width: int, height: int, fps: float,
                  crf: int = 23, preset: str = "veryfast") -> int:
    """Encode RGB uint8 frames to an H.264 (yuv420p) MP4 at ``path``; returns the frame count."""
    rate = Fraction(fps).limit_denominator(1001)
    gop = max(int(round(fps * 2)), 1)
    n = 0
    with fixed_heap():
        container = av.open(path, "w", format="mp4", options={"movflags": "+faststart"})
    try:
        with fixed_heap():
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.codec_context.thread_count = 1
            stream.options = {
                "crf": str(crf), "preset": preset, "threads": "1",
                "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:threads=1:lookahead-threads=1",
            }
        for frame in frames:  # rendered outside fixed_heap: only the encoder's allocations pay for it
            vf = yuv420p_frame(frame)
            vf.pts = n
            vf.time_base = Fraction(1) / rate
            with fixed_heap():
                for packet in stream.encode(vf):
                    container.mux(packet)
            n += 1
        with fixed_heap():
            for packet in stream.encode():
                container.mux(packet)
    finally:
        with fixed_heap():
            container.close()
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
