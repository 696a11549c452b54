"""Snippet sampling following the field's convention (VadCLIP/Ex-VAD): one representative frame per
16-frame snippet, resized and centre-cropped to the model input (224), grouped into windows of at most
256 snippets, plus keyframes for captioning at a configurable rate.

Decoding uses decord, which resizes inside the decoder (only the sampled frames, already small, are
ever materialised) and decodes window by window, so memory is bounded by one window
(256 x 224 x 224 x 3 bytes = 38.5 MB) whatever the video's length. Containers are probed first with
PyAV, which classifies bad input (empty, truncated, not a video, audio only, unknown codec, absurd
dimensions, too short) into one typed error, `VideoDecodeError`, with a stable reason code.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from exvad_ray import storage
from exvad_ray.errors import VideoDecodeError
from exvad_ray.units import SNIPPET_FRAMES, WINDOW_SNIPPETS

# Leading bytes of the containers we recognise; a file that starts like a container but cannot be
# opened is reported as truncated/corrupt rather than "not a video".
_CONTAINER_MAGIC = (
    (4, b"ftyp"),  # MP4 / MOV / 3GP (offset 4)
    (0, b"\x1a\x45\xdf\xa3"),  # Matroska / WebM
    (0, b"RIFF"),  # AVI
    (0, b"FLV"),
    (0, b"\x00\x00\x01\xba"),  # MPEG-PS
    (0, b"\x47"),  # MPEG-TS sync byte (weak; checked with the extension)
)


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """How videos are cut into snippets and windows. Defaults follow VadCLIP/Ex-VAD."""

    snippet_frames: int = SNIPPET_FRAMES
    image_size: int = 224
    crop: str = "center"  # "center": short side to image_size then centre crop; "squash": resize both sides
    window_snippets: int = WINDOW_SNIPPETS
    keyframe_interval_s: float = 2.0  # one caption keyframe per this many seconds ...
    max_keyframes_per_window: int = 16  # ... at most this many per window (uniform if more)
    min_frames: int = 16  # shorter videos are rejected (too_few_frames)
    max_side: int = 8192  # absurd dimensions are rejected
    min_side: int = 16
    max_duration_s: float = 48 * 3600.0
    decode_threads: int = 1  # decoder threads per task; Ray parallelises across videos

    def __post_init__(self) -> None:
        if self.snippet_frames < 1 or self.window_snippets < 1 or self.image_size < 8:
            raise ValueError("snippet_frames, window_snippets must be >= 1 and image_size >= 8")
        if self.crop not in ("center", "squash"):
            raise ValueError(f"crop must be 'center' or 'squash', not {self.crop!r}")
        if self.keyframe_interval_s <= 0 or self.max_keyframes_per_window < 1:
            raise ValueError("keyframe_interval_s must be > 0 and max_keyframes_per_window >= 1")


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What the container says about the video stream (PyAV probe, decord frame count)."""

    n_frames: int
    fps: float
    width: int
    height: int
    codec: str
    n_snippets: int
    n_windows: int
    creation_time: str | None = None  # the container's creation_time tag, as written (recording time)

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.fps if self.fps > 0 else 0.0


def snippet_layout(n_frames: int, snippet_frames: int = 16) -> np.ndarray:
    """Frame ranges [start, end) of each snippet, shape (n_snippets, 2).

    Snippet i covers frames [16i, 16i+16). A trailing partial snippet is kept when it holds at least
    half a snippet of frames (so the end of a video is scored), else its frames join no snippet.
    """
    full, rest = divmod(n_frames, snippet_frames)
    n = full + (1 if rest * 2 >= snippet_frames else 0)
    starts = np.arange(n, dtype=np.int64) * snippet_frames
    ends = np.minimum(starts + snippet_frames, n_frames)
    return np.stack([starts, ends], axis=1)


