"""`exvad rescore`: put a new detector to work on an indexed archive without touching the videos.

Everything the detector reads per window is already in the index: the snippets' visual embeddings
(`snippets`) and the window's explanation embedding (`videos.window_explanation_embeddings`). A
Ray Data job reads those, scores each window exactly as the archive job's ScoreStage does, localises
segments with the same code (assemble.segment_columns) and writes a new scoring beside the index's
tables (layout: index/scorings.py). No video is opened, no caption or LLM stage runs.

Work items are snippets files: a video's snippets live in exactly one file (its part file or the
compacted file of its partition), so an item has whole videos.

Sized to the work, because a video scores in tens of milliseconds while the job's fixed costs are
seconds (bench/RESULTS.md "Rescore vs reprocess"): the driver reads the class names from the model
card instead of loading the weights (and so never imports torch when there is a card); the job is
Ray Data tasks, not actors, so that pooled workers keep torch and the detector between jobs; one
task at a time scores up to VIDEOS_PER_ACTOR videos; items travel in a few large blocks rather than
one per file; an existing Ray session is reused, and a local one starts without the dashboard.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import time
from collections import Counter, defaultdict
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from exvad_ray import storage
from exvad_ray.errors import ExvadError
from exvad_ray.detector.localize import LocalizationConfig
from exvad_ray.pipeline.assemble import segment_columns
from exvad_ray.checkpoints import checkpoint_uri, detector_id
from exvad_ray.index import sanitize
from exvad_ray.index import scorings as sc

log = logging.getLogger(__name__)

FEATURE_COLUMNS = ("visual_embedding", "clip_embedding")  # schema v2 name first, then v1
# Scoring a video from stored features takes tens of milliseconds; a worker's first scoring task
# (torch, the detector) takes seconds. So small indexes get one task at a time, large ones one more
# in parallel per this many videos.
VIDEOS_PER_ACTOR = 500
# Files per Ray Data block (one task each): large enough that per-call overhead vanishes
# beside the scoring, small enough that progress and retries stay fine-grained.
FILES_PER_BLOCK = 32


@dataclasses.dataclass
class RescoreConfig:
    index: str
    detector: str
    localization: LocalizationConfig = dataclasses.field(default_factory=LocalizationConfig)
    set_current: bool = True
    actors: int | None = None  # parallel scoring tasks; None: one per VIDEOS_PER_ACTOR videos, at most one per CPU
    address: str | None = None


@dataclasses.dataclass
class Scoring:
    """What every row of one scoring carries (shipped to the scoring tasks)."""

    scoring_id: str
    detector_uri: str
    model_card: str
    class_names: list[str]
    localization: LocalizationConfig


# --------------------------------------------------------------------------------- per video


def score_video(scorer: Any, info: dict[str, Any], rows: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """Window by window, as ScoreStage: the window's snippet features and explanation embedding."""
    feat_col = next(c for c in FEATURE_COLUMNS if c in rows.column_names)
    feats = _matrix(rows.column(feat_col))
    windows = np.asarray(rows.column("window_index").to_numpy(zero_copy_only=False))
    texts = info["window_text"]
    scores, probs = [], []
    for w in np.unique(windows):
        sel = windows == w
        text = texts[int(w)] if int(w) < len(texts) else None
        text = None if text is None or len(text) == 0 else np.asarray(text, np.float32)
        s, p = scorer.score(feats[sel], text)
        scores.append(np.asarray(s, np.float32))
        probs.append(np.asarray(p, np.float32).reshape(int(sel.sum()), -1))
    return np.concatenate(scores), np.concatenate(probs)


def _matrix(column: pa.ChunkedArray) -> np.ndarray:
    arr = column.combine_chunks()
    flat = arr.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return flat.reshape(len(arr), -1) if len(arr) else np.zeros((0, 0), np.float32)


