"""Snippet sampling following the field's convention (VadCLIP/Ex-VAD): one representative frame per
16-frame snippet, resized and centre-cropped to the model input (224), grouped into windows of at most
256 snippets, plus keyframes for captioning at a configurable rate.

Memory is bounded by construction (docs/PIPELINE.md, "Memory bound"): frames are resized inside
the decoder to at most `image_size` x `image_size * max_aspect` pixels whatever the source's aspect
ratio (a 16x8000 stream is squeezed along its long side rather than decoded at 224x112000), they
are fetched `decode_chunk` at a time and cropped at once, and a window holds only cropped frames.
Source frames above `max_source_pixels` are rejected before any decoding.

Times come from the frames' presentation timestamps, so variable-frame-rate video gets true
times; `VideoInfo.timing` says whether they are constant-rate, variable-rate, or only estimated
(timestamps missing or not increasing: times are then frame index / average rate, not trusted).

decord decodes; when it cannot open a stream that PyAV can decode (AV1 via dav1d), PyAV does it
(`video.readers`). Bad input raises one typed error, `VideoDecodeError`, with a stable reason code
and the underlying library's message kept apart as `detail`.
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
from exvad_ray.video.readers import DecordReader, FrameReader, PyAVReader
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
    max_source_pixels: int = 7680 * 4320  # 8K UHD; bigger frames are rejected before decoding (too_large)
    max_aspect: float = 4.0  # decoded frames are at most image_size x image_size*max_aspect pixels
    decode_chunk: int = 32  # frames fetched from the decoder at a time (then cropped at once)
    max_duration_s: float = 48 * 3600.0
    decode_threads: int = 1  # decoder threads per task; Ray parallelises across videos

    def __post_init__(self) -> None:
        if self.snippet_frames < 1 or self.window_snippets < 1 or self.image_size < 8:
            raise ValueError("snippet_frames, window_snippets must be >= 1 and image_size >= 8")
        if self.crop not in ("center", "squash"):
            raise ValueError(f"crop must be 'center' or 'squash', not {self.crop!r}")
        if not self.keyframe_interval_s > 0 or self.max_keyframes_per_window < 1:
            raise ValueError("keyframe_interval_s must be > 0 and max_keyframes_per_window >= 1")
        if self.max_aspect < 1 or self.decode_chunk < 1:
            raise ValueError("max_aspect must be >= 1 and decode_chunk >= 1")

    @property
    def max_decoded_frame_bytes(self) -> int:
        """The most bytes one decoded (resized, not yet cropped) RGB frame can take."""
        return int(self.image_size * self.image_size * self.max_aspect) * 3

    @property
    def max_window_bytes(self) -> int:
        """The bound on frame memory per task: a window of cropped frames, its keyframe copies and
        one chunk of decoded frames (docs/PIPELINE.md, "Memory bound")."""
        crop = self.image_size * self.image_size * 3
        return (self.window_snippets * crop + self.max_keyframes_per_window * crop
                + self.decode_chunk * self.max_decoded_frame_bytes)


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
    duration_s: float = 0.0  # end of the last frame, from presentation timestamps
    timing: str = "constant"  # constant | variable (times from timestamps) | estimated (not trusted)
    backend: str = "decord"  # decord | pyav


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


def _unreadable(path: str, uri: str, exc: OSError) -> VideoDecodeError:
    return VideoDecodeError("unreadable", "the file cannot be read", uri, detail=f"{type(exc).__name__}: {exc}")


def probe_video(path: str, cfg: SamplingConfig = SamplingConfig(), uri: str | None = None) -> VideoInfo:
    """Open the container with PyAV and validate the video stream; raise VideoDecodeError if bad."""
    import av

    uri = uri or path
    try:
        size = os.path.getsize(path)
        if size:
            _looks_like_container(path)
    except OSError as exc:  # symlink loop, permission, a folder named like a video
        raise _unreadable(path, uri, exc) from exc
    if size == 0:
        raise VideoDecodeError("empty", "the file has zero bytes", uri)
    try:
        container = av.open(path, metadata_errors="ignore")
    except Exception as exc:  # noqa: BLE001 - any demuxer failure is a bad video
        detail = f"{type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}"
        if _looks_like_container(path):
            raise VideoDecodeError("truncated", "a video container whose header cannot be read", uri,
                                   detail=detail) from exc
        raise VideoDecodeError("not_video", "not a video container this system can read", uri,
                               detail=detail) from exc
    with container:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["no streams"]
            raise VideoDecodeError("no_video_stream", f"no video stream (found: {', '.join(kinds)})", uri)
        if (container.format.name or "").endswith("_pipe") or container.format.name == "image2":
            raise VideoDecodeError("not_video", f"an image ({container.format.name}), not a video", uri)
        stream = container.streams.video[0]
        ctx = stream.codec_context
        codec = getattr(ctx, "name", None) or "unknown"
        try:
            av.codec.Codec(codec, "r")
        except Exception as exc:  # noqa: BLE001
            raise VideoDecodeError("unknown_codec", f"no decoder here for the {codec!r} video codec", uri,
                                   detail=str(exc)) from exc
        width, height = int(stream.width or 0), int(stream.height or 0)
        if (min(width, height) < cfg.min_side or max(width, height) > cfg.max_side):
            raise VideoDecodeError(
                "bad_dimensions",
                f"{width}x{height} is outside the supported {cfg.min_side}..{cfg.max_side} pixels per side", uri)
        if width * height > cfg.max_source_pixels:
            raise VideoDecodeError("too_large", f"{width}x{height} frames are over the {cfg.max_source_pixels} "
                                   "pixel limit", uri)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        created = container.metadata.get("creation_time") or stream.metadata.get("creation_time")
    reader = _open_reader(path, uri, cfg, width=-1, height=-1, codec=codec)
    n_frames = len(reader)
    if n_frames < cfg.min_frames:
        raise VideoDecodeError("too_few_frames", f"{n_frames} frame(s); at least {cfg.min_frames} needed", uri)
    times, timing = _frame_times(reader, n_frames, fps)
    duration = float(times[-1, 1]) if len(times) else 0.0
    if not 0.1 <= fps <= 1000.0:
        fps = n_frames / duration if duration > 0 else 0.0
        if not 0.1 <= fps <= 1000.0:
            raise VideoDecodeError("bad_timing", f"implausible frame rate {fps:.3g} frames per second", uri)
    if duration > cfg.max_duration_s:
        raise VideoDecodeError("too_large", f"{duration / 3600:.1f} h is over the configured limit", uri)
    n_snippets = len(snippet_layout(n_frames, cfg.snippet_frames))
    return VideoInfo(n_frames=n_frames, fps=fps, width=width, height=height, codec=codec,
                     n_snippets=n_snippets, n_windows=math.ceil(n_snippets / cfg.window_snippets),
                     duration_s=duration, timing=timing, backend=reader.backend, creation_time=created)


def _frame_times(reader: FrameReader, n_frames: int, fps: float, indices: np.ndarray | None = None,
                 origin: float | None = None) -> tuple[np.ndarray, str]:
    """[start, end) seconds of the frames at `indices` (default: the last frame), from presentation
    timestamps shifted so the first frame starts at 0, and how far they can be trusted.

    `timing`: "constant" when timestamps agree with index / average rate (within half a second or
    one frame), "variable" when they do not (variable frame rate: the timestamps are right, the
    rate is not), "estimated" when timestamps are missing or go backwards (times are then index /
    rate, which may be wrong).
    """
    idx = np.arange(n_frames) if indices is None else np.asarray(indices, dtype=np.int64)
    probe = np.unique(np.concatenate([[0, n_frames - 1], np.linspace(0, n_frames - 1, 64).astype(np.int64), idx]))
    try:
        ts = reader.timestamps(probe)
    except Exception:  # noqa: BLE001 - no timestamps: estimate
        ts = np.full((len(probe), 2), np.nan)
    good = np.isfinite(ts).all() and bool(np.all(np.diff(ts[:, 0]) > 0)) and bool(np.all(ts[:, 1] >= ts[:, 0]))
    if not good or not fps > 0:
        rate = fps if fps > 0 else 25.0
        est = np.stack([idx / rate, (idx + 1) / rate], axis=1).astype(np.float64)
        return (est if indices is not None else est[-1:]), "estimated"
    zero = float(ts[0, 0]) if origin is None else origin
    ts = ts - zero
    expect = probe / fps
    timing = "constant" if float(np.max(np.abs(ts[:, 0] - expect))) <= max(0.5, 1.0 / fps) else "variable"
    pos = np.searchsorted(probe, idx)
    out = ts[pos]
    return (out if indices is not None else out[-1:]), timing


def _open_reader(path: str, uri: str, cfg: SamplingConfig, width: int, height: int,
                 codec: str = "unknown") -> FrameReader:
    """decord, or PyAV when decord cannot open the stream; VideoDecodeError when neither can."""
    try:
        return DecordReader(path, width, height, cfg.decode_threads)
    except Exception as exc:  # noqa: BLE001 - decord raises DECORDError/RuntimeError
        decord_msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    try:
        return PyAVReader(path, width, height, cfg.decode_threads)
    except Exception as exc:  # noqa: BLE001
        detail = f"decord: {decord_msg}; pyav: {type(exc).__name__}: {exc}"
        if "DecoderNotFound" in type(exc).__name__:
            raise VideoDecodeError("unknown_codec", f"no decoder here for the {codec!r} video codec", uri,
                                   detail=detail) from exc
    reason = "truncated" if _looks_like_container(path) else "not_video"
    raise VideoDecodeError(reason, f"no frame of the {codec!r} video stream can be decoded", uri, detail=detail)


def _decode_size(width: int, height: int, cfg: SamplingConfig) -> tuple[int, int]:
    """Size the decoder resizes to. Centre crop: short side = image_size with the aspect kept up to
    `max_aspect`; beyond it the long side is capped (the frame is squeezed along it), so a decoded
    frame never exceeds image_size x image_size*max_aspect pixels."""
    if cfg.crop == "squash":
        return cfg.image_size, cfg.image_size
    scale = cfg.image_size / min(width, height)
    cap = int(cfg.image_size * cfg.max_aspect) // 2 * 2
    w = min(cap, max(cfg.image_size, int(round(width * scale / 2)) * 2))
    h = min(cap, max(cfg.image_size, int(round(height * scale / 2)) * 2))
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
    reader = _open_reader(path, uri, cfg, width=dw, height=dh, codec=info.codec)
    n_decodable = len(reader)
    starts, ends, mid_s = _snippet_times(reader, info, layout, mids)
    try:
        for w, first in enumerate(range(0, len(layout), cfg.window_snippets)):
            sl = slice(first, first + cfg.window_snippets)
            idx = mids[sl]
            if idx[-1] >= n_decodable:
                raise VideoDecodeError("truncated", f"the stream ends before frame {int(idx[-1])}", uri)
            frames = _decode_cropped(reader, idx, cfg, uri)
            start_s, end_s = starts[sl], ends[sl]
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
                "keyframe_s": mid_s[sl][kf].astype(np.float64),
            }
    finally:
        del reader


def _snippet_times(reader: FrameReader, info: VideoInfo, layout: np.ndarray,
                   mids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start, end and middle-frame times of every snippet (seconds from the first frame)."""
    if info.timing == "estimated" or not len(layout):
        return layout[:, 0] / info.fps, layout[:, 1] / info.fps, mids / info.fps
    origin = float(reader.timestamps(np.array([0]))[0, 0])
    ts = reader.timestamps(np.concatenate([layout[:, 0], layout[:, 1] - 1, mids])) - origin
    n = len(layout)
    return ts[:n, 0], ts[n:2 * n, 1], ts[2 * n:, 0]


def _decode_cropped(reader: FrameReader, idx: np.ndarray, cfg: SamplingConfig, uri: str) -> np.ndarray:
    """The window's frames, `decode_chunk` at a time, each chunk cropped before the next is decoded,
    so that at most one chunk of full decoded frames is alive next to the cropped window."""
    size = cfg.image_size
    out: np.ndarray | None = None
    for lo in range(0, len(idx), cfg.decode_chunk):
        chunk = idx[lo:lo + cfg.decode_chunk]
        try:
            frames = reader.get_batch(chunk.tolist())
        except Exception as exc:  # noqa: BLE001 - decoder errors midway: the data is corrupt
            raise VideoDecodeError("truncated", f"decoding failed near frame {int(chunk[0])}", uri,
                                   detail=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                                   ) from exc
        if frames.shape[0] != len(chunk):
            raise VideoDecodeError("truncated", f"the decoder returned {frames.shape[0]} of {len(chunk)} frames", uri)
        if cfg.crop == "center":
            frames = _center_crop(frames, size)
        if out is None:
            out = np.empty((len(idx),) + frames.shape[1:], dtype=np.uint8)
        out[lo:lo + len(chunk)] = frames
        del frames
    assert out is not None
    return out


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