def _looks_like_container(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(16)
    ext = os.path.splitext(path)[1].lower()
    for offset, magic in _CONTAINER_MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return magic != b"\x47" or ext in (".ts", ".m2ts", ".mts")
    return False


def probe_video(path: str, cfg: SamplingConfig = SamplingConfig(), uri: str | None = None) -> VideoInfo:
    """Open the container with PyAV and validate the video stream; raise VideoDecodeError if bad."""
    import av

    uri = uri or path
    size = os.path.getsize(path)
    if size == 0:
        raise VideoDecodeError("empty", "the file has zero bytes", uri)
    try:
        container = av.open(path, metadata_errors="ignore")
    except av.error.InvalidDataError as exc:
        detail = getattr(exc, "strerror", None) or str(exc)
        if _looks_like_container(path):
            raise VideoDecodeError("truncated", f"container header found but unreadable ({detail})", uri) from exc
        raise VideoDecodeError("not_video", f"not a recognised video container ({detail})", uri) from exc
    except Exception as exc:  # noqa: BLE001 - any demuxer failure is a bad video
        reason = "truncated" if _looks_like_container(path) else "not_video"
        raise VideoDecodeError(reason, f"cannot open: {type(exc).__name__}: {exc}", uri) from exc
    with container:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["no streams"]
            raise VideoDecodeError("no_video_stream", f"no video stream (found: {', '.join(kinds)})", uri)
        stream = container.streams.video[0]
        ctx = stream.codec_context
        codec = getattr(ctx, "name", None) or "unknown"
        try:
            av.codec.Codec(codec, "r")
        except Exception as exc:  # noqa: BLE001
            raise VideoDecodeError("unknown_codec", f"no decoder for codec {codec!r}", uri) from exc
        width, height = int(stream.width or 0), int(stream.height or 0)
        if (min(width, height) < cfg.min_side or max(width, height) > cfg.max_side):
            raise VideoDecodeError(
                "bad_dimensions",
                f"{width}x{height} is outside the supported {cfg.min_side}..{cfg.max_side} pixels per side", uri)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        created = container.metadata.get("creation_time") or stream.metadata.get("creation_time")
        if not (0.1 <= fps <= 1000.0):
            raise VideoDecodeError("bad_timing", f"implausible frame rate {fps}", uri)
    n_frames = _decord_frame_count(path, uri, cfg)
    if n_frames < cfg.min_frames:
        raise VideoDecodeError("too_few_frames", f"{n_frames} frame(s); at least {cfg.min_frames} needed", uri)
    if n_frames / fps > cfg.max_duration_s:
        raise VideoDecodeError("too_large", f"{n_frames / fps / 3600:.1f} h is over the configured limit", uri)
    n_snippets = len(snippet_layout(n_frames, cfg.snippet_frames))
    return VideoInfo(n_frames=n_frames, fps=fps, width=width, height=height, codec=codec,
                     n_snippets=n_snippets, n_windows=math.ceil(n_snippets / cfg.window_snippets),
                     creation_time=created)


def _decord_frame_count(path: str, uri: str, cfg: SamplingConfig) -> int:
    reader = _open_reader(path, uri, cfg, width=-1, height=-1)
    n = len(reader)
    del reader
    return n


def _open_reader(path: str, uri: str, cfg: SamplingConfig, width: int, height: int) -> Any:
    import decord

    try:
        return decord.VideoReader(path, ctx=decord.cpu(0), width=width, height=height,
                                  num_threads=cfg.decode_threads)
    except Exception as exc:  # noqa: BLE001 - decord raises DECORDError/RuntimeError
        reason = "truncated" if _looks_like_container(path) else "not_video"
        raise VideoDecodeError(reason, f"decoder cannot open the stream: {str(exc).splitlines()[0]}", uri) from exc


def _decode_size(width: int, height: int, cfg: SamplingConfig) -> tuple[int, int]:
    """Size decord resizes to: for centre crop, short side = image_size (even, aspect kept)."""
    if cfg.crop == "squash":
        return cfg.image_size, cfg.image_size
    scale = cfg.image_size / min(width, height)
    w = max(cfg.image_size, int(round(width * scale / 2)) * 2)
    h = max(cfg.image_size, int(round(height * scale / 2)) * 2)
    return w, h


def _center_crop(frames: np.ndarray, size: int) -> np.ndarray:
    h, w = frames.shape[1:3]
    top, left = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(frames[:, top:top + size, left:left + size, :])


def _keyframe_indices(start_s: np.ndarray, end_s: np.ndarray, cfg: SamplingConfig) -> np.ndarray:
    """Indices into the window's snippets whose middle frames are captioned.

    One per `keyframe_interval_s` of video, at least one, at most `max_keyframes_per_window`,
    spread uniformly over the window.
    """
    n = len(start_s)
    span = float(end_s[-1] - start_s[0])
    want = int(min(cfg.max_keyframes_per_window, max(1, math.ceil(span / cfg.keyframe_interval_s)), n))
    return np.unique(np.linspace(0, n - 1, num=want).round().astype(np.int64))


def iter_windows(
    path: str,
    cfg: SamplingConfig = SamplingConfig(),
    *,
    uri: str | None = None,
    video_id: str | None = None,
    info: VideoInfo | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield one window row per <= `window_snippets` snippets (columns in docs/CONTRACTS.md).

    Raises VideoDecodeError (also midway, e.g. for a truncated stream).
    """
    uri = uri or path
    info = info or probe_video(path, cfg, uri)
    layout = snippet_layout(info.n_frames, cfg.snippet_frames)
    mids = (layout[:, 0] + layout[:, 1] - 1) // 2  # middle frame of each snippet
    dw, dh = _decode_size(info.width, info.height, cfg)
    reader = _open_reader(path, uri, cfg, width=dw, height=dh)
    n_decodable = len(reader)
    try:
        for w, first in enumerate(range(0, len(layout), cfg.window_snippets)):
            sl = slice(first, first + cfg.window_snippets)
            idx = mids[sl]
            if idx[-1] >= n_decodable:
                raise VideoDecodeError("truncated", f"stream ends before frame {int(idx[-1])}", uri)
            try:
                frames = reader.get_batch(idx.tolist()).asnumpy()
            except Exception as exc:  # noqa: BLE001
                raise VideoDecodeError("truncated", f"decoding failed near frame {int(idx[0])}: "
                                       f"{str(exc).splitlines()[0]}", uri) from exc
            if frames.shape[0] != len(idx):
                raise VideoDecodeError("truncated", f"decoder returned {frames.shape[0]} of {len(idx)} frames", uri)
            if cfg.crop == "center":
                frames = _center_crop(frames, cfg.image_size)
            start_s = layout[sl, 0] / info.fps
            end_s = layout[sl, 1] / info.fps
            kf = _keyframe_indices(start_s, end_s, cfg)
            yield {
                "video_id": video_id or "",
                "uri": uri,
                "window_index": w,
                "snippet_offset": first,
                "n_snippets": len(idx),
                "frames": frames,
                "frame_index": idx.astype(np.int64),
                "start_s": start_s.astype(np.float64),
                "end_s": end_s.astype(np.float64),
                "keyframes": frames[kf],
                "keyframe_s": (idx[kf] / info.fps).astype(np.float64),
            }
    finally:
        del reader


def sample_uri(uri: str, cfg: SamplingConfig = SamplingConfig(), *, video_id: str | None = None,
               tmp_dir: str | None = None) -> Iterator[tuple[VideoInfo, dict[str, Any]]]:
    """Sample a video at any storage location: yields (info, window row) pairs.

    Remote objects are downloaded to a temporary file first (demuxers seek; see storage.local_copy)
    and removed when the generator finishes.
    """
    with storage.local_copy(uri, tmp_dir=tmp_dir) as path:
        info = probe_video(path, cfg, uri)
        for row in iter_windows(path, cfg, uri=uri, video_id=video_id, info=info):
            yield info, row
