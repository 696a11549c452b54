"""Decode stage: one archive object in, its window rows out (or an error row written to the index).

Runs as bounded CPU tasks (`flat_map` with a `TaskPoolStrategy`). Each task downloads its object
to local temp disk, samples it window by window (see exvad_ray.video) and yields windows as they
are decoded, so at most one window of frames per task is in memory. Bad videos never fail the job:
the error is written to the `errors` table right here (deterministic file name, so idempotent) and
no row goes downstream. Thumbnails are JPEG-encoded here, while the frames are at hand, so that
frames can be dropped right after the CLIP stage.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import traceback
from collections.abc import Iterator
from typing import Any

import numpy as np

from exvad_ray import storage
from exvad_ray.errors import ExvadError
from exvad_ray import index as idx
from exvad_ray.index.partitions import recorded_at
from exvad_ray.pipeline.guard import GuardTripped, guarded
from exvad_ray.pipeline.progress import notify
from exvad_ray.video import SamplingConfig, sample_uri

THUMB_SIZE = 112  # half the 224 sampling size: a 2x2 box reduce, 3x cheaper than a resize


def jpeg_thumbs(frames: np.ndarray, size: int = THUMB_SIZE, quality: int = 80) -> tuple[bytes, np.ndarray]:
    """All snippet thumbnails of a window as one JPEG blob plus offsets (n + 1), a layout Arrow
    stores natively (a list of variable-size bytes per row would be pickled by Ray Data)."""
    from PIL import Image

    parts = []
    for frame in frames:
        buf = io.BytesIO()
        img = Image.fromarray(frame)
        if img.size == (2 * size, 2 * size):
            img = img.reduce(2)
        elif img.size != (size, size):
            img = img.resize((size, size), Image.BILINEAR)
        img.save(buf, format="JPEG", quality=quality)
        parts.append(buf.getvalue())
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
    return b"".join(parts), offsets


def thumb_at(blob: bytes, offsets: np.ndarray, i: int) -> bytes:
    return bytes(blob[int(offsets[i]):int(offsets[i + 1])])


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def write_error(index: str, run_id: str, item: dict[str, Any], stage: str, exc: BaseException) -> str:
    """Record a failed video in `errors` (one file per video, rewritten on retry; on a Delta index a
    commit of its own, the newest row per video being the one readers serve). Returns the reason."""
    reason = getattr(exc, "reason", None) or ("user_error" if isinstance(exc, ExvadError) else "internal")
    message = str(exc) if isinstance(exc, (ExvadError, GuardTripped)) else "".join(
        traceback.format_exception_only(type(exc), exc)).strip()
    detail = getattr(exc, "detail", None)
    cols = {
        "video_id": [item["video_id"]], "uri": [item["uri"]], "size_bytes": [item.get("size")],
        "stage": [stage], "error_type": [type(exc).__name__], "reason": [reason], "message": [message[:2000]],
        "detail": [str(detail)[:2000] if detail else None],
        "run_id": [run_id], "processed_at": [utcnow()],
    }
    from exvad_ray.index import delta

    values = {"date": item["processing_date"]}
    if delta.is_delta(index, "errors"):  # a commit of its own: errors are few, and appends never conflict
        delta.append(index, "errors", delta.write_files(index, "errors", cols, [values]))
    else:
        idx.write_video_tables(index, item["video_id"], {"errors": (values, cols)})
    return reason


def recorded_time(item: dict[str, Any], creation_time: str | None) -> tuple[dt.datetime | None, str]:
    """The video's recording time (see partitions.recorded_at) from the driver's path parse
    (`path_time`, `path_has_time`) and the container's creation_time; the `date` partition follows it."""
    path = item.get("path_time") or ""
    found = (dt.datetime.fromisoformat(path), bool(item.get("path_has_time"))) if path else None
    return recorded_at(found, creation_time)


@dataclasses.dataclass
class DecodeStage:
    """`flat_map` function: archive item -> window rows. Items carry uri, video_id, size, etag,
    date, camera, processing_date (see job.list_work)."""

    index: str
    run_id: str
    sampling: SamplingConfig
    progress: Any = None

    def _windows(self, item: dict[str, Any]) -> Iterator[dict[str, Any]]:
        first = True
        for info, row in sample_uri(item["uri"], self.sampling, video_id=item["video_id"]):
            if first:
                notify(self.progress, "decoded_video")
                first = False
                recorded, source = recorded_time(item, info.creation_time)
            row.update(
                n_windows=info.n_windows, fps=info.fps, n_frames=info.n_frames, width=info.width,
                height=info.height, codec=info.codec, size=item["size"], etag=item.get("etag") or "",
                date=recorded.date().isoformat() if recorded else item["date"], camera=item["camera"],
                processing_date=item["processing_date"], duration_s=info.duration_s, timing=info.timing,
                recorded_at=recorded.isoformat() if recorded else "", recorded_at_source=source,
            )
            row["thumbs_blob"], row["thumbs_offsets"] = jpeg_thumbs(row["frames"])
            yield row

    def __call__(self, item: dict[str, Any]) -> Iterator[dict[str, Any]]:
        try:
            with guarded(self.progress, item):  # retried crashes end as an error row
                yield from self._windows(item)
        except Exception as exc:  # noqa: BLE001 - a bad video never fails the job
            if storage.is_unreachable(exc):  # an outage is not the video's fault: stop the job
                raise
            reason = write_error(self.index, self.run_id, item, "decode", exc)
            notify(self.progress, "video_failed", "decode", reason)
