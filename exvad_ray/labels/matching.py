"""Imported labels meet the index: each row finds its video (by URI, else by a unique name) and
takes the video's real frame rate, frame count and URI from the videos table. What does not meet
is reported: names matching no indexed video, and indexed videos left without a label."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from exvad_ray.index.labels import iter_videos, read_labels, rows_matching, video_key


UNLABELLED_SHOWN = 1000  # unlabelled videos the report names (the first in URI order); all are counted


@dataclass
class MatchReport:
    rows: int = 0
    matched: int = 0
    unmatched: list[str] = field(default_factory=list)  # label names with no video in the index
    ambiguous: list[str] = field(default_factory=list)  # names shared by several indexed videos
    unlabelled: list[str] = field(default_factory=list)  # indexed videos (URIs) with no label, the first UNLABELLED_SHOWN
    n_unlabelled: int = 0  # how many indexed videos have no label

    def lines(self, limit: int = 10) -> list[str]:
        out = [f"  matched {self.matched} of {self.rows} rows to indexed videos"]
        for what, names, n in (("names matching no video in the index", self.unmatched, len(self.unmatched)),
                               ("names matching several videos (give video_uri)", self.ambiguous, len(self.ambiguous)),
                               ("indexed videos with no label", self.unlabelled, self.n_unlabelled)):
            if n:
                more = f" (+{n - limit} more)" if n > limit else ""
                out.append(f"  {n} {what}: {', '.join(names[:limit])}{more}")
        return out


def match_index(rows: list[dict[str, Any]], index: str, labels_uri: str | None = None
                ) -> tuple[list[dict[str, Any]], MatchReport]:
    """Rows with video_uri/fps/n_frames from the index where they match one video. The videos
    table is read a page of files at a time and filtered in Arrow by the labels' URIs and names
    (`rows_matching`), so the driver holds the labelled videos, not the archive; the videos left
    without a label are counted in a second pass."""
    try:
        prior = read_labels(labels_uri).to_pylist() if labels_uri else []
    except Exception:  # noqa: BLE001 - no table yet: nothing labelled before
        prior = []
    known = {video_key(p) for p in prior} | {p["name"] for p in prior}
    uris = pa.array(sorted({r["video_uri"] for r in rows if r.get("video_uri")} | known), pa.string())
    names = pa.array(sorted({r["name"] for r in rows} | known), pa.string())
    videos = [v for t in iter_videos(index, ["uri", "name", "fps", "n_frames"])
              for v in rows_matching(t, uris, names).to_pylist()]
    by_uri = {v["uri"]: v for v in videos}
    by_name: dict[str, list[dict[str, Any]]] = {}
    for v in videos:
        by_name.setdefault(v["name"], []).append(v)
    report = MatchReport(rows=len(rows))
    labelled: set[str] = set()
    out = []
    for r in rows:
        hit = by_uri.get(r.get("video_uri") or "")
        if hit is None and not r.get("video_uri"):
            cands = by_name.get(r["name"], [])
            if len(cands) > 1:
                report.ambiguous.append(r["name"])
            hit = cands[0] if len(cands) == 1 else None
        if hit is None:
            if r["name"] not in report.ambiguous:
                report.unmatched.append(r.get("video_uri") or r["name"])
            out.append(r)
            continue
        report.matched += 1
        labelled.add(hit["uri"])
        out.append(r | {"video_uri": hit["uri"], "fps": hit["fps"], "n_frames": hit["n_frames"]})
    labelled |= {v["uri"] for v in videos if v["uri"] in known or v["name"] in known}
    done = pa.array(sorted(labelled), pa.string())
    for t in iter_videos(index, ["uri"]):
        left = t.filter(pc.invert(pc.fill_null(pc.is_in(t.column("uri"), value_set=done), False))).column("uri")
        report.n_unlabelled += len(left)
        report.unlabelled = heapq.nsmallest(UNLABELLED_SHOWN, [*report.unlabelled, *left.to_pylist()])
    return out, report
