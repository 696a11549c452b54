"""Generators of bad inputs that every stage must survive (tests, demo, benchmarks).

Each case is a real file made the way such files occur in archives: a zero-byte upload, random
bytes with a video extension, a truncated copy, an audio-only MP4, a one-frame clip, a container
whose codec tag no decoder knows, and a stream with absurd dimensions.
"""

from __future__ import annotations

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
