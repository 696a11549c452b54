"""Labels from a plain CSV, one row per video:

    name,classes,split,segments              (or video_uri instead of / beside name)
    Fire_001,Fire,test,120-245;300-400       segments in source frames, [start, end)
    cam2/clip.mp4,Fighting;Riot,train,       several classes: `;`-separated; no segments
    Normal_007,Normal,val,

Segments may carry their class (`Fire:120-245`); without one they take the video's first class.
Column `segments_s` (instead of `segments`) gives them in seconds, converted with the video's real
frame rate (from the index; `fps` column or --fps otherwise). Blank lines and `#` lines are skipped;
a malformed row fails with its line number.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from exvad_ray.errors import ExvadError
from exvad_ray.index.labels import SPLITS, seconds_to_frames, video_name

NAME_COLUMNS = ("name", "video_uri", "video", "path")


def _segments(text: str, default_label: str, n: int, in_seconds: bool) -> list[dict[str, Any]]:
    out = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        label, _, span = part.rpartition(":")
        a, sep, b = span.partition("-")
        try:
            start, end = float(a), float(b)
        except ValueError:
            raise ExvadError(f"CSV line {n}: segment {part!r} is not START-END") from None
        if not sep or end <= start or start < 0:
            raise ExvadError(f"CSV line {n}: segment {part!r} must be START-END with 0 <= START < END")
        if not in_seconds and (start != int(start) or end != int(end)):
            raise ExvadError(f"CSV line {n}: frame numbers must be integers in {part!r} (seconds go in `segments_s`)")
        out.append({"start": start, "end": end, "label": label.strip() or default_label, "seconds": in_seconds})
    return out


def parse_labels_csv(text: str, default_split: str = "train") -> list[dict[str, Any]]:
    """Rows for `make_table`; segments in seconds keep `start`/`end` in seconds until
    `frames_from_seconds` knows each video's frame rate."""
    lines = [(n, ln) for n, ln in enumerate(text.splitlines(), 1) if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise ExvadError("the CSV is empty")
    header_n, header = lines[0]
    cols = [c.strip().lower() for c in next(csv.reader([header]))]
    key = next((c for c in NAME_COLUMNS if c in cols), None)
    if key is None or "classes" not in cols and "labels" not in cols:
        raise ExvadError(f"CSV line {header_n}: the header needs a video column ({'/'.join(NAME_COLUMNS)}) and "
                         f"`classes`; got {cols}")
    cls_col = "classes" if "classes" in cols else "labels"
    rows = []
    for n, line in lines[1:]:
        values = next(csv.reader(io.StringIO(line)))
        if len(values) > len(cols):
            raise ExvadError(f"CSV line {n} has {len(values)} fields, the header {len(cols)}: {line!r}")
        rec = dict(zip(cols, (v.strip() for v in values)))
        video = rec.get(key) or ""
        if not video:
            raise ExvadError(f"CSV line {n}: no video in column {key!r}")
        classes = [c.strip() for c in (rec.get(cls_col) or "").split(";") if c.strip()] or ["Normal"]
        split = rec.get("split") or default_split
        if split not in SPLITS:
            raise ExvadError(f"CSV line {n}: split {split!r} is not one of {', '.join(SPLITS)}")
        uri = video if ("/" in video or "://" in video or key == "video_uri") else (rec.get("video_uri") or None)
        fps = rec.get("fps")
        try:
            fps = float(fps) if fps else None
        except ValueError:
            raise ExvadError(f"CSV line {n}: fps {fps!r} is not a number") from None
        segs = _segments(rec.get("segments", ""), classes[0], n, False) + \
            _segments(rec.get("segments_s", ""), classes[0], n, True)
        rows.append({"name": video_name(video), "video_uri": uri if uri and "/" in uri else None,
                     "labels": classes, "split": split, "segments": segs, "fps": fps, "line": n})
    return rows


def frames_from_seconds(rows: list[dict[str, Any]], default_fps: float | None = None) -> list[dict[str, Any]]:
    """Segments to source frames ([floor(start*fps), ceil(end*fps))) with each row's frame rate."""
    out = []
    for r in rows:
        segs = []
        for s in r["segments"]:
            if s["seconds"]:
                fps = r.get("fps") or default_fps
                if not fps:
                    raise ExvadError(f"CSV line {r['line']}: segments in seconds need the video's frame rate "
                                     "(give --index, an `fps` column or --fps)")
                start, end = seconds_to_frames(s["start"], s["end"], fps)
            else:
                start, end = int(s["start"]), int(s["end"])
            segs.append({"start_frame": start, "end_frame": max(end, start + 1), "label": s["label"]})
        out.append({k: v for k, v in r.items() if k != "line"} | {"segments": segs})
    return out
