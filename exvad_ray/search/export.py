"""Evidence export: a segment's clip (cut from the source video with PyAV, with context around it),
its thumbnail, its index row, and a manifest with the SHA-256 of every file and of the source video."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from fractions import Fraction
from typing import Any

from exvad_ray import storage
from exvad_ray.errors import ExvadError

CONTEXT_S = 3.0
FILES = ("clip.mp4", "thumbnail.jpg", "segment.json")


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def json_row(row: dict[str, Any]) -> dict[str, Any]:
    """A segment row without its embeddings and image bytes, JSON-safe."""
    keep = {k: v for k, v in row.items() if k != "thumbnail_jpeg" and not k.endswith("embedding")}
    return json.loads(json.dumps(keep, default=str))


def cut_clip(src: str, dest: str, start_s: float, end_s: float) -> tuple[float, float, int]:
    """Re-encode [start_s, end_s) of `src` to H.264 MP4 at `dest` (frame-exact, any source codec).
    Returns (first frame time, end time, frames written)."""
    import av

    with av.open(src) as inp:
        vin = inp.streams.video[0]
        rate = vin.average_rate or vin.guessed_rate or Fraction(25)
        with av.open(dest, "w", format="mp4") as out:
            vout = out.add_stream("libx264", rate=rate)
            vout.width, vout.height = vin.codec_context.width // 2 * 2, vin.codec_context.height // 2 * 2
            vout.pix_fmt = "yuv420p"
            vout.options = {"crf": "20", "preset": "veryfast"}
            n, first = 0, None
            if start_s > 0:
                inp.seek(int(start_s / vin.time_base), stream=vin, backward=True)
            for frame in inp.decode(vin):
                t = float(frame.pts * vin.time_base) if frame.pts is not None else 0.0
                if t < start_s - 1e-6:
                    continue
                if t >= end_s - 1e-6:
                    break
                first = t if first is None else first
                img = frame.reformat(width=vout.width, height=vout.height, format="yuv420p")
                img.pts = n
                img.time_base = Fraction(1) / Fraction(rate)
                for packet in vout.encode(img):
                    out.mux(packet)
                n += 1
            for packet in vout.encode():
                out.mux(packet)
    if n == 0:
        raise ExvadError(f"no frames between {start_s:.2f}s and {end_s:.2f}s in the source video")
    return first or 0.0, (first or 0.0) + n / float(rate), n


def export_segment(index: Any, segment_id: str, out_dir: str, context_s: float = CONTEXT_S) -> dict[str, Any]:
    """Write clip.mp4, thumbnail.jpg, segment.json and manifest.json to `out_dir` (local); returns
    the manifest. `index` is a SegmentIndex."""
    row = index.segment(segment_id)
    video = index.video(row["video_id"])
    os.makedirs(out_dir, exist_ok=True)
    duration = float(video.get("duration_s") or row["end_s"] + context_s)
    start = max(0.0, float(row["start_s"]) - context_s)
    end = min(duration, float(row["end_s"]) + context_s)
    try:
        with storage.local_copy(row["uri"]) as src:
            source_sha = sha256_file(src)
            source_size = os.path.getsize(src)
            first, last, frames = cut_clip(src, os.path.join(out_dir, "clip.mp4"), start, end)
    except FileNotFoundError as exc:
        raise ExvadError(f"the source video {row['uri']} is gone; cannot cut the clip") from exc
    with open(os.path.join(out_dir, "thumbnail.jpg"), "wb") as f:
        f.write(row.get("thumbnail_jpeg") or b"")
    with open(os.path.join(out_dir, "segment.json"), "w") as f:
        json.dump(json_row(row), f, indent=1, sort_keys=True)
    manifest = {
        "format": "exvad-export/1", "segment_id": segment_id, "index": index.uri,
        "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "clip": {"source_start_s": round(first, 6), "source_end_s": round(last, 6), "frames": frames,
                 "context_s": context_s, "segment_start_s": row["start_s"], "segment_end_s": row["end_s"]},
        "source": {"uri": row["uri"], "sha256": source_sha, "size_bytes": source_size},
        "files": {name: sha256_file(os.path.join(out_dir, name)) for name in FILES},
    }
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    return manifest
