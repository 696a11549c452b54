"""Detector settings compared on the same features and seeds (`python bench/train.py --quality`;
see bench/train.py). Records a section of bench/RESULTS.md and `detector_quality.*` keys."""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from _results import record, table
from exvad_ray.detector import DetectorConfig
from exvad_ray.detector.presets import PRESETS
from exvad_ray.train.data import VideoRecord, split_records
from exvad_ray.train.loop import fit_local, train_config

METRICS = ("auc", "ap", "map_avg", "accuracy")
E2E = {"lr": 1e-3, "epochs": 30, "batch_size": 16}  # bench/e2e_synth.py's training settings
OLD_DETECTOR = {"class_pooling": "sigmoid"}  # before issue 16 (the add-fusion bias bug is not reproducible)
OLD_TRAIN = {"lr_milestones": (), "loss": {"contrast": 1.0}}
REF_POOL, REF_SCHED, REF_CONTRAST = {"class_pooling": "logits"}, {"lr_milestones": (4, 8)}, {"loss": {"contrast": 0.1}}


def variants(presets: Sequence[str], regimes: Sequence[str], ablate: bool
             ) -> list[tuple[str, str | None, dict[str, Any], dict[str, Any]]]:
    """(name, preset, detector overrides, train overrides). Regimes: `defaults` = `exvad train`
    without options (10 epochs, lr 1e-4, batch 64), `e2e` = e2e_synth's settings (30 epochs, lr 1e-3,
    batch 16). Per regime the old and the new defaults and, with `ablate`, the old ones with one
    reference choice switched on at a time; then the presets as they are."""
    out = []
    for regime in regimes:
        base = E2E if regime == "e2e" else {}
        out += [(f"{regime}, old", None, OLD_DETECTOR, base | OLD_TRAIN), (f"{regime}, new", None, {}, base)]
        if ablate:
            out += [(f"{regime}, old + reference pooling (logits)", None, REF_POOL, base | OLD_TRAIN),
                    (f"{regime}, old + reference schedule [4, 8]", None, OLD_DETECTOR, base | OLD_TRAIN | REF_SCHED),
                    (f"{regime}, old + reference contrast 0.1", None, OLD_DETECTOR, base | OLD_TRAIN | REF_CONTRAST)]
    return out + [(f"preset {p}", p, {}, {}) for p in presets]


def archive_records(work: str, profile: str) -> tuple[list[VideoRecord], np.ndarray, list[str]]:
    """The synthetic archive processed once with `profile` (kept under `work` for later runs)."""
    from exvad_ray.cli import main as exvad
    from exvad_ray.train.api import class_embeddings_for
    from exvad_ray.train.data import conform, load_index_records

    if profile == "tiny":
        os.environ.setdefault("EXVAD_TINY_MODELS", os.path.join(work, "tiny-models"))
        if not os.path.isdir(os.environ["EXVAD_TINY_MODELS"]):
            exvad(["models", "make-tiny", os.environ["EXVAD_TINY_MODELS"]])
    archive, index = os.path.join(work, "archive"), os.path.join(work, f"index-{profile}")
    if not os.path.isdir(os.path.join(archive, "annotations")) and exvad(["synth", archive, "--workers", "2", "-q"]) != 0:
        raise SystemExit("exvad synth failed")
    # the labels table: a folder (labels branch) or, in archives written before it, one Parquet file
    labels = next(p for p in (os.path.join(archive, "annotations", n) for n in ("labels", "labels.parquet"))
                  if os.path.exists(p))
    if not os.path.isdir(os.path.join(index, "snippets")) and exvad(
            ["process", "--archive", archive, "--index", index, "--label-set", "synthetic", "--explainer", "none",
             "--profile", profile, "--json"]) != 0:
        raise SystemExit("exvad process failed")
    emb, names = class_embeddings_for("synthetic", profile)
    recs = load_index_records(os.path.join(index, "snippets"), os.path.join(index, "videos"), labels)
    return conform(recs, names), emb, names


def signal_records(dim: int = 64) -> tuple[list[VideoRecord], np.ndarray, list[str]]:
    from exvad_ray.train.synthetic import synthetic_feature_set

    names = ["Normal", "Fight", "Fire", "Theft", "Arson"]
    tr, emb = synthetic_feature_set(names, n_per_class=8, n_normal=32, dim=dim, signal=0.5, seed=0)
    va, _ = synthetic_feature_set(names, n_per_class=3, n_normal=12, dim=dim, signal=0.5, seed=1, split="val")
    te, _ = synthetic_feature_set(names, n_per_class=5, n_normal=20, dim=dim, signal=0.5, seed=2, split="test")
    return tr + va + te, emb, names


