"""Frame readers behind one small interface: decord first (it resizes inside the decoder and seeks
fast), PyAV when decord cannot open a stream that FFmpeg's decoders here can decode (AV1 through
dav1d, for one). Both report each frame's presentation time, which is what snippet times use.

Interface: ``len(reader)``; ``reader.get_batch(indices) -> uint8 array (n, h, w, 3)`` at the size
given when opened; ``reader.timestamps(indices) -> float64 array (n, 2)`` of [start, end) seconds
from the stream's presentation timestamps (not yet shifted to start at 0).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class FrameReader(Protocol):
    backend: str

    def __len__(self) -> int: ...

    def get_batch(self, indices: list[int]) -> np.ndarray: ...

    def timestamps(self, indices: np.ndarray) -> np.ndarray: ...


class DecordReader:
    """decord.VideoReader with the frames resized by the decoder (width/height -1: source size)."""

    backend = "decord"

    def __init__(self, path: str, width: int, height: int, threads: int):
        import decord

        self._r = decord.VideoReader(path, ctx=decord.cpu(0), width=width, height=height, num_threads=threads)

    def __len__(self) -> int:
        return len(self._r)

    def get_batch(self, indices: list[int]) -> np.ndarray:
        return self._r.get_batch(indices).asnumpy()

    def timestamps(self, indices: np.ndarray) -> np.ndarray:
        ts = np.asarray(self._r.get_frame_timestamp(np.asarray(indices, dtype=np.int64)), dtype=np.float64
                        ).reshape(-1, 2)
        zero = ts[:, 1] <= ts[:, 0]  # packets without a duration (AVI): one frame at the average rate
        fps = float(self._r.get_avg_fps() or 0)
        ts[zero, 1] = ts[zero, 0] + (1.0 / fps if fps > 0 else 0.0)
        return ts


class PyAVReader:
    """Frames decoded by PyAV, in presentation order, for streams decord cannot open.

    Opening demuxes the packets once (no decoding) to learn the frame count and presentation
    times. `get_batch` decodes forward from where the previous call stopped (the sampler asks for
    increasing indices, window by window), keeping only the requested frames, each converted to
    the output size by swscale as it is decoded: memory stays at one output frame per request
    plus the decoder's own reference frames.
    """

    backend = "pyav"

    def __init__(self, path: str, width: int, height: int, threads: int):
        import av

        self.path, self.width, self.height, self.threads = path, width, height, threads
        with av.open(path, metadata_errors="ignore") as c:
            s = c.streams.video[0]
            tb = float(s.time_base or 0) or 1.0 / 1000
            pts = sorted(int(p.pts) for p in c.demux(s) if p.pts is not None and p.size > 0)
            if not pts:
                raise ValueError("no timestamped packets in the video stream")
            if s.frames and len(pts) < int(s.frames):  # the index lists frames the file no longer holds
                raise ValueError(f"the container lists {int(s.frames)} frames but holds {len(pts)}")
            self.src_w, self.src_h = int(s.width or 0), int(s.height or 0)
        starts = np.asarray(pts, dtype=np.float64) * tb
        last = starts[-1] - starts[-2] if len(starts) > 1 else 1.0 / 25
        self._ts = np.stack([starts, np.append(starts[1:], starts[-1] + last)], axis=1)
        self._container: Any = None
        self._frames: Any = None
        self._next = 0
        self._decode_first()

    def _decode_first(self) -> None:
        """Decode one frame now, so that a stream nothing here can decode fails at open."""
        self._restart()
        self._pending = next(self._frames)

    def _restart(self) -> None:
        import av

        if self._container is not None:
            self._container.close()
        self._container = av.open(self.path, metadata_errors="ignore")
        stream = self._container.streams.video[0]
        stream.thread_count = max(1, self.threads)
        self._frames = self._container.decode(stream)
        self._next = 0
        self._pending = None

    def __len__(self) -> int:
        return len(self._ts)

    def _frame(self) -> Any:
        if self._pending is not None:
            frame, self._pending = self._pending, None
        else:
            frame = next(self._frames)
        self._next += 1
        return frame

    def get_batch(self, indices: list[int]) -> np.ndarray:
        if indices and indices[0] < self._next:
            self._restart()
        w = self.width if self.width > 0 else self.src_w
        h = self.height if self.height > 0 else self.src_h
        out = np.empty((len(indices), h, w, 3), dtype=np.uint8)
        for k, want in enumerate(indices):
            while self._next <= want:
                frame = self._frame()  # StopIteration: the stream ends early
            out[k] = frame.to_ndarray(width=w, height=h, format="rgb24")
        return out

    def timestamps(self, indices: np.ndarray) -> np.ndarray:
        return self._ts[np.asarray(indices, dtype=np.int64)]

    def close(self) -> None:
        if getattr(self, "_container", None) is not None:
            self._container.close()
            self._container = None

    def __del__(self) -> None:
        self.close()
