"""`fit_normality`: the normality model's fit job, a Ray Data job over the index's stored snippet
embeddings (no video is decoded).

Two passes over the snippet files, in Ray Data tasks:
1. *bank*: each task reads one snippets file, keeps the selected videos' rows with a Bernoulli
   probability sized so that about 2 x cap rows reach the driver, which feeds them to the bounded
   `BankBuilder` (reservoir of at most `cap` candidates per bank): driver memory is bounded by the
   cap, never by the archive. Snippets inside a false-alarm verdict's segment are pinned (always in
   the bank; `exvad feedback` rows of the labels table).
2. *calibration*: the banks are put in the object store; each task scores its file's calibration
   videos leave-one-video-out against the global bank and their camera's bank, and returns only the
   raw distances (a few floats per snippet); the driver fits each bank's calibration.

What goes in: with labels, the Normal videos of `--split` (calibrated on the Normal videos of the
calibration splits, default train and val: never test); without labels, all indexed footage (the
archive is mostly normal), trimmed of its most isolated 1 %. Per-camera banks exist only when the
index's camera partition comes from a camera rule (`--camera-pattern` recorded in the run's
manifest, or given here): the default partition is the first folder, which in a UCF-layout archive
is a class folder, and a partition the labels define must never become a "camera". A camera whose
footage is below `min_camera_snippets` uses the global bank.

Everything a user can get wrong (no index, no embeddings, unknown camera, an empty bank) is checked
by `plan_fit` before Ray starts. This module has its own reader of one snippets file (`read_snippet_file`:
the index's readers read whole tables; a task must read only its file).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from exvad_ray import index as idx
from exvad_ray import storage
from exvad_ray.errors import ExvadError
from exvad_ray.index.labels import FEEDBACK, SPLITS, LabelLookup, iter_videos, label_lookup, read_labels, rows_matching
from exvad_ray.index.partitions import PartitionRules
from exvad_ray.index.schemas import renamed_columns
from exvad_ray.index.store import file_video_ids
from exvad_ray.normality import GLOBAL, BankBuilder, NormalityModel, calibrate_bank, detect_layout
from exvad_ray.normality.halves import Layout
from exvad_ray.records import normal_labels
from exvad_ray.normality.model import COMBINE_RULES

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class NormalityFitConfig:
    index: str
    out: str
    labels: str | None = None
    split: str = "train"
    # held-out Normal videos: a bank video scored leave-one-video-out looks more unusual than footage the
    # bank never saw (the coreset keeps a video's odd moments as its own entries), so train is the
    # fallback when val has fewer than 2 (docs/NORMALITY.md "Calibration")
    calibrate_splits: tuple[str, ...] = ("val",)
    camera_pattern: str | None = None
    cameras: tuple[str, ...] = ()  # fit only these cameras (empty: all)
    per_hour: float = 1.0  # target false alarms per camera-hour of normal footage
    k: int = 5
    bank_size: int = 8000
    cap: int = 20000
    trim: float = 0.01  # only without labels
    min_camera_snippets: int = 2000
    half_weights: tuple[float, ...] | None = None  # default: equal
    combine: str = "mean"  # how the halves' surprises combine (normality.model.combine)
    smooth: int = 3  # snippets each video's raw scores are averaged over (normality.model.smooth_series)
    calibration_snippets: int = 200_000  # calibration footage beyond this is sampled by video
    seed: int = 0
    address: str | None = "local"


@dataclasses.dataclass
class VideoInfo:
    video_id: str
    uri: str
    name: str
    camera: str  # the bank's key: "" when there are no per-camera banks
    n_snippets: int
    bank: bool  # its snippets are bank candidates
    calibrate: bool  # scored for calibration (leave-one-video-out when it is a bank video)
    pinned: list[tuple[float, float]]  # false-alarm intervals, seconds [start, end)
    held_out: bool = False  # calibration footage the bank never saw (preferred: `fit_normality`)


@dataclasses.dataclass
class FitPlan:
    config: NormalityFitConfig
    videos: dict[str, VideoInfo]
    files: list[tuple[str, list[str]]]  # snippets file -> the planned videos it holds
    layout: Layout
    embedding_column: str
    per_camera: bool
    camera_rule: str | None
    camera_note: str
    banks: list[str]  # GLOBAL and the cameras with their own bank
    feature_models: list[str]
    false_alarms: int
    archive: str | None
    calibrate_splits: tuple[str, ...] = ()  # the splits whose Normal videos calibrate (labels only)

    @property
    def prefer_held_out(self) -> bool:
        """Calibrate a bank on held-out videos alone when it has 2: `--calibrate-on` leaves the bank's split out."""
        return bool(self.config.labels) and self.config.split not in self.config.calibrate_splits


