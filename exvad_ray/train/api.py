"""One entry point for `exvad train` and jobs/train_detector.py: load data, get class embeddings,
run Ray Train, select on val, export model.pt and the model card beside it, optionally score test."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import platform
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from exvad_ray import storage
from exvad_ray.checkpoints import CHECKPOINT_FILE, save_detector
from exvad_ray.detector import DetectorConfig
from exvad_ray.errors import ExvadError
from exvad_ray.train.data import VideoRecord, conform, feature_dim, load_index_records, split_records
from exvad_ray.detector.presets import get_preset
from exvad_ray.train.vadclip import load_vadclip_records
from exvad_ray.train.loop import TrainConfig, train_config
from exvad_ray.train.ray_job import RayTrainSettings, TrainOutcome, run_ray_training

log = logging.getLogger(__name__)


def class_embeddings_for(label_set: str, profile: str = "tiny", k: int = 4) -> tuple[np.ndarray, list[str]]:
    """Label-augmented class embeddings (C,D) and class names (Normal first) from the models API.
    The only place that calls it, so tests can pass constructed embeddings instead."""
    try:
        from exvad_ray.models import label_set_embeddings
    except ImportError as exc:
        raise ExvadError(f"the models subsystem cannot compute class embeddings here: {exc}") from exc
    emb, names = label_set_embeddings(label_set, profile, k=k)
    if names[0].lower() != "normal":
        raise ExvadError(f"label set {label_set}: class 0 must be Normal, got {names[0]!r}")
    return np.asarray(emb, np.float32), names


def load_embeddings_file(uri: str) -> tuple[np.ndarray, list[str]]:
    """`.npz` with arrays `embeddings` (C,D) and `class_names` (C,): class embeddings computed elsewhere."""
    import io

    with np.load(io.BytesIO(storage.read_bytes(uri)), allow_pickle=False) as z:
        if "embeddings" not in z or "class_names" not in z:
            raise ExvadError(f"{uri} must hold arrays 'embeddings' and 'class_names'")
        return z["embeddings"].astype(np.float32), [str(n) for n in z["class_names"]]


@dataclass
class DataSource:
    """Where labelled videos come from: the archive indexes + labels, or VadCLIP feature lists."""

    snippets: str | None = None
    videos: str | None = None
    labels: str | None = None
    vadclip_train_csv: str | None = None
    vadclip_val_csv: str | None = None
    vadclip_test_csv: str | None = None
    vadclip_dataset: str = "ucf"
    feature_root: str | None = None
    annotations: str | None = None
    crops: str = "one"

    def describe(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    def load(self) -> list[VideoRecord]:
        if self.snippets or self.videos or self.labels:
            if not (self.snippets and self.videos and self.labels):
                raise ExvadError("--labels goes with --index (or --snippets and --videos)")
            return load_index_records(self.snippets, self.videos, self.labels)
        recs: list[VideoRecord] = []
        for uri, split in ((self.vadclip_train_csv, "train"), (self.vadclip_val_csv, "val"), (self.vadclip_test_csv, "test")):
            if uri:
                recs += load_vadclip_records(uri, split, self.vadclip_dataset, self.feature_root,
                                             self.annotations if split != "train" else None,
                                             self.crops if split == "train" else "one")
        if not recs:
            raise ExvadError("no data given: use --snippets/--videos/--labels or --vadclip-train CSV")
        return recs


@dataclass
class TrainRequest:
    data: DataSource
    out: str  # folder/prefix for model.pt, model_card.json, model_card.md
    class_embeddings: np.ndarray
    class_names: list[str]
    label_set: str = "custom"
    detector: dict[str, Any] = field(default_factory=dict)  # DetectorConfig overrides (over the preset's)
    train: TrainConfig | None = None  # None: train_config(preset); else taken as given
    preset: str | None = None  # "ucf" | "xd": VadCLIP's hyper-parameters (exvad_ray.detector.presets)
    ray: RayTrainSettings = field(default_factory=RayTrainSettings)
    init_from: str | None = None
    evaluate_test: bool = True
    torch_threads: int | None = None
    profile_detector: dict[str, Any] = field(default_factory=dict)  # the profile's detector defaults (under the preset)
    false_alarms_per_hour: float = 1.0  # the calibrated threshold's target on the val split's Normal videos

    def __post_init__(self) -> None:
        if self.preset is not None:
            get_preset(self.preset)  # unknown names fail here, before any data is read
        if self.train is None:
            self.train = train_config(self.preset)


def _versions() -> dict[str, str]:
    import ray
    import torch

    import exvad_ray

    return {"exvad_ray": getattr(exvad_ray, "__version__", "0.1.0"), "torch": torch.__version__,
            "ray": ray.__version__, "numpy": np.__version__, "python": platform.python_version()}


def _split_summary(records: Sequence[VideoRecord]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for split in ("train", "val", "test"):
        rs = split_records(records, split)
        if rs:
            out[split] = {"videos": len(rs), "snippets": int(sum(r.n_snippets for r in rs)),
                          "with_explanation": sum(r.text_feature is not None for r in rs),
                          "with_segments": sum(bool(r.segments) for r in rs),
                          "labels": dict(Counter(lab for r in rs for lab in r.labels))}
    return out


def model_card(req: TrainRequest, records: Sequence[VideoRecord], outcome: TrainOutcome,
               det_cfg: DetectorConfig, test_metrics: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "model": "Ex-VAD detector (LGT-Adapter + explanation fusion + label-augmented alignment)",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "data": {"source": req.data.describe(), "splits": _split_summary(records)},
        "label_set": {"name": req.label_set, "class_names": req.class_names},
        "selection": {"split": "val", "metric": req.train.select_metric, "best_epoch": outcome.best_epoch,
                      "val_metrics": outcome.best_metrics},
        "test_metrics": test_metrics,
        "history": outcome.history,
        "preset": _preset_card(req.preset),
        "config": {"detector": det_cfg.to_dict(), "train": req.train.to_dict(),
                   "ray": req.ray.__dict__, "warm_start_from": req.init_from},
        "lineage": lineage(req),
        "ray_checkpoint": outcome.checkpoint_path,
        "versions": _versions(),
        "wall_s": outcome.wall_s,
    }


def lineage(req: TrainRequest) -> dict[str, Any]:
    """Where this detector comes from: the parent it was warm-started from and the labels it saw."""
    from exvad_ray.index.labels import batch_digest, current_view, read_history
    from exvad_ray.checkpoints import checkpoint_uri, detector_id, model_card_uri

    out: dict[str, Any] = {"parent": None, "labels": None}
    if req.init_from:
        parent = storage.normalize(checkpoint_uri(req.init_from))
        card_uri = model_card_uri(parent)
        pcard = json.loads(storage.read_bytes(card_uri)) if storage.exists(card_uri) else {}
        out["parent"] = {"uri": parent, "detector_id": detector_id(parent), "created": pcard.get("created"),
                         "parent": (pcard.get("lineage") or {}).get("parent")}
    if req.data.labels:
        hist = read_history(req.data.labels)
        cur = current_view(hist)
        added = [t for t in hist.column("added_at").to_pylist() if t is not None]
        out["labels"] = {"uri": storage.normalize(req.data.labels), "rows": hist.num_rows, "videos": cur.num_rows,
                         "sources": dict(Counter(hist.column("source").to_pylist())),
                         "verdicts": dict(Counter(v for v in hist.column("verdict").to_pylist() if v)),
                         "newest_added_at": max(added).isoformat() if added else None,
                         "current_view_digest": batch_digest(cur)}
    return out


def _preset_card(name: str | None) -> dict[str, Any] | None:
    """The preset the run started from, with the source of each value (explicit settings override
    them; `config` holds what was used)."""
    if name is None:
        return None
    p = get_preset(name)
    return {"name": p.name, "description": p.description, "detector": p.detector, "train": p.train,
            "sources": p.sources}


def _card_markdown(card: dict[str, Any]) -> str:
    lines = [f"# Model card: {card['model']}", "", f"Created {card['created']}.", "",
             f"Label set `{card['label_set']['name']}`: {', '.join(card['label_set']['class_names'])}.", "",
             "## Data", "", "| split | videos | snippets | with explanation | with segments |", "|---|---|---|---|---|"]
    for split, s in card["data"]["splits"].items():
        lines.append(f"| {split} | {s['videos']} | {s['snippets']} | {s['with_explanation']} | {s['with_segments']} |")
    det = card["config"]["detector"]
    preset = card.get("preset")
    lines += ["", "## Detector", "", f"Preset: {preset['description'] if preset else 'none (project defaults)'}. "
              f"embed_dim {det['embed_dim']}, visual_dim {det.get('visual_dim') or det['embed_dim']}, "
              f"layers {det['layers']}, attention block {det['attention_block']} snippets, fusion {det['fusion']}, "
              f"class pooling {det.get('class_pooling', 'sigmoid')}, reference parity {det.get('reference_parity', False)}. "
              f"lr {card['config']['train']['lr']:g}, milestones {list(card['config']['train'].get('lr_milestones', []))}, "
              f"contrast weight {card['config']['train']['loss']['contrast']:g}."]
    sel = card["selection"]
    lines += ["", "## Selection", "", f"Best epoch {sel['best_epoch']} by `{sel['metric']}` on the validation split "
              "(never the test split).", "", "| metric | val | test |", "|---|---|---|"]
    test = card.get("test_metrics") or {}
    for k in sorted(set(sel["val_metrics"]) | {k for k, v in test.items() if isinstance(v, (int, float))}):
        v, t = sel["val_metrics"].get(k), test.get(k)
        fmt = lambda x: "" if x is None or x != x else f"{x:.4f}"  # noqa: E731
        lines.append(f"| {k} | {fmt(v)} | {fmt(t) if isinstance(t, (int, float)) else ''} |")
    cal = card.get("calibration") or {}
    if cal.get("threshold") is not None:
        fa = cal["false_alarms"]
        lines += ["", "## Calibrated threshold", "", f"Flags at score {cal['threshold']:.4f} (percentile "
                  f"{cal['percentile_threshold']:.5f} of the {cal['split']} split's {cal['normal_videos']} Normal videos, "
                  f"{fa['hours']:.2f} h): at most {fa['per_hour']:g} false alarm(s) per hour of normal footage "
                  f"({fa['method']}), instead of the fixed 0.5."]
    elif cal:
        lines += ["", "## Calibrated threshold", "", str(cal.get("note", "not calibrated: flags at 0.5"))]
    par, lab = (card.get("lineage") or {}).get("parent"), (card.get("lineage") or {}).get("labels")
    lines += ["", "## Lineage", "", f"Warm-started from `{par['uri']}` ({par['detector_id']})." if par else
              "Trained from scratch.", ""]
    if lab:
        lines += [f"Labels `{lab['uri']}`: {lab['videos']} videos from {lab['rows']} rows "
                  f"({', '.join(f'{k} {v}' for k, v in lab['sources'].items())}), newest {lab['newest_added_at']}.", ""]
    lines += ["", "## Versions", "", ", ".join(f"{k} {v}" for k, v in card["versions"].items()), ""]
    return "\n".join(lines)


def _raw_at(pmap: Any, percentile: float) -> float:
    """The raw score whose percentile of normal footage is `percentile` (the inverse of the map,
    through its exponential tail beyond the most unusual normal score)."""
    p = float(percentile)
    top = float(pmap.levels[-1])
    if p <= top:
        return float(np.interp(p, pmap.levels, pmap.values))
    return float(pmap.values[-1] + (-np.log1p(-min(p, 1 - 1e-12)) + np.log1p(-top)) * pmap.tail_scale)


def calibrate_detector(detector: Any, records: Sequence[VideoRecord], per_hour: float = 1.0,
                       split: str = "val") -> dict[str, Any]:
    """The detector's threshold calibrated like the normality model's (docs/NORMALITY.md): its scores on
    the Normal videos of `split` become percentiles of normal footage, and the threshold is set for
    `per_hour` false alarms per hour of that footage (`normality.calibrate_scores`), instead of the fixed
    0.5. `threshold` and `single_snippet_score` are on the detector's own score scale (what `exvad
    rescore --detector` and `exvad evaluate` flag at); `map` turns a score into its percentile (fusion).
    Without at least one normal video of `split` with a known frame rate: {"threshold": None, "note"}."""
    from exvad_ray.units import SNIPPET_FRAMES
    from exvad_ray.normality import calibrate_scores

    normal = [r for r in split_records(records, split) if r.is_normal and r.n_snippets]
    if not normal:
        return {"threshold": None, "note": f"no Normal video in split {split!r}: flags at 0.5"}
    series, seconds = [], []
    for r in normal:
        s, _p = detector.score(r.features, r.text_feature)
        series.append(np.asarray(s, np.float64))
        seconds.append(r.n_snippets * SNIPPET_FRAMES / float(r.fps or 30.0))
    cal = calibrate_scores(series, seconds, per_hour)
    t = cal.threshold
    return {"threshold": _raw_at(cal.map, t.threshold),
            "single_snippet_score": _raw_at(cal.map, t.localization().single_snippet_score),
            "percentile_threshold": t.threshold, "false_alarms": t.to_dict(), "split": split,
            "normal_videos": len(normal), "frame_rate_assumed": any(not r.fps for r in normal),
            "map": cal.map.to_dict()}


def detector_config(req: TrainRequest, visual_dim: int) -> DetectorConfig:
    """The detector's shape from the data: embed_dim is the class-embedding (text) space; visual
    features of another size get a learned input projection (visual_dim). Called before Ray starts,
    so it also checks the checkpoint a warm start reads (one line, not a worker's traceback)."""
    if req.init_from:
        from exvad_ray.checkpoints import check_checkpoint

        check_checkpoint(req.init_from, "--init-from")
    emb = np.asarray(req.class_embeddings)
    if emb.ndim != 2 or emb.shape[0] != len(req.class_names):
        raise ExvadError(f"class embeddings {emb.shape} do not fit {len(req.class_names)} classes")
    embed_dim = int(emb.shape[1])
    preset = dict(get_preset(req.preset).detector) if req.preset else {}
    profile = dict(req.profile_detector)
    if "visual_offset" not in preset | req.detector and int(profile.get("visual_offset") or 0) >= visual_dim:
        # the profile's offset is for the features it makes (lite: [appearance | motion], 2560 values); others
        # (lite indexes made before motion, VadCLIP feature lists) are read whole
        log.info("features of %d values are not the profile's layout: the detector reads all of them "
                 "(not from value %s on)", visual_dim, profile.pop("visual_offset"))
    chosen = profile | preset | req.detector
    offset = int(chosen.get("visual_offset") or 0)
    if not 0 <= offset < visual_dim:
        raise ExvadError(f"--visual-offset {offset}: the detector would read snippet features from value {offset} "
                         f"on, but these features have {visual_dim} values")
    width = visual_dim - offset
    if width != embed_dim:
        log.info("visual features have %d values (read from %d on), class embeddings %d: a learned projection "
                 "maps %d -> %d", visual_dim, offset, embed_dim, width, embed_dim)
    base = {"embed_dim": embed_dim, "visual_dim": None if width == embed_dim else width,
            "num_classes": len(req.class_names)}
    return DetectorConfig(**(base | chosen))


def train_detector(req: TrainRequest, records: Sequence[VideoRecord] | None = None,
                   det_cfg: DetectorConfig | None = None) -> tuple[TrainOutcome, dict[str, Any]]:
    """Train, select on val, write `<out>/model.pt`, `<out>/model_card.json` and `.md`. `det_cfg` is
    `detector_config(req, ...)` when the caller already made it (the CLI does, before Ray starts)."""
    from exvad_ray.eval.evaluate import evaluate_records
    from exvad_ray.checkpoints import detector_id

    recs = list(records) if records is not None else req.data.load()
    recs = conform(recs, req.class_names)
    det_cfg = det_cfg or detector_config(req, feature_dim(recs))
    train, val, test = (split_records(recs, s) for s in ("train", "val", "test"))
    if not val:
        log.warning("no validation split: the last epoch is exported (selection needs split 'val')")
    outcome = run_ray_training(train, val, req.class_names, req.class_embeddings, det_cfg, req.train, req.ray,
                               init_from=req.init_from, torch_threads=req.torch_threads)
    test_metrics = None
    if req.evaluate_test and test:
        rep = evaluate_records(outcome.detector, test, req.class_names)
        test_metrics = rep.to_dict()
        test_metrics.pop("videos", None)
    card = model_card(req, recs, outcome, det_cfg, test_metrics)
    card["calibration"] = calibrate_detector(outcome.detector, recs, req.false_alarms_per_hour)
    outcome.detector.meta = {"label_set": req.label_set, "best_epoch": outcome.best_epoch,
                             "val_metrics": outcome.best_metrics, "created": card["created"]}
    save_detector(outcome.detector, storage.join(req.out, CHECKPOINT_FILE))
    card["detector_id"] = detector_id(storage.join(req.out, CHECKPOINT_FILE))
    storage.write_bytes(storage.join(req.out, "model_card.json"), json.dumps(card, indent=2, default=str).encode())
    storage.write_bytes(storage.join(req.out, "model_card.md"), _card_markdown(card).encode())
    return outcome, card
