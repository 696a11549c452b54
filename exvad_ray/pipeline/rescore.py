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
import os
import time
from collections import Counter, defaultdict
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from exvad_ray import storage
from exvad_ray.errors import ExvadError
from exvad_ray.detector.localize import LocalizationConfig
from exvad_ray.pipeline.assemble import segment_columns
from exvad_ray.pipeline.commits import ADDS, BatchCommitter
from exvad_ray.checkpoints import checkpoint_uri, detector_id
from exvad_ray.index import sanitize
from exvad_ray.index import scorings as sc
from exvad_ray.pipeline.normality_scoring import without_language_model

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
    """One rescoring: a detector, a normality model, or both fused (docs/PIPELINE.md).

    `localization` None: the detector's calibrated threshold from its model card (0.5 for cards
    without `calibration`), the normality model's calibrated one, or the fused value's (from
    `per_hour`); given: that rule for every video (the CLI's --threshold)."""

    index: str
    detector: str | None = None
    localization: LocalizationConfig | None = None
    set_current: bool = True
    actors: int | None = None  # parallel scoring tasks; None: one per VIDEOS_PER_ACTOR videos, at most one per CPU
    address: str | None = None
    normality: str | None = None  # a model from `exvad normality fit` (its folder or .npz)
    labels: str | None = None  # labels table: the fusion weight (and scale) chosen on its val split
    per_hour: float = 1.0  # fused: target false alarms per hour of normal footage
    fusion_weight: float | None = None  # fused: the normality part's weight (None: chosen on val, else the default)
    # fused: "rank_surprise" (the default: chosen on two development archives, docs/NORMALITY.md "Fusion"),
    # "surprise", "rank", or "auto" (the better val AP: normality.fusion.WEIGHT_METRIC; the default scale
    # without labels)
    fusion_scale: str = "rank_surprise"


@dataclasses.dataclass
class Scoring:
    """What every row of one scoring carries (shipped to the scoring tasks)."""

    scoring_id: str
    detector_uri: str | None
    model_card: str | None
    class_names: list[str]
    localization: LocalizationConfig
    detector_id: str | None = None
    normality_uri: str | None = None
    normality_id: str | None = None
    fusion: dict[str, Any] | None = None  # normality_scoring.Fusion as a dict (fused scorings)
    nearest_uri: dict[str, str] = dataclasses.field(default_factory=dict)  # the banks' videos -> URI (evidence)
    fixed_threshold: bool = False  # --threshold given: the same rule for every bank

    @property
    def mode(self) -> str:
        if self.normality_uri and self.detector_uri:
            return "fused"
        return "normality" if self.normality_uri else "detector"


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


def video_scores(scoring: Scoring, scorer: Any, model: Any, info: dict[str, Any], rows: pa.Table
                 ) -> tuple[np.ndarray, np.ndarray, Any, LocalizationConfig, np.ndarray | None]:
    """(anomaly score, class probabilities, NormalityScores or None, flagging rule, the score's surprise
    or None) of one video, rows sorted by snippet: the detector's raw scores; the normality percentile
    (class Anomaly); or the fused value's percentile of normal footage with the detector's class
    probabilities. The surprise -log(1 - percentile) keeps the order that float32 percentiles lose
    beyond all normal footage (on a development archive frame AP 0.676 from the stored percentiles
    against 0.731 from the same scores unrounded)."""
    mode = scoring.mode
    ns = None
    if mode != "detector":
        feats = _matrix(rows.column(next(c for c in FEATURE_COLUMNS if c in rows.column_names)))
        ns = model.score(feats, info["video_id"], info.get("camera"))
    if mode == "normality":
        p = ns.percentile.astype(np.float32)
        loc = scoring.localization if scoring.fixed_threshold else ns.threshold.localization(scoring.localization)
        return p, np.stack([1.0 - p, p], 1).astype(np.float32), ns, loc, ns.surprise
    scores, probs = score_video(scorer, info, rows)
    if mode == "detector":
        return scores, probs, None, scoring.localization, None
    fusion = ns_fusion(scoring)
    percentile, surprise = fusion.percentile(fusion.raw(ns.surprise, scores))
    return percentile.astype(np.float32), probs, ns, scoring.localization, surprise


def ns_fusion(scoring: Scoring) -> Any:
    from exvad_ray.pipeline.normality_scoring import Fusion

    return Fusion(**scoring.fusion)