# ----------------------------------------------------------------------------------- reading


def read_snippet_file(uri: str, embedding_column: str, video_ids: set[str] | None = None) -> pa.Table:
    """One snippets file of the index (video_id, snippet_index, start_s, end_s, visual_embedding),
    rows of `video_ids` only, sorted by video and snippet."""
    with storage.open_file(uri) as f:
        t = pq.read_table(f, columns=["video_id", "snippet_index", "start_s", "end_s", embedding_column])
    if embedding_column != "visual_embedding":
        t = t.rename_columns(["video_id", "snippet_index", "start_s", "end_s", "visual_embedding"])
    if video_ids is not None:
        import pyarrow.compute as pc

        t = t.filter(pc.is_in(t.column("video_id"), pa.array(sorted(video_ids), pa.string())))
    return t.sort_by([("video_id", "ascending"), ("snippet_index", "ascending")])


def _by_video(t: pa.Table) -> dict[str, list[np.ndarray]]:
    return idx.snippet_columns_by_video(t, ["snippet_index", "start_s", "end_s", "visual_embedding"])


# ----------------------------------------------------------------------------------- planning


def _camera_rule(index: str, given: str | None) -> tuple[str | None, str | None, str]:
    """(rule, archive, note): the camera rule of the index's runs (or `given`), and why."""
    manifests = idx.read_manifests(index)
    args = [m.get("args") or {} for m in manifests]
    archives = {a.get("archive") for a in args if a.get("archive")}
    archive = sorted(archives)[0] if len(archives) == 1 else None
    if given:
        try:
            if "camera" not in re.compile(given).groupindex:
                raise ExvadError(f"--camera-pattern {given!r} has no group named camera, e.g. (?P<camera>cam\\d+)")
        except re.error as exc:
            raise ExvadError(f"--camera-pattern {given!r} is not a regular expression: {exc}") from exc
        return given, archive, "cameras from --camera-pattern"
    rules = {a.get("camera_pattern") for a in args}
    if len(rules) == 1 and None not in rules:
        return rules.pop(), archive, "cameras from the runs' --camera-pattern"
    if len(rules) > 1:
        return None, archive, "runs used different camera rules: global bank only"
    return None, archive, ("no camera rule (the partition is the first folder, which may be a class folder "
                           "in a UCF layout): global bank only")


def _newest_false_alarms(labels: str) -> list[dict[str, Any]]:
    """The newest verdict per segment, where it is a false alarm: read before the index, so that
    the videos they name are among the rows the fit keeps (`_scan_videos`)."""
    newest: dict[str, dict[str, Any]] = {}
    for r in read_labels(labels, current=False).to_pylist():
        if r["source"] == FEEDBACK and r.get("segment_id"):
            newest[r["segment_id"]] = r
    return [r for r in newest.values() if r["verdict"] == "false-alarm"]


def _false_alarms(alarms: list[dict[str, Any]], uri_to_id: dict[str, str], name_to_ids: dict[str, list[str]],
                  fps: dict[str, float]) -> dict[str, list[tuple[float, float]]]:
    """{video_id: [(start_s, end_s)]} of the false alarms (`_newest_false_alarms`)."""
    out: dict[str, list[tuple[float, float]]] = {}
    for r in alarms:
        vid = uri_to_id.get(r["video_uri"] or "")
        if vid is None and len(name_to_ids.get(r["name"], [])) == 1:
            vid = name_to_ids[r["name"]][0]
        if vid is None:
            log.info("false alarm on %s: video not in the index, skipped", r["video_uri"] or r["name"])
            continue
        rate = r["fps"] or fps.get(vid) or 0.0
        if rate <= 0:
            continue
        for s in r["segments"] or []:
            out.setdefault(vid, []).append((s["start_frame"] / rate, s["end_frame"] / rate))
    return out