def video_tables(scoring: Scoring, scorer: Any, info: dict[str, Any], rows: pa.Table) -> dict[str, Any]:
    """The scoring's rows of one video: {table: [(partition values, pa.Table)]}."""
    from exvad_ray.detector.video_level import video_prediction

    rows = rows.sort_by("snippet_index")
    vid, uri, part = info["video_id"], info["uri"], {"date": info["date"], "camera": info["camera"]}
    scores, probs = score_video(scorer, info, rows)
    feat_col = next(c for c in FEATURE_COLUMNS if c in rows.column_names)
    feats = _matrix(rows.column(feat_col))
    start_s = rows.column("start_s").to_numpy()
    end_s = rows.column("end_s").to_numpy()
    window_of = rows.column("window_index").to_numpy()
    thumbs = rows.column("thumbnail_jpeg").to_pylist() if "thumbnail_jpeg" in rows.column_names else None
    expl = info["window_explanations"]
    rec = dt.datetime.fromisoformat(info["recorded_at"]) if info.get("recorded_at") else None
    loc = scoring.localization
    seg_by_class = segment_columns(
        vid, uri, scoring.class_names, loc, scores, probs, feats, start_s, end_s,
        extra=lambda first, last, peak: {
            "explanation": expl.get(str(int(window_of[peak])), ""), "thumbnail_jpeg": thumbs[peak] if thumbs else None,
            # for a segments schema that also places segments in wall-clock time
            "start_at": rec + dt.timedelta(seconds=float(start_s[first])) if rec else None,
            "end_at": rec + dt.timedelta(seconds=float(end_s[last])) if rec else None,
            # for a segments schema that also keeps the peak window's explanation embedding
            "explanation_embedding": list(info["window_text"][int(window_of[peak])] or [])
            if int(window_of[peak]) < len(info["window_text"]) else []})
    ids = {"scoring_id": scoring.scoring_id, "detector_id": scoring.scoring_id}
    out: dict[str, Any] = {"segments": []}
    for label, cols in seg_by_class.items():
        n = len(cols["segment_id"])
        cols = dict(cols) | {k: [v] * n for k, v in ids.items()} | {
            "detector_uri": [scoring.detector_uri] * n, "model_card": [scoring.model_card] * n}
        out["segments"].append(({"class": sanitize(label), **part}, _table("segments", cols)))
    n = len(scores)
    out["snippet_scores"] = [(part, _table("snippet_scores", {
        "video_id": [vid] * n, "snippet_index": rows.column("snippet_index").to_pylist(),
        "anomaly_score": scores.tolist(), "class_probs": [p.tolist() for p in probs],
        **{k: [v] * n for k, v in ids.items()}}))]
    pred = video_prediction(scores, probs, scoring.class_names, threshold=loc.threshold)
    out["videos"] = [(part, _table("videos", {
        "video_id": [vid], "uri": [uri], "name": [info["name"]], "video_score": [pred.video_score],
        "video_class": [pred.video_class], "class_names": [scoring.class_names],
        "class_scores": [pred.class_scores.tolist()], "n_segments": [sum(len(c["segment_id"]) for c in seg_by_class.values())],
        "n_snippets": [n], **{k: [v] for k, v in ids.items()}, "scored_at": [_now()]}))]
    return out


def _table(table: str, cols: dict[str, list[Any]]) -> pa.Table:
    """The scoring table's columns; keys it does not have are ignored, nullable columns the
    rescore cannot fill (none today) are null."""
    schema = sc.schema(table)
    n = len(cols["video_id"])
    return pa.Table.from_arrays([pa.array(cols[f.name], type=f.type) if f.name in cols or not f.nullable
                                 else pa.nulls(n, f.type) for f in schema], schema=schema)


def _now() -> Any:
    return dt.datetime.now(dt.timezone.utc)


# The last detector this worker process loaded, by scoring id (the checkpoint's content hash). Ray
# Data tasks run in pooled worker processes that outlive a job, so the next rescore on the same
# Ray session finds torch imported and, for the same detector, the weights loaded (an actor pool
# starts processes that import torch and load the weights for every job: seconds, against tens of
# milliseconds per video). One entry: a worker never holds more than one detector.
_SCORER: dict[str, Any] = {}


