"""A normality scoring written by hand into a copy of the test index (issue 22, the evidence): the
index's own segments copied into `INDEX/scorings/<SCORING>/` with the index's scoring API (schema,
file_uri, manifest, set_current), one segment given evidence whose nearest normal moment is a real
snippet of the index's normal video, and one video's file written as an older scoring file (no
evidence columns at all), so that readers must take columns by name."""

from __future__ import annotations

import json
import math
import os
import re

import pyarrow as pa
import pyarrow.parquet as pq

SCORING = "det-evidence0001"
CAPTION = "Keyframes: street sign, traffic light, parking meter"


def _video_parts(files: list[str]):
    """(file, partition values, video id, that video's rows of one class) of the index's segments
    files: a per-video file is one such part (values in its path); a Delta file holds blocks of
    videos, with `class` a column of its file when the table is partitioned by date and camera."""
    for path in files:
        values = dict(re.findall(r"(class|date|camera)=([^/]+)", path))
        t = pq.read_table(path, partitioning=None)
        if "class" in t.column_names:
            t = t.drop_columns([c for c in ("date", "camera") if c in t.column_names])
        own = re.search(r"part-([0-9a-f-]{36})\.parquet$", os.path.basename(path))
        if own:  # per-video layout
            yield path, values, own.group(1), t
            continue
        keys = sorted({(r["video_id"], r.get("class") or values.get("class")) for r in t.to_pylist()})
        for vid, cls in keys:
            mask = [r["video_id"] == vid and (r.get("class") or values.get("class")) == cls for r in t.to_pylist()]
            part = t.filter(pa.array(mask))
            if "class" in part.column_names:
                part = part.drop_columns(["class"])
            yield path, {**values, "class": cls}, vid, part


def write_evidence_scoring(index: str, beyond_normal: bool = False) -> dict:
    """Writes the scoring and marks it current. Returns {"scoring", "flagged" (segment id), "sentence",
    "nearest_video_id", "nearest_snippet", "jpeg" (that snippet's stored thumbnail), "old_video" (the
    video whose file lacks the evidence and surprise columns), "plain" (segment ids without evidence),
    "surprise" ({segment id: its stored surprise})}. `beyond_normal`: every segment's float32 score is
    1.0 (all beyond normal footage), only their surprises order them."""
    from exvad_ray import index as idx
    from exvad_ray import storage
    from exvad_ray.index import scorings as sc
    from exvad_ray.index.store import list_files, write_table_file

    videos = idx.read_table(index, "videos").to_pylist()
    normal = next(v for v in videos if v["uri"].endswith("_normal.mp4"))
    snippets = idx.read_table(index, "snippets", ["video_id", "snippet_index", "start_s", "thumbnail_jpeg"])
    near = [s for s in snippets.to_pylist() if s["video_id"] == normal["video_id"] and s["thumbnail_jpeg"]]
    near = sorted(near, key=lambda s: s["snippet_index"])[min(2, len(near) - 1)]
    segs = sorted(idx.read_table(index, "segments", ["segment_id", "video_id", "score"]).to_pylist(),
                  key=lambda r: (-r["score"], r["segment_id"]))
    flagged = next(s for s in segs if s["video_id"] != normal["video_id"])
    old_video = next(s["video_id"] for s in segs if s["video_id"] not in (flagged["video_id"],))
    at = int(near["start_s"])
    sentence = (f"nothing like this in the normal footage of {normal['camera']} (motion more unusual than 99.7 % "
                f"of it); closest: {normal['name']} at {at // 60}:{at % 60:02d}, similarity 0.61")
    evidence = {"normality": 0.9973, "unusual_half": "motion", "nearest_video_id": normal["video_id"],
                "nearest_uri": normal["uri"], "nearest_snippet": near["snippet_index"],
                "nearest_start_s": near["start_s"], "nearest_camera": normal["camera"], "nearest_similarity": 0.61,
                "normality_bank": normal["camera"], "evidence": sentence}
    schema = sc.schema("segments")
    evidence_names = {f.name for f in sc.EVIDENCE} | {sc.SURPRISE.name}
    plain, surprises = [], {}
    rank = {sid: k for k, sid in enumerate(sorted(s["segment_id"] for s in segs))}
    for path, values, video_id, t in _video_parts(list_files(index, "segments")):
        n = t.num_rows
        ids = t.column("segment_id").to_pylist()
        plain += [i for i in ids if i != flagged["segment_id"]]
        extra = {"scoring_id": [SCORING] * n, "detector_id": [SCORING] * n, "detector_uri": ["file:///models/v9"] * n,
                 "model_card": ["{}"] * n}
        for k, v in evidence.items():
            extra[k] = [v if i == flagged["segment_id"] else None for i in ids]
        if beyond_normal:  # score 1.0 everywhere; distinct surprises against the segment ids' order
            extra["surprise"] = [20.0 + rank[i] for i in ids]  # the segment ids' order reversed
            t = t.set_column(t.column_names.index("score"), "score", pa.array([1.0] * n, t.schema.field("score").type))
        else:  # as a calibrated scoring writes it: -log(1 - score), the score's own order
            extra["surprise"] = [-math.log1p(-min(float(x), 1.0 - 1e-7)) for x in t.column("score").to_pylist()]
        if video_id != old_video:
            surprises.update(zip(ids, extra["surprise"]))
        fields = [f for f in schema if not (video_id == old_video and f.name in evidence_names)]
        if flagged["segment_id"] in ids:  # led by the sentence, as a normality scoring without a language model writes it
            expl = [f"{sentence}. {CAPTION}" if i == flagged["segment_id"] else e
                    for i, e in zip(ids, t.column("explanation").to_pylist())]
            t = t.set_column(t.column_names.index("explanation"), "explanation", pa.array(expl, pa.string()))
        cols = [t.column(f.name).cast(f.type) if f.name in t.column_names else pa.array(extra[f.name], f.type)
                for f in fields]
        write_table_file(sc.file_uri(index, SCORING, "segments", values, video_id),
                         pa.Table.from_arrays(cols, schema=pa.schema(fields)))
    manifest = {"scoring_id": SCORING, "detector_id": SCORING, "detector_uri": "file:///models/v9", "model_card": {},
                "normality_uri": "file:///models/normality-v1", "class_names": [], "finished_at": "2026-12-07T00:00:00+00:00"}
    storage.write_bytes(storage.join(sc.scoring_root(index, SCORING), "scoring.json"), json.dumps(manifest).encode())
    sc.set_current(index, SCORING)
    return {"scoring": SCORING, "flagged": flagged["segment_id"], "sentence": sentence,
            "nearest_video_id": normal["video_id"], "nearest_snippet": near["snippet_index"],
            "nearest_name": normal["name"], "jpeg": near["thumbnail_jpeg"], "old_video": old_video, "plain": plain,
            "surprise": surprises}