@dataclasses.dataclass
class _Scan:
    rows: list[dict[str, Any]]  # the videos the fit may use, each with its camera ("cam")
    cameras: set[str]  # every video's camera
    models: set[str | None]  # every video's visual model


def _scan_videos(index: str, rules: PartitionRules | None, lookup: LabelLookup | None,
                 alarms: list[dict[str, Any]]) -> _Scan:
    """One pass over the videos table, a page of files at a time: every video's camera and visual
    model, and the rows the fit may use: with labels only those the labels or a false alarm name
    (matched in Arrow), so the driver holds the labelled videos, not the archive; without, all."""
    cols = ["video_id", "uri", "name", "camera", "n_snippets", "fps", "visual_model"]
    keys = None if lookup is None else _match_keys(lookup, alarms)
    scan = _Scan([], set(), set())
    for t in iter_videos(index, cols):
        cams = [rules.camera(u) for u in t.column("uri").to_pylist()] if rules else \
            [c or "root" for c in t.column("camera").to_pylist()]
        scan.cameras.update(cams)
        scan.models.update(pc.unique(t.column("visual_model")).to_pylist())
        t = t.append_column("cam", pa.array(cams, pa.string()))
        scan.rows += (t if keys is None else rows_matching(t, *keys)).to_pylist()
    return scan


def _match_keys(lookup: LabelLookup, alarms: list[dict[str, Any]]) -> tuple[pa.Array, pa.Array]:
    """The URIs and names by which a label or a false alarm may name a video (`rows_matching`)."""
    uris = pa.array([r["video_uri"] or "" for r in alarms], pa.string())  # as `_false_alarms` looks them up
    names = pa.array([r["name"] for r in alarms], pa.string())
    return pc.unique(pa.concat_arrays([lookup.uris, uris])), pc.unique(pa.concat_arrays([lookup.names, names]))