class RescoreStage:
    """One block of snippets files (one row per file) in, one summary row per video out."""

    def __init__(self, index: str, scoring: Scoring, torch_threads: int = 1):
        self.index, self.scoring, self.torch_threads = index, scoring, torch_threads
        self.scorer: Any = None

    def _load(self) -> None:
        import torch

        torch.set_num_threads(self.torch_threads)  # scoring is many small matmuls: one thread per CPU asked
        sid = self.scoring.scoring_id
        if sid not in _SCORER:
            from exvad_ray.checkpoints import load_detector

            _SCORER.clear()
            _SCORER[sid] = load_detector(self.scoring.detector_uri, device="cpu")
        self.scorer = _SCORER[sid]
        names = list(self.scorer.class_names)
        if names != self.scoring.class_names:  # the driver took them from the model card, not the weights
            raise ExvadError(f"the model card beside {self.scoring.detector_uri} names the classes "
                             f"{self.scoring.class_names}, the checkpoint {names}")

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        from exvad_ray.index import write_table_file

        t0 = time.perf_counter()
        load_error = None
        if self.scorer is None:
            try:
                self._load()
            except ExvadError as exc:  # every video of the batch fails with the reason
                load_error = exc
        t1 = time.perf_counter()
        out: dict[str, list[Any]] = {"video_id": [], "status": [], "reason": [], "n_snippets": [], "segments": []}
        for f, infos_json in zip(batch["file"], batch["videos"]):
            infos = {i["video_id"]: i for i in json.loads(str(infos_json))}
            table = _read_snippets(str(f)) if load_error is None else None
            ids = table.column("video_id").to_numpy(zero_copy_only=False) if table is not None else None
            for vid, info in infos.items():
                try:
                    if load_error is not None:
                        raise load_error
                    rows = table.filter(pa.array(ids == vid))
                    if rows.num_rows == 0:
                        raise ExvadError(f"no snippets for video {vid} in {f}")
                    tables = video_tables(self.scoring, self.scorer, info, rows)
                    for name in ("segments", "snippet_scores", "videos"):  # videos last: marks it done
                        for values, t in tables[name]:
                            write_table_file(sc.file_uri(self.index, self.scoring.scoring_id, name, values, vid), t)
                    segs = [lab for _, t in tables["segments"] for lab in t.column("label").to_pylist()]
                    out_row = (vid, "ok", "", rows.num_rows, ",".join(sorted(segs)))
                except Exception as exc:  # noqa: BLE001 - one bad video never fails the job
                    out_row = (vid, "error", f"{type(exc).__name__}: {exc}", 0, "")
                for k, v in zip(out, out_row):
                    out[k].append(v)
        # where the task's time went (the driver logs it: the fixed cost vs the per-video cost)
        n = len(out["video_id"])
        out["load_s"] = [t1 - t0 if i == 0 else 0.0 for i in range(n)]
        out["work_s"] = [time.perf_counter() - t1 if i == 0 else 0.0 for i in range(n)]
        return out


def score_block(batch: dict[str, Any], index: str, scoring: Scoring) -> dict[str, list[Any]]:
    """The Ray Data task: a block of snippets files scored by this worker's RescoreStage."""
    return RescoreStage(index, scoring)(batch)


def _read_snippets(uri: str) -> pa.Table:
    with storage.open_file(uri) as fh:
        pf = pq.ParquetFile(fh)
        names = set(pf.schema_arrow.names)
        cols = ["video_id", "window_index", "snippet_index", "start_s", "end_s",
                next(c for c in FEATURE_COLUMNS if c in names)] + (["thumbnail_jpeg"] if "thumbnail_jpeg" in names else [])
        return pf.read(columns=cols)


# --------------------------------------------------------------------------------- driver


