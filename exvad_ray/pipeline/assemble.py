"""Per-video assembly: windows of a video come together here, segments are localised and the
video's rows are written to every index table (videos last).

Runs as a single stateful actor at the end of the stream (Ray Data `map_batches` with a pool of
size 1), so that all windows of a video meet without a shuffle barrier: results stream to storage
video by video. It buffers only small per-window results (features, scores, JPEG thumbnails) of
videos still in flight. Emits one summary row per finished (or failed) video for the driver.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections import defaultdict
from typing import Any

import numpy as np

from exvad_ray.detector.localize import LocalizationConfig, localize
from exvad_ray.detector.video_level import video_prediction
from exvad_ray import index as idx
from exvad_ray.index.batches import pack
from exvad_ray.pipeline.decode import thumb_at, utcnow, write_error
from exvad_ray.index.partitions import sanitize
from exvad_ray.pipeline.progress import notify

SUMMARY_KEYS = ("video_id", "uri", "status", "stage", "reason", "hours", "n_snippets", "segment_classes")
PAYLOAD = "payload"  # a finished video's rows (`index.batches.pack`: Arrow IPC), for the batch writer


def _fmt_time(s: float) -> str:
    m, sec = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return (v / n).astype(np.float32) if n > 0 else v.astype(np.float32)


def _arr(x: Any, dtype: Any = None) -> np.ndarray:
    """Rows from Ray arrive as arrays, lists or object arrays of arrays; normalise."""
    if isinstance(x, np.ndarray) and x.dtype == object and x.ndim == 1 and len(x) and isinstance(x[0], np.ndarray):
        x = np.stack(list(x))
    return np.asarray(x, dtype=dtype)


def _window_text(window: dict[str, Any]) -> np.ndarray:
    """The window's explanation embedding (empty when it has none)."""
    t = window.get("explanation_embedding")
    return _arr(t, np.float32).reshape(-1) if t is not None and np.size(t) else np.zeros(0, np.float32)


def _strs(x: Any) -> list[str]:
    if x is None:
        return []
    return [str(v) for v in (x.tolist() if isinstance(x, np.ndarray) else x)]


def segment_columns(vid: str, uri: str, class_names: list[str], localization: LocalizationConfig,
                    scores: np.ndarray, probs: np.ndarray, feats: np.ndarray, start_s: np.ndarray, end_s: np.ndarray,
                    extra: Any) -> dict[str, dict[str, list[Any]]]:
    """Segments table columns per class for one video's snippet scores (also used by rescoring);
    `extra(first, last, peak)` gives the columns that come from elsewhere (the peak window's
    explanation, the peak thumbnail, ...)."""
    seg_by_class: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for first, last in localize(scores, localization):
        sl = slice(first, last + 1)
        mean_probs = probs[sl].mean(axis=0)
        c = 1 + int(np.argmax(mean_probs[1:])) if len(class_names) > 1 else 0
        label = class_names[c]
        peak = first + int(np.argmax(scores[sl]))
        cols = seg_by_class[label]
        for key, value in (
            ("segment_id", f"{vid}:{first}"), ("video_id", vid), ("uri", uri), ("label", label),
            ("score", float(scores[sl].max())), ("class_score", float(mean_probs[c])),
            ("start_s", float(start_s[first])), ("end_s", float(end_s[last])),
            ("first_snippet", first), ("last_snippet", last), ("peak_s", float(start_s[peak])),
            ("visual_embedding", _unit(feats[sl].mean(axis=0)).tolist()),
            *extra(first, last, peak).items(),
        ):
            cols[key].append(value)
    return seg_by_class


@dataclasses.dataclass
class VideoContext:
    """What the assembler needs besides the windows."""

    index: str
    run_id: str
    class_names: list[str]
    detector_name: str
    label_set: str
    localization: LocalizationConfig = LocalizationConfig()
    # Delta index: the video's rows leave as a payload for the batch writer (`pipeline.commits`)
    # instead of being written here one file per table
    batch_writes: bool = False