def plan_fit(cfg: NormalityFitConfig) -> FitPlan:
    """Everything checked and decided before Ray starts (one ExvadError line per mistake)."""
    if cfg.split not in SPLITS:
        raise ExvadError(f"--split must be one of {', '.join(SPLITS)}, not {cfg.split!r}")
    bad = [s for s in cfg.calibrate_splits if s not in SPLITS or s == "test"]
    if bad:
        raise ExvadError(f"calibration splits must be train and/or val (never test), not {bad}")
    if cfg.per_hour <= 0:
        raise ExvadError(f"--false-alarms-per-hour must be positive, got {cfg.per_hour}")
    if cfg.k < 1 or cfg.bank_size < 1 or cfg.cap < cfg.bank_size:
        raise ExvadError(f"need k >= 1 and 1 <= bank size <= candidate cap (k {cfg.k}, bank {cfg.bank_size}, "
                         f"cap {cfg.cap})")
    if cfg.combine not in COMBINE_RULES:
        raise ExvadError(f"--combine must be one of {', '.join(COMBINE_RULES)}, not {cfg.combine!r}")
    if cfg.smooth < 1:
        raise ExvadError(f"--smooth must be at least 1 snippet, got {cfg.smooth}")
    if not 0 <= cfg.trim < 0.5:
        raise ExvadError(f"--trim must be in [0, 0.5), got {cfg.trim}")
    index = storage.normalize(cfg.index)
    if not storage.exists(storage.join(index, "videos")):
        raise ExvadError(f"no index at {cfg.index} (no videos table; run `exvad process` first)")
    if not any(t.num_rows for t in iter_videos(index, ["video_id"], page=16)):  # stops at the first row
        raise ExvadError(f"index {cfg.index} has no videos")
    version = idx.index_version(index)
    emb_col = renamed_columns("snippets", version).get("visual_embedding", "visual_embedding")
    files = idx.list_files(index, "snippets")
    if not files:
        raise ExvadError(f"index {cfg.index} has no snippets table: nothing to fit on")
    probe = read_snippet_file(files[0], emb_col)
    col = probe.column("visual_embedding")
    if probe.num_rows == 0 or col.null_count == probe.num_rows:
        raise ExvadError(f"index {cfg.index} has no snippet embeddings (visual_embedding is empty); "
                         "process the archive with a profile that stores them")
    sample = idx.embeddings_matrix(col.filter(col.is_valid()).slice(0, 64))
    if sample.shape[1] == 0:
        raise ExvadError(f"index {cfg.index} has no snippet embeddings (visual_embedding rows are empty)")
    layout = detect_layout(sample)

    rule, archive, note = _camera_rule(index, cfg.camera_pattern)
    if cfg.camera_pattern and not archive:
        raise ExvadError("--camera-pattern needs the archive's location, which the index's run manifests do not "
                         "record (or record several)")
    per_camera = rule is not None

    lookup, alarms = None, []
    if cfg.labels:
        lookup, alarms = label_lookup(cfg.labels), _newest_false_alarms(cfg.labels)
    rules = PartitionRules(archive, "", camera_pattern=rule) if cfg.camera_pattern and archive else None
    scan = _scan_videos(index, rules, lookup, alarms)
    videos = scan.rows
    if lookup is not None and per_camera:  # a partition the labels define is never a camera (UCF class folders)
        classes = {lab.lower() for r in read_labels(cfg.labels).to_pylist() for lab in (r["labels"] or [])}
        classes |= {c.lower() + "s" for c in classes} | {"normal_videos", "normal_videos_event", "testing_normal_videos_anomaly"}
        if {c.lower() for c in scan.cameras} & classes:
            per_camera, note = False, "the camera rule gives label classes (a class folder is not a camera): global bank only"

    known = sorted(scan.cameras)
    unknown = [c for c in cfg.cameras if c not in known]
    if unknown:
        raise ExvadError(f"unknown camera(s) {unknown}; the index has {', '.join(known)}")

    uri_to_id = {v["uri"]: v["video_id"] for v in videos}
    name_to_ids: dict[str, list[str]] = {}
    for v in videos:
        name_to_ids.setdefault(v["name"], []).append(v["video_id"])
    pins = _false_alarms(alarms, uri_to_id, name_to_ids, {v["video_id"]: v["fps"] or 0 for v in videos})

    plan_videos: dict[str, VideoInfo] = {}
    # held-out calibration footage when --calibrate-on leaves the bank's split out; the bank's own videos
    # (leave-one-video-out) are scored too, for a bank with fewer than 2 held-out videos
    calibrate_splits = tuple(dict.fromkeys((*cfg.calibrate_splits, cfg.split)))
    for v in videos:
        vid = v["video_id"]
        if cfg.cameras and v["cam"] not in cfg.cameras:
            continue
        held_out = False
        if lookup is not None:
            lab = lookup(v["name"], v["uri"])
            normal = lab is not None and normal_labels(lab["labels"])  # any spelling of "Normal", as scoring decides
            bank = normal and lab["split"] == cfg.split
            calib = normal and lab["split"] in calibrate_splits
            held_out = calib and not bank
        else:
            bank = calib = True
        pinned = pins.get(vid, [])
        if bank or calib or pinned:
            plan_videos[vid] = VideoInfo(vid, v["uri"], v["name"], v["cam"] if per_camera else "",
                                         int(v["n_snippets"] or 0), bank, calib, pinned, held_out)
    in_bank = [v for v in plan_videos.values() if v.bank and v.n_snippets > 0]
    if not in_bank and not any(v.pinned for v in plan_videos.values()):
        what = (f"no Normal video of split {cfg.split!r} in {cfg.labels} is in the index" if cfg.labels
                else "the index's videos have no snippets")
        raise ExvadError(f"the normality bank would be empty: {what}")
    if len({v.video_id for v in plan_videos.values() if v.calibrate and v.n_snippets > 0}) < 2:
        raise ExvadError("calibration needs at least 2 normal videos (each is scored against the others)")

    # a camera gets its own bank with enough footage; the others use the global bank
    footage: dict[str, int] = {}
    for v in in_bank:
        footage[v.camera] = footage.get(v.camera, 0) + v.n_snippets
    banks = [GLOBAL] + (sorted(c for c, n in footage.items() if n >= cfg.min_camera_snippets) if per_camera else [])

    wanted = set(plan_videos)
    if idx.is_delta_index(index):  # Delta files hold blocks of videos: their ids from the id cache
        from exvad_ray.index import idmap

        snap, rows = idmap.file_rows(index, "snippets")
        rows = rows.filter(pc.is_in(rows.column("video_id"), value_set=pa.array(sorted(wanted), pa.string())))
        by_file = list(idmap.by_file(snap, rows))
    else:
        by_file = [(f, [v for v in file_video_ids(f) if v in wanted]) for f in files]
    return FitPlan(cfg, plan_videos, [(f, vs) for f, vs in by_file if vs], layout, emb_col, per_camera, rule, note,
                   banks, sorted({m or "" for m in scan.models} - {""}), sum(len(p) for p in pins.values()),
                   archive, calibrate_splits if lookup is not None else ())