def plan_work(index: str, scoring_id: str) -> tuple[list[dict[str, Any]], int, list[str]]:
    """Items (snippets file -> its videos still to score), videos already scored, warnings."""
    from exvad_ray import index as idx
    from exvad_ray.index import store

    videos = idx.read_table(index, "videos")
    if videos.num_rows == 0:
        raise ExvadError(f"{index} has no processed videos (run `exvad process` first)")
    done = idx.done_video_ids(sc.scoring_root(index, scoring_id), ("videos",))
    expl: dict[str, dict[str, str]] = defaultdict(dict)
    cap = idx.read_table(index, "captions", ["video_id", "window_index", "window_explanation"])
    for v, w, e in zip(*(cap.column(c).to_pylist() for c in cap.column_names)):
        expl[v][str(int(w))] = e or ""  # str keys: the item travels as JSON
    coarse = 0
    infos: dict[str, dict[str, Any]] = {}
    for r in videos.to_pylist():
        if r["video_id"] in done:
            continue
        window_text = r.get("window_explanation_embeddings")
        if window_text is None:  # an index written before per-window embeddings were kept
            window_text = [r["explanation_embedding"] or []] * int(r["n_windows"] or 1)
            coarse += int(r["n_windows"] or 1) > 1 and bool(r["explanation_embedding"])
        infos[r["video_id"]] = {"video_id": r["video_id"], "uri": r["uri"], "name": r["name"], "date": r["date"],
                                "camera": r["camera"], "window_text": window_text,
                                "recorded_at": r["recorded_at"].isoformat() if r.get("recorded_at") else None,
                                "window_explanations": expl.get(r["video_id"], {})}
    by_file: dict[str, list[dict[str, Any]]] = defaultdict(list)
    placed: set[str] = set()
    files = idx.list_files(index, "snippets")
    # a video rewritten since the last compaction is in its part file and (stale) in the compacted one
    for f in sorted(files, key=lambda f: not store.PART_RE.search(f)):
        m = store.PART_RE.search(f)
        vids = [m.group(1)] if m else store.compacted_ids(f)
        for v in vids:
            if v in infos and v not in placed:
                by_file[f].append(infos[v])
                placed.add(v)
    items = [{"file": f, "videos": json.dumps(v)} for f, v in sorted(by_file.items())]
    warnings = []
    if coarse:
        warnings.append(f"{coarse} multi-window videos predate per-window explanation embeddings: "
                        "scored with their video-level one")
    missing = set(infos) - placed
    if missing:
        warnings.append(f"{len(missing)} videos have no snippets file")
    return items, len(done), warnings


def detector_metadata(det_uri: str) -> tuple[str, list[str]]:
    """(model card as JSON text, class names). From `model_card.json` beside the checkpoint when it
    names the classes, so the driver neither imports torch nor loads the weights (the tasks check
    the names against the weights); otherwise from the checkpoint itself."""
    from exvad_ray.checkpoints import load_detector, model_card_uri

    card_uri = model_card_uri(det_uri)
    card = storage.read_bytes(card_uri).decode() if storage.exists(card_uri) else None
    if card is not None:
        try:
            doc = json.loads(card)
        except ValueError as exc:
            raise ExvadError(f"{card_uri} is not JSON ({exc})") from exc
        names = ((doc.get("label_set") or {}) if isinstance(doc, dict) else {}).get("class_names")
        if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
            return card, list(names)
    detector = load_detector(det_uri, device="cpu")
    return card or json.dumps(detector.meta, default=str), list(detector.class_names)


def _ensure_ray(address: str | None) -> None:
    """Reuse the caller's Ray session (a bench, a notebook, a Ray job); else connect or start one as
    `exvad process` does, but a local one without the dashboard (seconds of start for nobody)."""
    import ray

    if ray.is_initialized():
        return
    from exvad_ray.pipeline.job import _init_ray

    _init_ray(SimpleNamespace(address=address), dashboard=(address or "local") != "local")


