"""Analyst feedback from search (page, API): one verdict on one segment, appended to the labels table
through its one writer (`exvad_ray.index.labels.record_feedback`), and to the audit log."""

from __future__ import annotations

from typing import Any

from exvad_ray.errors import ExvadError
from exvad_ray.search.audit import append_audit, audit_uri

VERDICTS = ("confirmed", "false-alarm")


def give_feedback(index: Any, labels_uri: str, segment_id: str, verdict: str, cls: str | None = None,
                  author: str | None = None, via: str = "api") -> dict[str, Any]:
    """Record `verdict` on `segment_id` of `index` (a SegmentIndex); returns the labels row written.
    A confirmed segment may carry a corrected class (a known one); a false alarm carries none."""
    if verdict not in VERDICTS:
        raise ExvadError(f"verdict must be one of {', '.join(VERDICTS)}, got {verdict!r}")
    cls = (cls or "").strip() or None
    if cls is not None:
        cls = index._canonical_classes([cls])[0]
    if verdict == "false-alarm":
        cls = None
    row = index.segment(segment_id)
    video = index.video(row["video_id"])
    segment = {k: v for k, v in row.items() if k not in ("thumbnail_jpeg",) and not k.endswith("embedding")}
    segment.update(fps=video.get("fps"), n_frames=video.get("n_frames"), name=video.get("name"))
    from exvad_ray.index.labels import record_feedback

    written = record_feedback(labels_uri, segment, verdict, cls=cls, author=author)
    append_audit(audit_uri(labels_uri), "feedback",
                 {"segment_id": segment_id, "verdict": verdict, "class": cls or row["label"]}, 1,
                 who=author, via=via, index=index.uri)
    return written