def build_video_tables(ctx: VideoContext, windows: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """All index rows of one video from its windows (sorted by window). Returns (tables, summary)."""
    w0 = windows[0]
    vid, uri = str(w0["video_id"]), str(w0["uri"])
    scores = np.concatenate([_arr(w["anomaly_scores"], np.float32) for w in windows])
    probs = np.concatenate([_arr(w["class_probs"], np.float32).reshape(len(_arr(w["anomaly_scores"])), -1)
                            for w in windows])
    feats = np.concatenate([_arr(w["visual_embedding"], np.float32) for w in windows])
    start_s = np.concatenate([_arr(w["start_s"], np.float64) for w in windows])
    end_s = np.concatenate([_arr(w["end_s"], np.float64) for w in windows])
    frame_index = np.concatenate([_arr(w["frame_index"], np.int64) for w in windows])
    window_of = np.concatenate([np.full(int(w["n_snippets"]), int(w["window_index"]), np.int32) for w in windows])
    thumbs = [(w["thumbs_blob"], _arr(w["thumbs_offsets"], np.int64), k) for w in windows
              for k in range(int(w["n_snippets"]))]
    n = len(scores)
    date, camera = str(w0["date"]), str(w0["camera"])
    part = {"date": date, "camera": camera}
    expl = [str(w.get("explanation") or "") for w in windows]
    if len(windows) == 1 or not any(expl):  # no explainer: no time-span headers around nothing
        video_expl = expl[0]
    else:
        video_expl = "\n".join(f"[{_fmt_time(float(_arr(w['start_s'])[0]))}-{_fmt_time(float(_arr(w['end_s'])[-1]))}] {e}"
                               for w, e in zip(windows, expl))
    window_text = [_window_text(w) for w in windows]  # what ScoreStage saw per window (kept for rescoring)
    text_feats = [t for t in window_text if t.size]
    video_text = _unit(np.mean(text_feats, axis=0)) if text_feats else np.zeros(0, np.float32)
    rec = dt.datetime.fromisoformat(str(w0["recorded_at"])) if str(w0.get("recorded_at") or "") else None
    pred = video_prediction(scores, probs, ctx.class_names, threshold=ctx.localization.threshold)
    now = utcnow()

    snippets = {
        "video_id": [vid] * n, "uri": [uri] * n, "window_index": window_of.tolist(),
        "snippet_index": list(range(n)), "start_s": start_s.tolist(), "end_s": end_s.tolist(),
        "frame_index": frame_index.tolist(), "anomaly_score": scores.tolist(),
        "class_probs": [p.tolist() for p in probs], "visual_embedding": [f.tolist() for f in feats],
        "thumbnail_jpeg": [thumb_at(*t) for t in thumbs],
    }
    ends = np.cumsum([int(w["n_snippets"]) for w in windows])
    window_at = lambda i: windows[int(np.searchsorted(ends, i, side="right"))]  # noqa: E731
    seg_by_class = segment_columns(
        vid, uri, ctx.class_names, ctx.localization, scores, probs, feats, start_s, end_s,
        extra=lambda first, last, peak: {"explanation": str(window_at(peak).get("explanation") or ""),
                                         "thumbnail_jpeg": thumb_at(*thumbs[peak]),
                                         "explanation_embedding": _window_text(window_at(peak)).tolist(),
                                         "start_at": rec + dt.timedelta(seconds=float(start_s[first])) if rec else None,
                                         "end_at": rec + dt.timedelta(seconds=float(end_s[last])) if rec else None})
    segments = [({"class": sanitize(label), **part}, dict(cols)) for label, cols in seg_by_class.items()]

    # every column present even when no window has a keyframe (an empty captions file, not a failure)
    captions: dict[str, list[Any]] = {name: [] for name in idx.CAPTIONS.schema.names}
    for w in windows:
        kf_s = _arr(w.get("keyframe_s", []), np.float64)
        raw, clean = _strs(w.get("captions")), _strs(w.get("clean_captions"))
        for k, t in enumerate(kf_s):
            captions["video_id"].append(vid)
            captions["window_index"].append(int(w["window_index"]))
            captions["time_s"].append(float(t))
            captions["caption"].append(raw[k] if k < len(raw) else None)
            captions["clean_caption"].append(clean[k] if k < len(clean) else None)
            captions["caption_model"].append(str(w.get("caption_model") or ""))
            captions["window_explanation"].append(str(w.get("explanation") or ""))
            captions["explanation_model"].append(str(w.get("explanation_model") or ""))

    fps, n_frames = float(w0["fps"]), int(w0["n_frames"])
    duration = float(w0["duration_s"]) if "duration_s" in w0 else n_frames / fps  # presentation time
    videos = {
        "video_id": [vid], "uri": [uri], "name": [os.path.splitext(uri.rsplit("/", 1)[-1])[0]],
        "size_bytes": [int(w0["size"])], "etag": [str(w0.get("etag") or "") or None], "status": ["ok"],
        "duration_s": [duration], "timing": [str(w0.get("timing") or "estimated")], "fps": [fps],
        "n_frames": [n_frames], "width": [int(w0["width"])],
        "height": [int(w0["height"])], "codec": [str(w0["codec"])], "n_snippets": [n],
        "n_windows": [len(windows)], "video_score": [pred.video_score], "video_class": [pred.video_class],
        "class_names": [list(ctx.class_names)], "class_scores": [pred.class_scores.tolist()],
        "n_segments": [sum(len(c["segment_id"]) for _, c in segments)], "explanation": [video_expl],
        "explanation_embedding": [video_text.tolist()],
        "window_explanation_embeddings": [[t.tolist() for t in window_text]],
        "visual_model": [str(w0.get("visual_model") or "")],
        "caption_model": [str(w0.get("caption_model") or "")],
        "explanation_model": [str(w0.get("explanation_model") or "")], "detector": [ctx.detector_name],
        "label_set": [ctx.label_set], "recorded_at": [rec],
        "recorded_at_source": [str(w0.get("recorded_at_source") or "") or None],
        "run_id": [ctx.run_id], "processed_at": [now],
    }
    tables: dict[str, Any] = {"snippets": (part, snippets), "captions": (part, dict(captions)), "videos": (part, videos)}
    if segments:
        tables["segments"] = segments
    summary = {"video_id": vid, "uri": uri, "status": "ok", "stage": "", "reason": "",
               "hours": duration / 3600, "n_snippets": n,
               "segment_classes": ",".join(sorted(lbl for lbl, c in seg_by_class.items() for _ in c["segment_id"]))}
    return tables, summary


class VideoAssembler:
    """Stateful end-of-stream stage (pool of one actor): buffers windows until a video is complete."""

    def __init__(self, ctx: VideoContext, progress: Any = None):
        self.ctx = ctx
        self.progress = progress
        self.pending: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        keys = SUMMARY_KEYS + ((PAYLOAD,) if self.ctx.batch_writes else ())
        out: dict[str, list[Any]] = {k: [] for k in keys}
        n = len(batch["video_id"])
        for i in range(n):
            row = {k: v[i] for k, v in batch.items()}
            vid = str(row["video_id"])
            self.pending[vid][int(row["window_index"])] = row
            if len(self.pending[vid]) < int(row["n_windows"]):
                continue
            windows = [w for _, w in sorted(self.pending.pop(vid).items())]
            summary = self._finish(windows)
            for k in keys:
                out[k].append(summary.get(k, b""))
        return out

    def _finish(self, windows: list[dict[str, Any]]) -> dict[str, Any]:
        w0 = windows[0]
        item = {"video_id": str(w0["video_id"]), "uri": str(w0["uri"]), "size": int(w0["size"]),
                "processing_date": str(w0["processing_date"])}
        failed = next((w for w in windows if has_error(w.get("error"))), None)
        try:
            if failed is not None:
                raise StageError(str(failed["error"]))
            tables, summary = build_video_tables(self.ctx, windows)
            if self.ctx.batch_writes:
                summary[PAYLOAD] = pack(tables)
            else:
                idx.write_video_tables(self.ctx.index, item["video_id"], tables)
            notify(self.progress, "video_done", summary["hours"], summary["n_snippets"],
                   [c for c in summary["segment_classes"].split(",") if c])
            return summary
        except Exception as exc:  # noqa: BLE001 - a bad video never fails the job
            stage = exc.stage if isinstance(exc, StageError) else "assemble"
            reason = write_error(self.ctx.index, self.ctx.run_id, item, stage, exc)
            notify(self.progress, "video_failed", stage, reason)
            return {"video_id": item["video_id"], "uri": item["uri"], "status": "error", "stage": stage,
                    "reason": reason, "hours": 0.0, "n_snippets": 0, "segment_classes": ""}


def has_error(value: Any) -> bool:
    """Ray turns a None in an object column into None or NaN; both mean no error."""
    if value is None or (isinstance(value, float) and value != value):
        return False
    return str(value).strip() not in ("", "None", "nan")


class StageError(Exception):
    """A model stage recorded an error on a window (`error` column: 'stage: Type: message')."""

    def __init__(self, text: str):
        stage, _, rest = text.partition(":")
        self.stage = stage.strip() or "model"
        self.reason = "stage_failed"
        super().__init__(rest.strip() or text)