def run_rescore(cfg: RescoreConfig, echo: Any = print) -> dict[str, Any]:
    """Score every indexed video with `cfg.detector`; returns the summary (also in scoring.json)."""
    t0 = time.time()
    phases: dict[str, float] = {}
    tick = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal tick
        now = time.perf_counter()
        phases[name] = round(now - tick, 3)
        tick = now

    index = storage.normalize(cfg.index)
    sid = detector_id(cfg.detector)
    det_uri = storage.normalize(checkpoint_uri(cfg.detector))
    card, class_names = detector_metadata(det_uri)
    scoring = Scoring(sid, det_uri, card, class_names, cfg.localization)
    lap("detector metadata")
    items, skipped, warnings = plan_work(index, sid)
    n_todo = sum(len(json.loads(it["videos"])) for it in items)
    lap("plan")
    echo(f"[exvad] rescore {index} with {det_uri} (scoring {sid}): {n_todo + skipped} videos, "
         f"{skipped} already scored, {n_todo} to score")
    doc = {"scoring_id": sid, "detector_id": sid, "detector_uri": det_uri, "model_card": json.loads(card or "{}"),
           "class_names": scoring.class_names, "localization": dataclasses.asdict(cfg.localization),
           "created_at": _now().isoformat(timespec="seconds"), "finished_at": None}
    manifest_uri = storage.join(sc.scoring_root(index, sid), "scoring.json")
    if storage.exists(manifest_uri):
        doc["created_at"] = json.loads(storage.read_bytes(manifest_uri)).get("created_at", doc["created_at"])
    storage.write_bytes(manifest_uri, json.dumps(doc, indent=1, default=str).encode())
    rows: list[dict[str, Any]] = []
    if items:
        import ray
        import ray.data

        _ensure_ray(cfg.address)
        lap("ray session")
        cpus = float(ray.cluster_resources().get("CPU", 1))
        actors = max(1, min(len(items), cfg.actors or int(cpus), cfg.actors or -(-n_todo // VIDEOS_PER_ACTOR)))
        blocks = min(len(items), max(actors, -(-len(items) // FILES_PER_BLOCK)))
        ds = ray.data.from_items(items, override_num_blocks=blocks)
        ds = ds.map_batches(score_block, fn_kwargs={"index": index, "scoring": scoring}, batch_size=None,
                            batch_format="numpy", num_cpus=max(0.1, min(1.0, cpus / actors)),
                            compute=ray.data.TaskPoolStrategy(size=actors))
        rows = list(ds.iter_rows())
        lap("ray data job")
        phases["tasks: torch and detector load"] = round(sum(float(r.get("load_s", 0.0)) for r in rows), 3)
        phases["tasks: scoring and writing"] = round(sum(float(r.get("work_s", 0.0)) for r in rows), 3)
        log.debug("rescore: %d parallel tasks, %d blocks", actors, blocks)
    ok = [r for r in rows if r["status"] == "ok"]
    failed = [r for r in rows if r["status"] != "ok"]
    segments = Counter(c for r in ok for c in str(r["segments"]).split(",") if c)
    summary = {"scoring_id": sid, "index": index, "detector": det_uri, "videos_scored": len(ok),
               "videos_failed": len(failed), "videos_skipped": skipped, "snippets": sum(int(r["n_snippets"]) for r in ok),
               "segments": dict(sorted(segments.items())), "errors": {r["video_id"]: r["reason"] for r in failed},
               "warnings": warnings, "wall_s": round(time.time() - t0, 2), "current": False}
    if cfg.set_current and not failed:
        sc.set_current(index, sid)
        summary["current"] = True
    doc |= {"finished_at": _now().isoformat(timespec="seconds"), "summary": summary}
    storage.write_bytes(manifest_uri, json.dumps(doc, indent=1, default=str).encode())
    lap("summary")
    log.debug("rescore phases (s): %s", json.dumps(phases))
    return summary


def format_summary(s: dict[str, Any]) -> str:
    seg = ", ".join(f"{k} {v}" for k, v in s["segments"].items()) or "none"
    lines = [f"exvad rescore: scoring {s['scoring_id']} done in {s['wall_s']:.1f} s (no video decoded)",
             f"  videos:   {s['videos_scored']} scored, {s['videos_failed']} failed, {s['videos_skipped']} already scored",
             f"  flagged:  {seg}",
             f"  current:  {'yes' if s['current'] else 'no'}  (read with index.scorings.read_scoring)"]
    for vid, reason in list(s["errors"].items())[:5]:
        lines.append(f"  error:    {vid}: {reason}")
    return "\n".join(lines)