def run_variant(recs: list[VideoRecord], emb: np.ndarray, names: list[str], preset: str | None,
                det: dict[str, Any], train: dict[str, Any], seed: int) -> dict[str, float]:
    from exvad_ray.eval.evaluate import evaluate_records

    base = dict(PRESETS[preset].detector) if preset else {}
    dim = recs[0].features.shape[1]
    det_cfg = DetectorConfig(**({"embed_dim": emb.shape[1], "visual_dim": None if dim == emb.shape[1] else dim,
                                 "num_classes": len(names)} | base | det))
    cfg = train_config(preset, **(train | {"seed": seed}))
    torch.manual_seed(seed)
    detector, _ = fit_local(split_records(recs, "train"), split_records(recs, "val"), names, emb, det_cfg, cfg)
    rep = evaluate_records(detector, split_records(recs, "test"), names).summary()
    return {k: float(rep.get(k, float("nan"))) for k in METRICS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--profile", default="tiny", help="model profile that processes the archive (default tiny)")
    ap.add_argument("--preset", default="all", help="ucf, xd, all or none (which presets to add)")
    ap.add_argument("--data", choices=["archive", "signal", "both"], default="both",
                    help="the processed synthetic archive, the synthetic feature set with a known signal, or both")
    ap.add_argument("--regimes", default="defaults,e2e", help="defaults, e2e or both (comma-separated)")
    ap.add_argument("--ablate", action="store_true", help="add the one-switch-at-a-time variants")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--work", default="/tmp/exvad-train-quality", help="archive and index, processed once")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    presets = sorted(PRESETS) if args.preset == "all" else [] if args.preset == "none" else [args.preset]
    seeds = [int(s) for s in args.seeds.split(",")]
    for dname in (["archive", "signal"] if args.data == "both" else [args.data]):
        t0 = time.perf_counter()
        recs, emb, names = archive_records(args.work, args.profile) if dname == "archive" else signal_records()
        prep_s = time.perf_counter() - t0
        label = f"archive, {args.profile} profile" if dname == "archive" else "synthetic features with a known signal"
        rows, flat = [], {}
        t0 = time.perf_counter()
        for vname, preset, det, train in variants(presets, args.regimes.split(","), args.ablate):
            runs = [run_variant(recs, emb, names, preset, det, train, s) for s in seeds]
            cells = []
            for m in METRICS:
                vals = [r[m] for r in runs]
                mean = statistics.fmean(vals)
                key = dname if dname == "signal" else f"archive_{args.profile}"
                flat[f"detector_quality.{key}{'.ablation' if args.ablate else ''}.{vname}.{m}"] = round(mean, 4)
                cells.append(f"{mean:.3f} ({min(vals):.3f}-{max(vals):.3f})" if m != "map_avg"
                             else f"{mean:.1f} ({min(vals):.1f}-{max(vals):.1f})")
            rows.append([vname, *cells])
            print(label, vname, cells, flush=True)
        n = {s: len(split_records(recs, s)) for s in ("train", "val", "test")}
        body = (f"{label}: {n['train']} train / {n['val']} val / {n['test']} test videos, D={recs[0].features.shape[1]}"
                f"{f' (archive processed once, {prep_s:.0f} s with class embeddings)' if dname == 'archive' else ''}. "
                f"Same features and seeds {args.seeds} for every variant (mean, min-max); plain training loop (the "
                "Ray job's loop, balanced batches, selection on val by auc_acc), test scored once. `old` = the "
                "settings before issue 16 (sigmoid pooling, contrast weight 1, constant lr; the add-fusion "
                "training bias is fixed in both), `new` = today's defaults, `old + reference X` = old with one "
                "of VadCLIP's choices switched on; `defaults` = `exvad train` without options (10 epochs, lr "
                "1e-4, batch 64), `e2e` = bench/e2e_synth.py's training settings (30 epochs, lr 1e-3, batch 16); "
                "presets = VadCLIP's "
                f"values as they are (docs/DETECTOR.md). {time.perf_counter() - t0:.0f} s of training.\n\n"
                + table(["variant", "test frame AUC", "AP", "mAP avg %", "video accuracy"], rows))
        record(f"Detector settings on the same features: {label}{', one switch at a time' if args.ablate else ''}",
               body, flat)
        print(body)
