"""Imported labels meet the index: each row finds its video (by URI, else by a unique name) and
takes the video's real frame rate, frame count and URI from the videos table. What does not meet
is reported: names matching no indexed video, and indexed videos left without a label."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from exvad_ray.index.labels import read_index_table, read_labels, video_key


@dataclass
class MatchReport:
    rows: int = 0
    matched: int = 0
    unmatched: list[str] = field(default_factory=list)  # label names with no video in the index
    ambiguous: list[str] = field(default_factory=list)  # names shared by several indexed videos
    unlabelled: list[str] = field(default_factory=list)  # indexed videos (URIs) with no label at all

    def lines(self, limit: int = 10) -> list[str]:
        out = [f"  matched {self.matched} of {self.rows} rows to indexed videos"]
        for what, names in (("names matching no video in the index", self.unmatched),
                            ("names matching several videos (give video_uri)", self.ambiguous),
                            ("indexed videos with no label", self.unlabelled)):
            if names:
                more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
                out.append(f"  {len(names)} {what}: {', '.join(names[:limit])}{more}")
        return out


def match_index(rows: list[dict[str, Any]], index: str, labels_uri: str | None = None
                ) -> tuple[list[dict[str, Any]], MatchReport]:
    """Rows with video_uri/fps/n_frames from the index where they match one video."""
    videos = read_index_table(index, "videos", ["uri", "name", "fps", "n_frames"]).to_pylist()
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
    if labels_uri:
        try:
            prior = read_labels(labels_uri).to_pylist()
        except Exception:  # noqa: BLE001 - no table yet: nothing labelled before
            prior = []
        known = {video_key(p) for p in prior} | {p["name"] for p in prior}
        labelled |= {v["uri"] for v in videos if v["uri"] in known or v["name"] in known}
    report.unlabelled = sorted(v["uri"] for v in videos if v["uri"] not in labelled)
    return out, report