# ----------------------------------------------------------------------------------- the job


def load_normality(uri: str) -> NormalityModel:
    """A saved model (its .npz or the folder `exvad normality fit --out` wrote) at any storage URI."""
    from exvad_ray.checkpoints import read_normality

    return NormalityModel.from_bytes(read_normality(uri))


def _init_ray(address: str | None) -> bool:
    """Start (or join) Ray; True when this call started it (and so shuts it down)."""
    import ray

    if ray.is_initialized():
        return False
    env = {k: os.environ[k] for k in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION",
                                      "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if k in os.environ}
    kwargs: dict[str, Any] = {"runtime_env": {"env_vars": env} if env else None, "include_dashboard": False}
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(**kwargs)
    import ray.data

    ray.data.DataContext.get_current().issue_detectors_config.detectors = []
    return True


def _pinned_mask(start: np.ndarray, end: np.ndarray, spans: Sequence[tuple[float, float]]) -> np.ndarray:
    m = np.zeros(len(start), bool)
    for a, b in spans:
        m |= (start < b) & (end > a)
    return m


def _keep_probability(plan: FitPlan, bank: str) -> float:
    total = sum(v.n_snippets for v in plan.videos.values() if v.bank and (bank == GLOBAL or v.camera == bank))
    return min(1.0, 2.0 * plan.config.cap / max(total, 1))


def _video_seed(seed: int, video_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{video_id}".encode()).digest()[:8], "little")


def _calibration_sample(plan: FitPlan) -> set[str]:
    """Calibration videos; when their footage exceeds the cap, a deterministic sample by video."""
    cal = sorted((v for v in plan.videos.values() if v.calibrate and v.n_snippets > 0), key=lambda v: v.video_id)
    total = sum(v.n_snippets for v in cal)
    if total <= plan.config.calibration_snippets:
        return {v.video_id for v in cal}
    ranked = sorted(cal, key=lambda v: _video_seed(plan.config.seed, v.video_id))
    out, n = set(), 0
    for v in ranked:
        if n >= plan.config.calibration_snippets:
            break
        out.add(v.video_id)
        n += v.n_snippets
    return out


class _BankRows:
    """Ray Data task of pass 1: one file -> the sampled bank rows (and all pinned rows) of its videos."""

    def __init__(self, plan: FitPlan):
        self.plan = plan
        self.files = dict(plan.files)
        self.p = {b: _keep_probability(plan, b) for b in plan.banks}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out: dict[str, list] = {k: [] for k in ("video_id", "snippet_index", "start_s", "pinned", "u", "vector")}
        plan = self.plan
        for uri in batch["uri"]:
            vids = set(self.files[str(uri)])
            for vid, (snip, start, end, vec) in _by_video(read_snippet_file(str(uri), plan.embedding_column, vids)).items():
                v = plan.videos[vid]
                pin = _pinned_mask(start, end, v.pinned)
                # one uniform draw per snippet: the global bank takes u < p(global), a camera's u < p(camera),
                # so each builder receives a uniform sample of its own footage
                p = max(self.p.get(v.camera, 0.0), self.p[GLOBAL])
                u = np.random.default_rng(_video_seed(plan.config.seed, vid)).random(len(snip))
                keep = pin | ((u < p) if v.bank else np.zeros(len(snip), bool))
                for key, val in (("video_id", np.full(int(keep.sum()), vid, object)), ("snippet_index", snip[keep]),
                                 ("start_s", start[keep]), ("pinned", pin[keep]), ("u", u[keep]),
                                 ("vector", vec[keep])):
                    out[key].append(val)
        if not out["vector"]:
            return {"video_id": np.zeros(0, object), "snippet_index": np.zeros(0, np.int64),
                    "start_s": np.zeros(0), "pinned": np.zeros(0, bool), "u": np.zeros(0),
                    "vector": np.zeros((0, plan.layout.dim), np.float32)}
        return {k: np.concatenate(v) for k, v in out.items()}


class _CalibrationRaw:
    """Ray Data task of pass 2: one file -> leave-one-video-out raw distances of its calibration
    videos against the global bank and their camera's bank."""

    def __init__(self, plan: FitPlan, model_ref: Any, wanted: set[str]):
        import ray

        self.plan, self.wanted = plan, wanted
        self.files = dict(plan.files)
        self.model = NormalityModel.from_bytes(ray.get(model_ref))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows: dict[str, list] = {k: [] for k in ("video_id", "bank", "seconds", "raw")}
        for uri in batch["uri"]:
            vids = set(self.files[str(uri)]) & self.wanted
            if not vids:
                continue
            for vid, (_snip, start, end, vec) in _by_video(read_snippet_file(str(uri), self.plan.embedding_column,
                                                                              vids)).items():
                v = self.plan.videos[vid]
                for bank in {GLOBAL, self.model.bank_for(v.camera or None)}:
                    raw, _n, _s = self.model.banks[bank].search(vec, exclude_video=vid)
                    rows["video_id"].append(vid)
                    rows["bank"].append(bank)
                    rows["seconds"].append(float(np.sum(end - start)))
                    rows["raw"].append(json.dumps(raw.round(6).tolist()))
        return {k: np.asarray(v, object if k != "seconds" else np.float64) for k, v in rows.items()}


def fit_normality(cfg: NormalityFitConfig, echo: Callable[[str], None] = print,
                  plan: FitPlan | None = None) -> tuple[NormalityModel, dict[str, Any]]:
    """Fit, calibrate and save the model at `cfg.out`; returns it and its model card."""
    import ray
    import ray.data

    from exvad_ray.checkpoints import save_normality

    t0 = time.time()
    plan = plan or plan_fit(cfg)
    n_bank = sum(v.n_snippets for v in plan.videos.values() if v.bank)
    echo(f"normality fit: {sum(v.bank for v in plan.videos.values())} videos ({n_bank} snippets) for the bank, "
         f"{plan.false_alarms} false-alarm segments pinned; banks: {', '.join(plan.banks)} ({plan.camera_note})")
    started = _init_ray(cfg.address)
    try:
        items = [{"uri": f} for f, _ in plan.files]
        ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), 200)))
        builders = {b: BankBuilder(plan.layout, cfg.cap, seed=cfg.seed + i) for i, b in enumerate(plan.banks)}
        keep_p = {b: _keep_probability(plan, b) for b in plan.banks}
        rows = 0
        for batch in ds.map_batches(_BankRows, fn_constructor_args=(plan,), batch_size=1, concurrency=(1, 2),
                                    batch_format="numpy").iter_batches(batch_size=2048, batch_format="numpy"):
            for vid in dict.fromkeys(batch["video_id"].tolist()):
                sel = batch["video_id"] == vid
                v = plan.videos[vid]
                for b in {GLOBAL, v.camera if v.camera in builders else GLOBAL}:
                    take = sel & (batch["pinned"] | (batch["u"] < keep_p[b]))
                    builders[b].add(vid, v.camera or "", batch["vector"][take], batch["snippet_index"][take],
                                    batch["start_s"][take], batch["pinned"][take])
            rows += len(batch["video_id"])
            echo(f"  bank pass: {rows} sampled snippets read")
        trim = 0.0 if cfg.labels else cfg.trim
        banks = {b: bb.build(cfg.bank_size, trim, cfg.k, cfg.seed) for b, bb in builders.items() if bb.n or bb.n_pinned}
        if GLOBAL not in banks:
            raise ExvadError("the normality bank is empty: no snippet of the selected footage was read")
        echo("  banks: " + ", ".join(f"{b} {len(bk)} entries (of {bk.sources['candidates']} candidates, "
                                     f"{bk.sources['trimmed']} trimmed)" for b, bk in banks.items()))
        weights = tuple(cfg.half_weights or (1.0,) * len(plan.layout.names))
        if len(weights) != len(plan.layout.names):
            raise ExvadError(f"--half-weights needs {len(plan.layout.names)} values ({', '.join(plan.layout.names)})")
        raw_model = NormalityModel(plan.layout, banks, {}, weights, rule=cfg.combine, smooth=cfg.smooth)
        wanted = _calibration_sample(plan)
        ref = ray.put(raw_model.to_bytes())
        series: dict[str, list[tuple[np.ndarray, float, bool]]] = {b: [] for b in banks}
        done = 0
        for batch in ds.map_batches(_CalibrationRaw, fn_constructor_args=(plan, ref, wanted), batch_size=1,
                                    concurrency=(1, 2), batch_format="numpy").iter_batches(batch_size=64,
                                                                                           batch_format="numpy"):
            for vid, bank, sec, raw in zip(batch["video_id"], batch["bank"], batch["seconds"], batch["raw"]):
                series[str(bank)].append((np.asarray(json.loads(raw), np.float64), float(sec),
                                          plan.videos[str(vid)].held_out))
            done += len(batch["bank"])
            echo(f"  calibration pass: {done} video scorings")
    finally:
        if started:
            ray.shutdown()
    calibrations, footage = {}, {}
    for b, s in series.items():
        held = [x for x in s if x[2]]
        if plan.prefer_held_out and len(held) >= 2:
            s = held
        footage[b] = "held-out" if all(x[2] for x in s) else "with leave-one-video-out"
        if len(s) < 2:
            raise ExvadError(f"bank {b}: calibration needs at least 2 normal videos, got {len(s)}")
        calibrations[b] = calibrate_bank([r for r, _, _ in s], [t for _, t, _ in s], weights, cfg.per_hour,
                                         rule=cfg.combine, smooth=cfg.smooth)
    model = NormalityModel(plan.layout, banks, calibrations, weights, rule=cfg.combine, smooth=cfg.smooth)
    model.card = model_card(plan, model, time.time() - t0, footage)
    save_normality(model, cfg.out)
    echo(f"normality model written to {cfg.out} ({time.time() - t0:.0f} s); global threshold: percentile "
         f"{calibrations[GLOBAL].threshold.threshold:.5f} ({calibrations[GLOBAL].threshold.method}, "
         f"{cfg.per_hour:g} false alarm(s) per camera-hour)")
    return model, model.card


