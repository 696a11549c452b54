"""Generators of bad inputs that every stage must survive (tests, demo, benchmarks).

Each case is a real file made the way such files occur in archives: a zero-byte upload, random
bytes with a video extension, a truncated copy, an audio-only MP4, a one-frame clip, a container
whose codec tag no decoder knows, and a stream with absurd dimensions.
"""

from __future__ import annotations

import dataclasses
import os
from fractions import Fraction

import numpy as np

# file name -> expected VideoDecodeError.reason
BAD_CASES: dict[str, str] = {
    "zero_bytes.mp4": "empty",
    "random_bytes.mp4": "not_video",
    "truncated.mp4": "truncated",
    "truncated_faststart.mp4": "truncated",
    "audio_only.mp4": "no_video_stream",
    "one_frame.mp4": "too_few_frames",
    "unknown_codec.avi": "unknown_codec",
    "absurd_dimensions.mp4": "bad_dimensions",
}


def encode_test_video(path: str, n_frames: int, width: int = 64, height: int = 48, fps: int = 25,
                      codec: str = "libx264", seed: int = 0, faststart: bool = False) -> None:
    """A small moving-texture video (deterministic). `faststart` puts the MP4 index first."""
    import av

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(path, "w", options=options) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            stream.options = {"preset": "ultrafast", "threads": "1"}
        for i in range(n_frames):
            img = np.roll(base, i, axis=1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _audio_only(path: str) -> None:
    import av

    with av.open(path, "w") as out:
        stream = out.add_stream("aac", rate=16000)
        stream.layout = "mono"
        t = np.arange(16000, dtype=np.float32) / 16000
        samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
        for start in range(0, samples.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, start:start + 1024]),
                                               format="fltp", layout="mono")
            frame.sample_rate = 16000
            frame.pts = start
            frame.time_base = Fraction(1, 16000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _unknown_codec(path: str) -> None:
    """An AVI whose codec tag is rewritten to a FourCC no decoder knows."""
    tmp = path + ".tmp.avi"
    encode_test_video(tmp, 32, codec="mpeg4")
    data = open(tmp, "rb").read()
    os.remove(tmp)
    for tag in (b"FMP4", b"fmp4", b"XVID", b"xvid", b"DIVX", b"divx", b"mp4v"):
        data = data.replace(tag, b"ZQ9X")
    with open(path, "wb") as f:
        f.write(data)


def write_bad_videos(directory: str, seed: int = 0) -> dict[str, str]:
    """Write every bad case into `directory`; returns {path: expected reason}."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(seed)
    p = lambda name: os.path.join(directory, name)  # noqa: E731
    open(p("zero_bytes.mp4"), "wb").close()
    with open(p("random_bytes.mp4"), "wb") as f:
        f.write(rng.integers(0, 256, size=50_000, dtype=np.uint8).tobytes())
    full = p("full.tmp.mp4")
    encode_test_video(full, 200, seed=seed)
    data = open(full, "rb").read()
    os.remove(full)
    with open(p("truncated.mp4"), "wb") as f:  # index at the end: lost
        f.write(data[: len(data) // 2])
    encode_test_video(full, 200, seed=seed, faststart=True)
    data = open(full, "rb").read()
    os.remove(full)
    with open(p("truncated_faststart.mp4"), "wb") as f:  # index intact, frames missing
        f.write(data[: len(data) * 6 // 10])
    _audio_only(p("audio_only.mp4"))
    encode_test_video(p("one_frame.mp4"), 1)
    _unknown_codec(p("unknown_codec.avi"))
    encode_test_video(p("absurd_dimensions.mp4"), 20, width=8, height=8)
    return {p(name): reason for name, reason in BAD_CASES.items()}


# ---------------------------------------------------------------------------------------------
# The hostile corpus: odd-but-valid videos that must be processed with the right times, and
# broken inputs that must each give one error row with the right reason.


@dataclasses.dataclass(frozen=True)
class Expect:
    """What sampling must make of a corpus file: `reason` for bad ones; for good ones the duration
    (seconds, end of the last frame) and the timing flag."""

    reason: str | None = None
    duration_s: float | None = None
    timing: str = "constant"


def _encode_frames(path: str, pts_ms: list[int], width: int = 64, height: int = 48, codec: str = "libx264",
                   pix_fmt: str = "yuv420p", seed: int = 0, options: dict[str, str] | None = None,
                   container_options: dict[str, str] | None = None, rotate: int | None = None,
                   rate: int = 25, time_base: Fraction = Fraction(1, 1000)) -> None:
    """Frames of a moving texture at the given presentation times (in `time_base` units)."""
    import av

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    with av.open(path, "w", options=container_options or {}) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.time_base = time_base
        stream.time_base = time_base
        stream.options = dict(options or {})
        if rotate is not None:
            stream.metadata["rotate"] = str(rotate)
        for i, t in enumerate(pts_ms):
            frame = av.VideoFrame.from_ndarray(np.roll(base, i, axis=1), format="rgb24")
            frame.pts, frame.time_base = t, time_base
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _cfr(n: int, fps: float) -> list[int]:
    return [int(round(i * 1000 / fps)) for i in range(n)]


X264 = {"preset": "ultrafast", "threads": "1"}


def write_corpus(directory: str, seed: int = 0) -> dict[str, Expect]:
    """Write the hostile corpus (>= 20 kinds) into `directory`; returns {path: Expect}.

    Kinds that cannot be generated with the encoders here are left out by `corpus_gaps()`.
    """
    os.makedirs(directory, exist_ok=True)
    p = lambda name: os.path.join(directory, name)  # noqa: E731
    out: dict[str, Expect] = {path: Expect(reason) for path, reason in write_bad_videos(directory, seed).items()}
    # variable frame rate: 60 frames at 100 fps, then 60 at 5 fps (0.6 s + 12 s)
    vfr = [i * 10 for i in range(60)] + [600 + j * 200 for j in range(60)]
    _encode_frames(p("vfr.mp4"), vfr, options=X264, rate=100)
    out[p("vfr.mp4")] = Expect(duration_s=12.5, timing="variable")  # the last frame lasts 0.01-0.2 s
    _encode_frames(p("tall_16x8000.mp4"), _cfr(20, 25), width=16, height=8000, options=X264)
    out[p("tall_16x8000.mp4")] = Expect(duration_s=20 / 25)
    _encode_frames(p("wide_8000x16.mp4"), _cfr(20, 25), width=8000, height=16, options=X264)
    out[p("wide_8000x16.mp4")] = Expect(duration_s=20 / 25)
    _encode_frames(p("odd_size_65x49.mkv"), _cfr(32, 25), width=65, height=49, codec="ffv1", pix_fmt="yuv444p")
    out[p("odd_size_65x49.mkv")] = Expect(duration_s=32 / 25)
    _encode_frames(p("av1.mp4"), _cfr(40, 25), codec="libsvtav1", options={"preset": "10"})
    out[p("av1.mp4")] = Expect(duration_s=40 / 25)
    _encode_frames(p("hevc_10bit.mkv"), _cfr(40, 25), codec="libx265", pix_fmt="yuv420p10le",
                   options={"preset": "ultrafast", "x265-params": "log-level=error:pools=1:frame-threads=1"})
    out[p("hevc_10bit.mkv")] = Expect(duration_s=40 / 25)
    _encode_frames(p("vp9.webm"), _cfr(40, 25), codec="libvpx-vp9", options={"deadline": "realtime", "cpu-used": "8"})
    out[p("vp9.webm")] = Expect(duration_s=40 / 25)
    _encode_frames(p("mjpeg.avi"), list(range(40)), codec="mjpeg", pix_fmt="yuvj420p", time_base=Fraction(1, 25))
    out[p("mjpeg.avi")] = Expect(duration_s=40 / 25)
    _encode_frames(p("mpeg2.ts"), list(range(40)), codec="mpeg2video", time_base=Fraction(1, 25))
    out[p("mpeg2.ts")] = Expect(duration_s=40 / 25)
    _encode_frames(p("rotated_90.mp4"), _cfr(40, 25), options=X264, rotate=90)
    out[p("rotated_90.mp4")] = Expect(duration_s=40 / 25)
    _encode_frames(p("café_東京 night.mp4"), _cfr(40, 25), options=X264)
    out[p("café_東京 night.mp4")] = Expect(duration_s=40 / 25)
    _encode_frames(p("cam=7 a=b.mp4"), _cfr(40, 25), options=X264)
    out[p("cam=7 a=b.mp4")] = Expect(duration_s=40 / 25)
    _encode_frames(p("short_0.2s.mp4"), _cfr(5, 25), options=X264)
    out[p("short_0.2s.mp4")] = Expect("too_few_frames")
    # other files under a video name
    import gzip
    import zlib

    png = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + (64).to_bytes(4, "big") * 2 + b"\x08\x02\x00\x00\x00"
    with open(p("image_png.mp4"), "wb") as f:
        f.write(png + zlib.crc32(png[12:]).to_bytes(4, "big") + b"\x00" * 64)
    out[p("image_png.mp4")] = Expect("not_video")
    with open(p("archive_gzip.mp4"), "wb") as f:
        f.write(gzip.compress(b"not a video " * 1000, mtime=0))
    out[p("archive_gzip.mp4")] = Expect("not_video")
    with open(p("error_page.mp4"), "wb") as f:
        f.write(b"<html><body>403 Forbidden</body></html>\n")
    out[p("error_page.mp4")] = Expect("not_video")
    loop = p("symlink_loop.mp4")
    if not os.path.lexists(loop):
        os.symlink(os.path.basename(loop), loop)
    out[loop] = Expect("unreadable")
    return out


def corpus_gaps() -> dict[str, str]:
    """Kinds the issue names that this generator cannot make here, and why."""
    return {}