def video_tables(scoring: Scoring, scorer: Any, info: dict[str, Any], rows: pa.Table, model: Any = None
                 ) -> dict[str, Any]:
    """The scoring's rows of one video: {table: [(partition values, pa.Table)]}."""
    from exvad_ray.detector.video_level import video_prediction
    from exvad_ray.pipeline.normality_scoring import evidence_columns, lead_with_evidence

    rows = rows.sort_by("snippet_index")
    vid, uri, part = info["video_id"], info["uri"], {"date": info["date"], "camera": info["camera"]}
    scores, probs, ns, loc, surprise = video_scores(scoring, scorer, model, info, rows)
    feat_col = next(c for c in FEATURE_COLUMNS if c in rows.column_names)
    feats = _matrix(rows.column(feat_col))
    start_s = rows.column("start_s").to_numpy()
    end_s = rows.column("end_s").to_numpy()
    window_of = rows.column("window_index").to_numpy()
    thumbs = rows.column("thumbnail_jpeg").to_pylist() if "thumbnail_jpeg" in rows.column_names else None
    expl = info["window_explanations"]
    rec = dt.datetime.fromisoformat(info["recorded_at"]) if info.get("recorded_at") else None

    def extra(first: int, last: int, peak: int) -> dict[str, Any]:
        cols = {
            "explanation": expl.get(str(int(window_of[peak])), ""), "thumbnail_jpeg": thumbs[peak] if thumbs else None,
            # for a segments schema that also places segments in wall-clock time
            "start_at": rec + dt.timedelta(seconds=float(start_s[first])) if rec else None,
            "end_at": rec + dt.timedelta(seconds=float(end_s[last])) if rec else None,
            # for a segments schema that also keeps the peak window's explanation embedding
            "explanation_embedding": list(info["window_text"][int(window_of[peak])] or [])
            if int(window_of[peak]) < len(info["window_text"]) else []}
        if surprise is not None:  # the segment's order beyond normal footage, where its float32 score is 1.0
            cols["surprise"] = float(np.max(surprise[first:last + 1]))
        if ns is not None:  # why it was flagged (docs/CONTRACTS.md "evidence"), at the segment's peak
            # the peak of normality itself: where the footage is least like normal footage
            npeak = first + int(np.argmax(ns.surprise[first:last + 1]))
            cols |= evidence_columns(ns, npeak, scoring.nearest_uri)
            if info.get("no_llm", True):
                cols["explanation"] = lead_with_evidence(cols["evidence"], cols["explanation"])
        return cols

    seg_by_class = segment_columns(vid, uri, scoring.class_names, loc, scores, probs, feats, start_s, end_s, extra=extra)
    ids = {"scoring_id": scoring.scoring_id, "detector_id": scoring.detector_id or scoring.scoring_id}
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
        "normality": ns.percentile.astype(np.float32).tolist() if ns is not None else [None] * n,
        "surprise": np.asarray(surprise, np.float32).tolist() if surprise is not None else [None] * n,
        **{k: [v] * n for k, v in ids.items()}}))]
    pred = video_prediction(scores, probs, scoring.class_names, threshold=loc.threshold)
    n_segments = sum(len(c["segment_id"]) for c in seg_by_class.values())
    video_class = pred.video_class
    if ns is not None:  # flagged exactly when the rule flags a segment (the calibrated decision)
        top = max(((float(sc_), lab) for lab, c in seg_by_class.items() for sc_ in c["score"]), default=None)
        video_class = top[1] if top else scoring.class_names[0]
    out["videos"] = [(part, _table("videos", {
        "video_id": [vid], "uri": [uri], "name": [info["name"]], "video_score": [pred.video_score],
        "video_class": [video_class], "class_names": [scoring.class_names],
        "class_scores": [pred.class_scores.tolist()], "n_segments": [n_segments],
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
    """One block of snippets files (one row per file) in, one summary row per video out. With
    `collect`, nothing is written: each video's raw parts come back instead (the fused scoring's
    calibration pass: normality surprise, detector score, truth from its label, seconds)."""

    def __init__(self, index: str, scoring: Scoring, torch_threads: int = 1, collect: bool = False,
                 delta: bool = False):
        self.index, self.scoring, self.torch_threads, self.collect = index, scoring, torch_threads, collect
        self.delta = delta and not collect  # a Delta index: the block's videos become one batch (`_write_batch`)
        self.scorer: Any = None
        self.model: Any = None
        self.loaded = False
        self.version: int | None = None  # the index's schema version, read once per task

    def _load(self) -> None:
        if self.scoring.normality_uri:  # once per task; bounded by the bank, never by the archive
            from exvad_ray.pipeline.normality_scoring import load_model

            self.model = load_model(self.scoring.normality_uri, str(self.scoring.normality_id))
        if self.scoring.detector_uri:
            self._load_detector()
        self.loaded = True

    def _load_detector(self) -> None:
        import torch

        torch.set_num_threads(self.torch_threads)  # scoring is many small matmuls: one thread per CPU asked
        sid = str(self.scoring.detector_id or self.scoring.scoring_id)
        if sid not in _SCORER:
            from exvad_ray.checkpoints import load_detector

            _SCORER.clear()
            _SCORER[sid] = load_detector(str(self.scoring.detector_uri), device="cpu")
        self.scorer = _SCORER[sid]
        names = list(self.scorer.class_names)
        if names != self.scoring.class_names:  # the driver took them from the model card, not the weights
            raise ExvadError(f"the model card beside {self.scoring.detector_uri} names the classes "
                             f"{self.scoring.class_names}, the checkpoint {names}")

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        from exvad_ray.index import write_table_file

        t0 = time.perf_counter()
        load_error = None
        if not self.loaded:
            try:
                self._load()
            except ExvadError as exc:  # every video of the batch fails with the reason
                load_error = exc
        t1 = time.perf_counter()
        out: dict[str, list[Any]] = {"video_id": [], "status": [], "reason": [], "n_snippets": [], "segments": [],
                                     "coarse": []}
        pending: dict[str, tuple[list[pa.Table], list[dict[str, str]]]] = {}  # Delta: the batch's rows per table
        listings: dict[str, list[str]] = {}  # partition folders of videos/captions this block listed
        for f, wanted_json in zip(batch["file"], batch["videos"]):
            wanted = json.loads(str(wanted_json))
            infos: dict[str, Any] = {w["video_id"]: None for w in wanted}
            table = ids = None
            if load_error is None:
                try:
                    if self.version is None:
                        from exvad_ray.index import index_version

                        self.version = index_version(self.index)
                    infos |= video_infos(self.index, str(f), wanted, self.version, listings)
                    table = _read_snippets(str(f))
                    ids = table.column("video_id").to_numpy(zero_copy_only=False)
                except Exception as exc:  # noqa: BLE001 - an unreadable file fails its videos, not the job
                    load_error = exc
            for vid, info in infos.items():
                try:
                    if load_error is not None:
                        raise load_error
                    if info is None:  # its videos row is in another partition (a retried video): scored there
                        continue
                    rows = table.filter(pa.array(ids == vid))
                    if rows.num_rows == 0:
                        raise ExvadError(f"no snippets for video {vid} in {f}")
                    if self.collect:
                        out_row = (vid, "ok", "", rows.num_rows, json.dumps(self._parts(info, rows)))
                    else:
                        tables = video_tables(self.scoring, self.scorer, info, rows, self.model)
                        segs = [lab for _, t in tables["segments"] for lab in t.column("label").to_pylist()]
                        for name in ("segments", "snippet_scores", "videos"):  # videos last: marks it done
                            for values, t in tables[name]:
                                if self.delta:
                                    chunks, parts = pending.setdefault(name, ([], []))
                                    chunks.append(t)
                                    parts.extend([dict(values)] * t.num_rows)
                                else:
                                    write_table_file(sc.file_uri(self.index, self.scoring.scoring_id, name, values, vid), t)
                        out_row = (vid, "ok", "", rows.num_rows, ",".join(sorted(segs)))
                except Exception as exc:  # noqa: BLE001 - one bad video never fails the job
                    out_row = (vid, "error", f"{type(exc).__name__}: {exc}", 0, "")
                for k, v in zip(out, (*out_row, bool(info and info.get("coarse")))):
                    out[k].append(v)
        if self.delta:
            out[ADDS] = self._write_batch(out, pending)
        # where the task's time went (the driver logs it: the fixed cost vs the per-video cost)
        n = len(out["video_id"])
        out["load_s"] = [t1 - t0 if i == 0 else 0.0 for i in range(n)]
        out["work_s"] = [time.perf_counter() - t1 if i == 0 else 0.0 for i in range(n)]
        return out

    def _write_batch(self, out: dict[str, list[Any]], pending: dict[str, tuple[list[pa.Table], list[dict[str, str]]]]
                     ) -> list[str]:
        """The block's scored videos as one file per scoring table and partition (`batches.write_rows`);
        the add actions and video ids ride on the first row as JSON for the driver to commit
        (`scoring_committer`). A write that fails fails the block's scored videos, not the job."""
        from exvad_ray.index import batches

        n = len(out["video_id"])
        col = [""] * n
        ok = [i for i in range(n) if out["status"][i] == "ok"]
        if not ok:
            return col
        try:
            adds = batches.write_rows(self.index, pending, prefix=sc.table_path(self.scoring.scoring_id, ""))
        except Exception as exc:  # noqa: BLE001 - reported per video, as a failed video is
            for i in ok:
                out["status"][i], out["reason"][i] = "error", f"{type(exc).__name__}: {exc}"
                out["n_snippets"][i], out["segments"][i] = 0, ""
            return col
        col[0] = json.dumps({"adds": adds, "video_ids": [out["video_id"][i] for i in ok]})
        return col

    def _parts(self, info: dict[str, Any], rows: pa.Table) -> dict[str, Any]:
        """A calibration video's raw parts (a few floats per snippet)."""
        from exvad_ray.pipeline.normality_scoring import snippet_truth

        rows = rows.sort_by("snippet_index")
        feats = _matrix(rows.column(next(c for c in FEATURE_COLUMNS if c in rows.column_names)))
        ns = self.model.score(feats, info["video_id"], info.get("camera"))
        det, _probs = score_video(self.scorer, info, rows)
        start, end = rows.column("start_s").to_numpy(), rows.column("end_s").to_numpy()
        return {"surprise": np.round(ns.surprise, 6).tolist(), "detector": np.asarray(det, np.float64).tolist(),
                "truth": snippet_truth(start, end, info.get("label"), info.get("fps")).tolist(),
                "seconds": float(np.sum(end - start))}


def score_block(batch: dict[str, Any], index: str, scoring: Scoring, collect: bool = False,
                delta: bool = False) -> dict[str, list[Any]]:
    """The Ray Data task: a block of snippets files scored by this worker's RescoreStage."""
    return RescoreStage(index, scoring, collect=collect, delta=delta)(batch)


def scoring_committer(index: str, scoring_id: str) -> BatchCommitter:
    """The driver's side on a Delta index: each block's batch committed as the scoring's next batch
    number (app id = scoring id), `videos` last, as the archive job commits (`pipeline.commits`)."""
    return BatchCommitter(index, scoring_id, sc.delta_tables(scoring_id), prefix=sc.table_path(scoring_id, ""),
                          cached=("videos",))


def prepare_delta_scoring(index: str, scoring_id: str) -> dict[str, int]:
    """Before planning a rescoring on a Delta index: its tables created (before any task writes),
    and a batch that a killed rescore committed to some tables but not to `videos` deleted from
    them (`index.batches.repair`), so that the rerun scores those videos once. Returns the videos
    whose rows were deleted, per table."""
    from exvad_ray.index import batches

    sc.create_delta_tables(index, scoring_id)
    return batches.repair(index, [scoring_id], sc.delta_tables(scoring_id))


def _read_snippets(uri: str) -> pa.Table:
    with storage.open_file(uri) as fh:
        pf = pq.ParquetFile(fh)
        names = set(pf.schema_arrow.names)
        cols = ["video_id", "window_index", "snippet_index", "start_s", "end_s",
                next(c for c in FEATURE_COLUMNS if c in names)] + (["thumbnail_jpeg"] if "thumbnail_jpeg" in names else [])
        return pf.read(columns=cols)


# --------------------------------------------------------------------------------- driver


def plan_work(index: str, scoring_id: str | None, only: set[str] | None = None,
              labels: dict[str, dict[str, Any]] | None = None) -> tuple[list[dict[str, Any]], int, list[str]]:
    """Items (snippets file -> the ids of its videos still to score), videos already scored, warnings.
    `scoring_id` None: nothing counts as done; `only`: these videos only; `labels`: their label rows
    travel with them (the calibration pass).

    Nothing per video is read here: the indexed, superseded and scored ids are held as 16-byte keys
    (`index.IdSet`), the snippets files are listed a page at a time, and each task reads its own
    videos' rows (`video_infos`). The driver holds the items: a file name and the ids it holds."""
    from exvad_ray import index as idx
    from exvad_ray.index import idmap
    from exvad_ray.index.store import PART_RE, file_video_ids, iter_table_files
    from exvad_ray.index.supersede import superseded_ids

    indexed = pc.unique(idx.done_ids(index, "videos"))  # a rewritten video is in two files until compaction
    if len(indexed) == 0:
        raise ExvadError(f"{index} has no processed videos (run `exvad process` first)")
    gone = superseded_ids(index)
    done = idx.done_set(sc.scoring_root(index, scoring_id), "videos") if scoring_id else None
    current = idx.IdSet(indexed.filter(pc.invert(pc.is_in(indexed, pa.array(sorted(gone), pa.string())))))
    wanted = None if only is None else set(only)

    def keep(ids: list[str]) -> list[str]:
        if not ids:
            return []
        arr = pa.array(ids, pa.string())
        mask = current.contains(arr)
        if done is not None:
            mask &= ~done.contains(arr)
        return [v for v, m in zip(ids, mask) if m and (wanted is None or v in wanted)]

    items: list[dict[str, Any]] = []
    n_placed = 0

    def flush(files: list[str]) -> None:
        """One partition folder's files: a video rewritten since the last compaction is in its part
        file and (stale) in the compacted file; the part file wins."""
        nonlocal n_placed
        placed: set[str] = set()
        held = [(f, file_video_ids(f)) for f in sorted(files, key=lambda f: not PART_RE.search(f))]
        ok = set(keep([v for _, ids in held for v in ids]))  # one vectorised lookup per folder
        for f, ids in held:
            vids = [v for v in ids if v in ok and v not in placed]
            placed.update(vids)
            n_placed += len(vids)
            if vids:
                items.append({"file": f, "videos": json.dumps(
                    [{"video_id": v, **({"label": _jsonable(labels.get(v))} if labels is not None else {})}
                     for v in vids])})

    in_blocks = idx.is_delta_index(index)  # Delta: files hold blocks of videos, named by nothing
    if in_blocks:  # each file's ids from the index's id cache (`index.idmap`), filtered in Arrow
        snap, rows = idmap.file_rows(index, "snippets")
        vids = rows.column("video_id")
        mask = current.contains(vids)
        if done is not None:
            mask &= ~done.contains(vids)
        if wanted is not None:
            mask &= pc.is_in(vids, value_set=pa.array(sorted(wanted), pa.string())).to_numpy(zero_copy_only=False)
        rows = rows.filter(pa.array(mask))
        n_placed = rows.num_rows
        for f, ids in idmap.by_file(snap, rows):
            items.append({"file": f, "videos": json.dumps(
                [{"video_id": v, **({"label": _jsonable(labels.get(v))} if labels is not None else {})}
                 for v in ids])})
    else:
        folder, files = None, []
        for page in iter_table_files(index, "snippets"):
            for f in page:
                here = f.rsplit("/", 1)[0]
                if here != folder:
                    flush(files)
                    folder, files = here, []
                files.append(f)
        flush(files)
    items.sort(key=lambda it: it["file"])
    n_done = 0
    if done is not None:
        n_done = int(done.contains(indexed).sum()) if len(done) else 0
    eligible = len(current) if wanted is None else len(wanted)
    warnings = []
    missing = eligible - n_done - n_placed
    if missing > 0:
        warnings.append(f"{missing} videos have no snippets file")
    return items, n_done, warnings


def video_infos(index: str, snippets_file: str, wanted: list[dict[str, Any]], version: int,
                listings: dict[str, list[str]] | None = None) -> dict[str, dict[str, Any]]:
    """What scoring needs of each of `wanted`'s videos, read by the task from its partition's files of
    the `videos` and `captions` tables (the folder beside its snippets file): uri, name, partition,
    the windows' explanation embeddings and texts, recording time, fps, its label (calibration).
    `listings`: the folders listed so far by this task (a block's files often share a folder)."""
    from exvad_ray import index as idx
    from exvad_ray.index.store import COMPACT_PREFIX, PART_RE, folder_files, is_delta_index

    rel = snippets_file[len(storage.join(index, "snippets")) + 1:].rsplit("/", 1)[0]
    in_blocks = is_delta_index(index)
    ids = [w["video_id"] for w in wanted]

    def rows(table: str, columns: list[str]) -> list[dict[str, Any]]:
        """The videos' rows in this partition: from a video's part file when it has one (rewritten
        since the last compaction), else from the compacted files."""
        folder = storage.join(index, table, rel)
        names = (listings or {}).get(folder)
        if names is None:
            names = folder_files(index, table, rel, in_blocks)
            if listings is not None:
                listings[folder] = names
        if in_blocks:  # a Delta snapshot's files: every one may hold any of the videos
            parts = [(names, ids)]
        else:
            own = {m.group(1): f for f in names for m in [PART_RE.search(f)] if m}
            rest = [v for v in ids if v not in own]
            parts = [(sorted(own[v] for v in ids if v in own), [v for v in ids if v in own]),
                     ([f for f in names if os.path.basename(f).startswith(COMPACT_PREFIX)] if rest else [], rest)]
        out: list[dict[str, Any]] = []
        for files, vids in parts:
            if files:
                t = idx.read_files(index, table, files, columns, version)
                out += t.filter(pc.is_in(t.column("video_id"), pa.array(vids, pa.string()))).to_pylist()
        return out

    vcols = ["video_id", "uri", "name", "date", "camera", "window_explanation_embeddings", "explanation_embedding",
             "n_windows", "recorded_at", "explanation_model", "fps"]
    expl: dict[str, dict[str, str]] = defaultdict(dict)
    for r in rows("captions", ["video_id", "window_index", "window_explanation"]):
        expl[r["video_id"]][str(int(r["window_index"]))] = r["window_explanation"] or ""
    out: dict[str, dict[str, Any]] = {}
    label = {w["video_id"]: w.get("label") for w in wanted}
    for r in rows("videos", vcols):
        window_text = r.get("window_explanation_embeddings")
        coarse = window_text is None and int(r["n_windows"] or 1) > 1 and bool(r["explanation_embedding"])
        if window_text is None:  # an index written before per-window embeddings were kept
            window_text = [r["explanation_embedding"] or []] * int(r["n_windows"] or 1)
        out[r["video_id"]] = {"video_id": r["video_id"], "uri": r["uri"], "name": r["name"], "date": r["date"],
                              "camera": r["camera"], "window_text": window_text,
                              "recorded_at": r["recorded_at"].isoformat() if r.get("recorded_at") else None,
                              "window_explanations": expl.get(r["video_id"], {}), "coarse": coarse,
                              "no_llm": without_language_model(r.get("explanation_model")), "fps": r.get("fps"),
                              "label": label.get(r["video_id"])}
    return out


def _jsonable(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """A label row as the item's JSON carries it (what `snippet_truth` reads)."""
    if row is None:
        return None
    return {"labels": list(row.get("labels") or []), "fps": row.get("fps"),
            "segments": [dict(x) for x in row.get("segments") or []]}


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


def _run_tasks(index: str, items: list[dict[str, Any]], scoring: Scoring, cfg: RescoreConfig, n_todo: int,
               collect: bool = False, committer: BatchCommitter | None = None) -> list[dict[str, Any]]:
    """The Ray Data job over `items`: one summary row per video (with `collect`, its raw parts).
    With `committer` (a Delta index) each block's videos are one batch, committed as its first row
    arrives: what a kill loses is the batches in flight, never a committed one."""
    import ray
    import ray.data

    _ensure_ray(cfg.address)
    cpus = float(ray.cluster_resources().get("CPU", 1))
    actors = max(1, min(len(items), cfg.actors or int(cpus), cfg.actors or -(-n_todo // VIDEOS_PER_ACTOR)))
    blocks = min(len(items), max(actors, -(-len(items) // FILES_PER_BLOCK)))
    ds = ray.data.from_items(items, override_num_blocks=blocks)
    ds = ds.map_batches(score_block, fn_kwargs={"index": index, "scoring": scoring, "collect": collect,
                                                "delta": committer is not None},
                        batch_size=None, batch_format="numpy", num_cpus=max(0.1, min(1.0, cpus / actors)),
                        compute=ray.data.TaskPoolStrategy(size=actors))
    log.debug("rescore: %d parallel tasks, %d blocks", actors, blocks)
    rows = []
    for row in ds.iter_rows():
        row = dict(row)
        if committer is not None:
            committer(row)
        rows.append(row)
    return rows


def _prepare(cfg: RescoreConfig, index: str, echo: Any) -> tuple[Scoring, dict[str, Any]]:
    """The scoring (id, models, rule) and the manifest's description of it, before the job. A fused
    scoring first runs the calibration pass (`fit_fusion`)."""
    from exvad_ray.normality import GLOBAL, Threshold
    from exvad_ray.pipeline import normality_scoring as nsc

    if not cfg.detector and not cfg.normality:
        raise ExvadError("give --detector URI and/or --normality URI (or --list / --use ID)")
    det_id = det_uri = card = None
    class_names = list(nsc.NORMALITY_CLASSES)
    card_doc: dict[str, Any] = {}
    if cfg.detector:
        det_id = detector_id(cfg.detector)
        det_uri = storage.normalize(checkpoint_uri(cfg.detector))
        card, class_names = detector_metadata(det_uri)
        card_doc = json.loads(card or "{}")
    doc: dict[str, Any] = {"mode": "detector", "detector_id": det_id, "detector_uri": det_uri, "model_card": card_doc}
    loc, source = cfg.localization, "--threshold"
    if not cfg.normality:
        if loc is None:
            loc = nsc.calibrated_localization(card_doc)
            source = "calibrated on normal footage (model card)" if loc is not None else "the default 0.5"
            loc = loc or LocalizationConfig()
        scoring = Scoring(str(det_id), det_uri, card, class_names, loc, detector_id=det_id,
                          fixed_threshold=True)
        return scoring, doc | {"threshold_source": source}
    nrm_uri = storage.normalize(cfg.normality)
    model_doc = nsc.check_model(nrm_uri)
    nrm_id = nsc.normality_id(nrm_uri)
    bank_videos = {v for b in model_doc.get("banks") or [] for v in b.get("videos") or []}
    from exvad_ray.index.labels import videos_by_id

    vt = videos_by_id(index, bank_videos, ["video_id", "uri"])
    nearest_uri = dict(zip(vt.column("video_id").to_pylist(), vt.column("uri").to_pylist()))
    doc |= {"mode": "normality" if not cfg.detector else "fused",
            "normality": nsc.manifest_entry(model_doc, nrm_uri, nrm_id)}
    if not cfg.detector:
        glob = Threshold.from_dict(model_doc["calibrations"][GLOBAL]["threshold"])
        fixed = loc is not None
        loc = loc if fixed else glob.localization()
        scoring = Scoring(nrm_id, None, None, class_names, loc, detector_id=None, normality_uri=nrm_uri,
                          normality_id=nrm_id, nearest_uri=nearest_uri, fixed_threshold=fixed)
        return scoring, doc | {"threshold_source": "--threshold" if fixed else
                               "the normality model's calibrated threshold (per bank; global shown)"}
    probe = Scoring("calibration", det_uri, card, class_names, LocalizationConfig(), detector_id=det_id,
                    normality_uri=nrm_uri, normality_id=nrm_id)
    fusion = fit_fusion(cfg, index, probe, model_doc, card_doc, echo)
    sid = "fus-" + nsc.digest(det_id, nrm_id, fusion.to_dict())
    fixed = loc is not None
    loc = loc if fixed else fusion.localization()
    scoring = Scoring(sid, det_uri, card, class_names, loc, detector_id=det_id, normality_uri=nrm_uri,
                      normality_id=nrm_id, fusion=fusion.to_dict(), nearest_uri=nearest_uri, fixed_threshold=True)
    cal = fusion.calibration["threshold"]
    return scoring, doc | {"threshold_source": "--threshold" if fixed else "the fused value calibrated on normal footage",
                           "fusion": {"weight": fusion.weight, "weight_source": fusion.weight_source,
                                      "scale": fusion.scale, "weight_metric": fusion.weight_metric,
                                      "weight_scores": fusion.weight_scores, "threshold": cal,
                                      "detector_calibration": "model card" if nsc.card_calibration(card_doc) and
                                      nsc.card_calibration(card_doc).get("map") else "the calibration footage"}}


CALIBRATION_SNIPPETS = 200_000  # the fused calibration pass reads at most about this many snippets


def _calibration_videos(cfg: RescoreConfig, index: str, model_doc: dict[str, Any]
                        ) -> tuple[dict[str, dict[str, Any] | None], str]:
    """{video_id: label row or None} the fused calibration reads, and which footage it is: with
    labels, the val split (its Normal videos calibrate; all of it chooses the weight), or the Normal
    videos of train and val when val has fewer than 2; without, the normality model's bank videos
    (normal footage by construction), sampled by video beyond CALIBRATION_SNIPPETS."""
    import hashlib

    from exvad_ray.normality import GLOBAL
    from exvad_ray.index.labels import iter_videos, label_lookup, videos_by_id
    from exvad_ray.pipeline.normality_scoring import is_normal

    cols = ["video_id", "uri", "name", "n_snippets"]
    chosen: dict[str, dict[str, Any] | None] = {}
    if cfg.labels:
        lookup = label_lookup(cfg.labels, strict=False)
        videos = [v for t in iter_videos(index, cols) for v in lookup.matching(t).to_pylist()]
        rows = {v["video_id"]: lookup(v["name"], v["uri"]) for v in videos}
        val = {v: r for v, r in rows.items() if r is not None and r["split"] == "val"}
        if sum(is_normal(r) for r in val.values()) >= 2:
            chosen, what = val, "the val split"
        else:
            chosen = {v: r for v, r in rows.items() if r is not None and r["split"] in ("train", "val") and is_normal(r)}
            what = "the Normal videos of train and val"
    else:
        bank = next((b for b in model_doc.get("banks") or [] if b.get("name") == GLOBAL), {})
        videos = videos_by_id(index, bank.get("videos") or [], cols).to_pylist()
        chosen = {v["video_id"]: None for v in videos}
        what = "the normality bank's videos"
    size = {v["video_id"]: int(v["n_snippets"] or 0) for v in videos}
    if sum(size.get(v, 0) for v in chosen) > CALIBRATION_SNIPPETS:
        order = sorted(chosen, key=lambda v: hashlib.sha256(v.encode()).hexdigest())
        keep, n = {}, 0
        for v in order:
            if n >= CALIBRATION_SNIPPETS:
                break
            keep[v], n = chosen[v], n + size.get(v, 0)
        chosen = keep
    return chosen, what


def fit_fusion(cfg: RescoreConfig, index: str, probe: Scoring, model_doc: dict[str, Any], card: dict[str, Any],
               echo: Any = print) -> Any:
    """The fused scoring's calibration pass: score the calibration footage with both parts (Ray
    tasks return a few floats per snippet), then on the driver: the detector's percentile map (its
    model card's, else this footage's normal videos), the scale (`cfg.fusion_scale`; "auto": the better
    val AP, `WEIGHT_METRIC`) and weight (chosen on labelled val footage, else DEFAULT_WEIGHT), and the fused value's
    calibration on normal footage
    (percentile map and the threshold for `cfg.per_hour` false alarms per hour)."""
    from exvad_ray.normality import (
        DEFAULT_WEIGHT, WEIGHT_METRIC, WEIGHT_METRICS, PercentileMap, calibrate_scores, choose_weight, fuse,
    )
    from exvad_ray.pipeline.normality_scoring import SCALES, Fusion, card_calibration, fusion_parts, is_normal

    if cfg.fusion_scale not in SCALES + ("auto",):
        raise ExvadError(f"--fusion-scale must be auto, {' or '.join(SCALES)}, not {cfg.fusion_scale!r}")
    if cfg.per_hour <= 0:
        raise ExvadError(f"--false-alarms-per-hour must be positive, got {cfg.per_hour}")
    chosen, what = _calibration_videos(cfg, index, model_doc)
    items, _done, _w = plan_work(index, None, only=set(chosen), labels=chosen)
    n = sum(len(json.loads(it["videos"])) for it in items)
    normal_ids = {v for v, r in chosen.items() if r is None or is_normal(r)}
    if len(normal_ids) < 2:
        raise ExvadError(f"fusion calibration needs at least 2 normal videos ({what}: {len(normal_ids)})")
    echo(f"[exvad] fusion calibration on {what}: {n} videos ({len(normal_ids)} normal)")
    rows = _run_tasks(index, items, probe, cfg, n, collect=True)
    bad = [r for r in rows if r["status"] != "ok"]
    if bad:
        raise ExvadError(f"fusion calibration failed on {len(bad)} videos, e.g. {bad[0]['video_id']}: {bad[0]['reason']}")
    parts = {r["video_id"]: json.loads(r["segments"]) for r in rows}
    normal = [parts[v] for v in sorted(parts) if v in normal_ids]
    ref = [parts[v] for v in sorted(parts)]
    arr = lambda p, k: np.asarray(p[k], np.float64)  # noqa: E731
    cal = card_calibration(card)
    dmap = cal["map"] if cal and cal.get("map") else PercentileMap.fit(np.concatenate([arr(p, "detector") for p in normal])).to_dict()
    rank_maps = {"normality": PercentileMap.fit(np.concatenate([arr(p, "surprise") for p in ref])).to_dict(),
                 "detector": PercentileMap.fit(np.concatenate([arr(p, "detector") for p in ref])).to_dict()}
    labelled = cfg.labels is not None and any(any(p["truth"]) for p in ref) and any(not any(p["truth"]) for p in ref)
    scales = SCALES if cfg.fusion_scale == "auto" else (cfg.fusion_scale,)
    if cfg.fusion_scale == "auto" and not labelled:
        scales = SCALES[:1]
    truth = [arr(p, "truth") for p in ref]
    measure = WEIGHT_METRICS[WEIGHT_METRIC]  # what the weight and the scale are chosen by
    best: tuple[float, str, float, dict] | None = None
    for scale in scales:
        split = [fusion_parts(scale, dmap, rank_maps, arr(p, "surprise"), arr(p, "detector")) for p in ref]
        if cfg.fusion_weight is not None:
            w, values = float(cfg.fusion_weight), {}
        elif labelled:
            w, values = choose_weight([a for a, _ in split], [b for _, b in split], truth)
        else:
            w, values = DEFAULT_WEIGHT, {}
        value = measure(np.concatenate([fuse(a, b, w) for a, b in split]), np.concatenate(truth)) if labelled else 0.0
        if best is None or value > best[0] + 1e-9:
            best = (value, scale, w, values)
    assert best is not None
    value, scale, weight, values = best
    source = ("--fusion-weight" if cfg.fusion_weight is not None else
              f"chosen on {what} (snippet {WEIGHT_METRIC.upper()} {value:.3f})" if labelled
              else f"the default {DEFAULT_WEIGHT} (no labelled val split)")
    fused = [fuse(*fusion_parts(scale, dmap, rank_maps, arr(p, "surprise"), arr(p, "detector")), weight) for p in normal]
    fcal = calibrate_scores(fused, [float(p["seconds"]) for p in normal], cfg.per_hour)
    echo(f"[exvad] fusion: scale {scale}, normality weight {weight:g} ({source}); threshold: percentile "
         f"{fcal.threshold.threshold:.5f} ({fcal.threshold.method}, {cfg.per_hour:g} false alarm(s) per hour)")
    return Fusion(weight, scale, dmap, fcal.to_dict(), rank_maps if scale != "surprise" else None, source,
                  {str(k): v for k, v in values.items()} or None, WEIGHT_METRIC if values else None)


def run_rescore(cfg: RescoreConfig, echo: Any = print) -> dict[str, Any]:
    """Score every indexed video with `cfg.detector`, `cfg.normality`, or both fused; returns the
    summary (also in scoring.json). The one library call for every kind of rescoring."""
    t0 = time.time()
    phases: dict[str, float] = {}
    tick = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal tick
        now = time.perf_counter()
        phases[name] = round(now - tick, 3)
        tick = now

    index = storage.normalize(cfg.index)
    scoring, described = _prepare(cfg, index, echo)
    sid = scoring.scoring_id
    lap("models and calibration")
    in_delta = sc.writes_delta(index)
    if in_delta:  # a batch a killed rescore left in some tables but not in videos: deleted first
        repaired = prepare_delta_scoring(index, sid)
        if repaired:
            echo(f"[exvad] repaired an interrupted batch of scoring {sid}: rows of "
                 f"{max(repaired.values())} videos deleted ({', '.join(sorted(repaired))})")
    items, skipped, warnings = plan_work(index, sid)
    n_todo = sum(len(json.loads(it["videos"])) for it in items)
    lap("plan")
    what = " + ".join(x for x in (scoring.detector_uri, scoring.normality_uri) if x)
    echo(f"[exvad] rescore {index} with {what} (scoring {sid}): {n_todo + skipped} videos, "
         f"{skipped} already scored, {n_todo} to score")
    doc = {"scoring_id": sid, **described, "class_names": scoring.class_names,
           "localization": dataclasses.asdict(scoring.localization),
           "created_at": _now().isoformat(timespec="seconds"), "finished_at": None}
    manifest_uri = storage.join(sc.scoring_root(index, sid), "scoring.json")
    if storage.exists(manifest_uri):
        doc["created_at"] = json.loads(storage.read_bytes(manifest_uri)).get("created_at", doc["created_at"])
    storage.write_bytes(manifest_uri, json.dumps(doc, indent=1, default=str).encode())
    rows: list[dict[str, Any]] = []
    if items:
        committer = scoring_committer(index, sid) if in_delta else None
        rows = _run_tasks(index, items, scoring, cfg, n_todo, committer=committer)
        lap("ray data job")
        if committer is not None:
            committer.finish()
            log.debug("rescore: %d batches committed", committer.batches)
        phases["tasks: models load"] = round(sum(float(r.get("load_s", 0.0)) for r in rows), 3)
        phases["tasks: scoring and writing"] = round(sum(float(r.get("work_s", 0.0)) for r in rows), 3)
    ok = [r for r in rows if r["status"] == "ok"]
    failed = [r for r in rows if r["status"] != "ok"]
    coarse = sum(bool(r.get("coarse")) for r in ok)
    if coarse:
        warnings.append(f"{coarse} multi-window videos predate per-window explanation embeddings: "
                        "scored with their video-level one")
    segments = Counter(c for r in ok for c in str(r["segments"]).split(",") if c)
    summary = {"scoring_id": sid, "index": index, "mode": scoring.mode, "detector": scoring.detector_uri,
               "normality": scoring.normality_uri, "threshold": scoring.localization.threshold,
               "threshold_source": described.get("threshold_source"), "videos_scored": len(ok),
               "videos_failed": len(failed), "videos_skipped": skipped, "snippets": sum(int(r["n_snippets"]) for r in ok),
               "segments": dict(sorted(segments.items())), "errors": {r["video_id"]: r["reason"] for r in failed},
               "warnings": warnings, "wall_s": round(time.time() - t0, 2), "current": False}
    if "fusion" in described:
        summary["fusion"] = {k: described["fusion"][k] for k in ("weight", "weight_source", "scale")}
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
    lines = [f"exvad rescore: scoring {s['scoring_id']} ({s.get('mode', 'detector')}) done in {s['wall_s']:.1f} s "
             "(no video decoded)",
             f"  videos:   {s['videos_scored']} scored, {s['videos_failed']} failed, {s['videos_skipped']} already scored",
             f"  flagged:  {seg}",
             f"  rule:     threshold {s['threshold']:.4g} ({s.get('threshold_source') or 'given'})",
             f"  current:  {'yes' if s['current'] else 'no'}  (read with index.scorings.read_scoring)"]
    for vid, reason in list(s["errors"].items())[:5]:
        lines.append(f"  error:    {vid}: {reason}")
    return "\n".join(lines)