def model_card(plan: FitPlan, model: NormalityModel, fit_s: float, footage: dict[str, str]) -> dict[str, Any]:
    """`footage`: per bank, what calibrated it ("held-out", or "with leave-one-video-out")."""
    cfg = plan.config
    vids = plan.videos.values()
    return {
        "kind": "exvad-normality",
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "fit_s": round(fit_s, 1),
        "sources": {"index": storage.normalize(cfg.index), "archive": plan.archive,
                    "labels": cfg.labels and storage.normalize(cfg.labels)},
        "labels_used": {"labels": bool(cfg.labels), "split": cfg.split if cfg.labels else None,
                        "calibration_splits": list(plan.calibrate_splits) if cfg.labels else None,
                        "calibration_footage": dict(footage),
                        "bank_videos": sum(v.bank for v in vids), "calibration_videos": sum(v.calibrate for v in vids),
                        "false_alarm_segments": plan.false_alarms,
                        "selection": ("Normal videos of the split" if cfg.labels else
                                      f"all footage, most isolated {cfg.trim:.1%} trimmed")},
        "feature_model": {"visual_model": plan.feature_models, "layout": model.layout.to_dict()},
        "cameras": {"per_camera": plan.per_camera, "rule": plan.camera_rule, "note": plan.camera_note,
                    "banks": list(model.banks), "min_camera_snippets": cfg.min_camera_snippets},
        "sizes": {b: bk.sources for b, bk in model.banks.items()},
        "settings": {"k": cfg.k, "bank_size": cfg.bank_size, "cap": cfg.cap, "trim": cfg.trim if not cfg.labels else 0.0,
                     "half_weights": list(model.half_weights), "combine": model.rule, "smooth": model.smooth,
                     "false_alarms_per_hour": cfg.per_hour,
                     "calibration_snippets": cfg.calibration_snippets, "seed": cfg.seed},
        "calibration": {b: c.threshold.to_dict() for b, c in model.calibrations.items()},
    }
