"""Label-free normality (issue 22): quality on the demo archive and scale on synthetic snippets.

    python bench/normality.py demo  [--workdir demo-output] [--record]
    python bench/normality.py scale [--snippets 1000000] [--record]
    python bench/normality.py all   [--workdir ...] [--record]
    python bench/normality.py rules    --workdir A,B,... [--record]  (fusion rules, development archives)
    python bench/normality.py weights  --workdir A,B,... [--record]  (the weight's metric, development archives)
    python bench/normality.py shipped  --workdir A,B,... [--record]  (`exvad rescore` + `evaluate --scoring`)
    python bench/normality.py training --workdir A,B,... --seeds 1,2,... [--demo BEFORE,AFTER] [--record]
                                       (the demo's detector recipe: epochs and lr, development archives)

Development archives: `exvad demo`'s steps on the generator's other seeds, e.g.
`run_demo("dev1", seed=1, synth=SynthConfig(seed=1, workers=2))` (exvad_ray.cli.demo); never the demo's test split.

demo: after `exvad demo --workdir W` (W/index is the rescored index, W/s3 the archive's S3 data with
the labels table). The normality model is fitted by the real job (`fit_normality`, Ray Data) on the
train split's Normal videos and calibrated on val's Normal videos (EXVAD_BENCH_CALIBRATE=train,val: also
train's, leave-one-video-out, as first compared); the detector's stored snippet scores are calibrated
on val's Normal videos; the fusion weight is chosen on val (snippet AP, the library's WEIGHT_METRIC);
the fused score is calibrated on val's Normal videos. The test split is
only scored: frame AUC/AP (exvad_ray.eval.metrics, the figures `exvad evaluate` prints) of the
detector, normality alone and fused, and which test videos are flagged at the calibrated thresholds
(a video is flagged when the localisation rule flags one of its segments) next to the detector's
fixed 0.5 (its video rule).

scale: 1e6 synthetic snippets of lite's widths ([appearance | motion], 2 x 1280, each half unit-norm;
a mixture of scenes) streamed through the bounded `BankBuilder` in chunks, trimmed and reduced to the
bank; then leave-one-video-out calibration on a sample and scoring throughput (snippets/s, one process,
this machine). Peak RSS of the process at 1e5 and 1e6 snippets shows memory bounded by the cap/bank.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import machine, record  # noqa: E402

# --------------------------------------------------------------------------------------- demo


def _copy_labels(workdir: Path, dest: Path) -> str:
    """The demo's labels table lives in its S3 data: serve it again and copy it to a local folder."""
    from exvad_ray import storage
    from exvad_ray.storage.s3server import LocalS3Server, s3_environment

    shutil.rmtree(dest, ignore_errors=True)
    with LocalS3Server(str(workdir / "s3")) as server, s3_environment(server):
        fs, path = storage.filesystem("s3://archive/footage/annotations/labels")
        fs.get(path + "/", str(dest) + "/", recursive=True)
    return str(dest)


def _series(index: str, labels: str) -> dict[str, dict[str, Any]]:
    """Per labelled video: split, truth segments (snippet frames), features, stored detector scores,
    snippet seconds, camera, id."""
    from exvad_ray import index as idx
    from exvad_ray.train.data import load_index_records

    records = {r.name: r for r in load_index_records(f"{index}/snippets", f"{index}/videos", labels)}
    videos = idx.read_table(index, "videos", ["video_id", "name", "camera"]).to_pylist()
    snips = idx.read_table(index, "snippets", ["video_id", "snippet_index", "anomaly_score", "start_s", "end_s"])
    cols = idx.snippet_columns_by_video(snips, ["anomaly_score", "start_s", "end_s"])
    out = {}
    for v in videos:
        r = records.get(v["name"])
        if r is None or v["video_id"] not in cols:
            continue
        det, start, end = cols[v["video_id"]]
        out[v["name"]] = {"id": v["video_id"], "camera": v["camera"], "split": r.split, "labels": r.labels,
                          "segments": [(a, b) for a, b, _c in r.segments], "features": r.features,
                          "detector": np.asarray(det, np.float64), "seconds": float(np.sum(end - start)),
                          "normal": r.labels == ["Normal"] or not any(lab != "Normal" for lab in r.labels)}
    return out


def _truth(v: dict[str, Any]) -> np.ndarray:
    from exvad_ray.eval.metrics import frame_ground_truth

    gt = frame_ground_truth(len(v["detector"]), v["segments"])
    return gt.reshape(len(v["detector"]), -1).max(1)


def _flags(series: list[np.ndarray], threshold: float) -> list[bool]:
    from exvad_ray.normality import count_segments

    return [count_segments([s], threshold)[0] > 0 for s in series]


# the normality model's calibration splits: val, the fit's default (held-out footage); "train,val" for the
# leave-one-video-out calibration the rules were first compared under
CALIBRATE_SPLITS = tuple(os.environ.get("EXVAD_BENCH_CALIBRATE", "val").split(","))


def _fit(workdir: Path, labels: str, k: int, tmp: Path, combine: str) -> tuple[Any, float]:
    from exvad_ray.train.normality import NormalityFitConfig, fit_normality, load_normality

    t0 = time.time()
    cfg = NormalityFitConfig(index=str(workdir / "index"), out=str(tmp / f"model-k{k}"), labels=labels, split="train",
                             calibrate_splits=CALIBRATE_SPLITS, combine=combine, k=k, address="local")
    fit_normality(cfg, echo=lambda line: print(line, file=sys.stderr))
    return load_normality(str(tmp / f"model-k{k}")), time.time() - t0


def _variant(data: dict[str, dict[str, Any]], model: Any, k: int, reference: str,
             weight: float | str | None = None) -> dict[str, Any]:
    """One (k, fusion reference) variant: calibration and choices on val, figures on test. ``weight``:
    a fixed normality weight instead of the one chosen on val."""
    from exvad_ray.eval.metrics import frame_auc_ap
    from exvad_ray.normality import PercentileMap, calibrate_scores, choose_weight, count_segments, fuse

    split = lambda name: [v for v in data.values() if v["split"] == name]  # noqa: E731
    val, test = split("val"), split("test")
    val_normal = [v for v in val if v["normal"]]
    for v in data.values():
        s = model.score(v["features"], v["id"], v["camera"])
        v["evidence"], v["surprise"] = s, s.surprise
    det_cal = calibrate_scores([v["detector"] for v in val_normal], [v["seconds"] for v in val_normal])
    if reference == "normal":  # each part's surprise -log(1 - percentile of normal footage): unbounded, so a
        # fused tail beyond everything normal keeps its ranks and the fused threshold stays reachable
        n_map = lambda v: v["surprise"]  # noqa: E731
        d_map = lambda v: det_cal.map.surprise(v["detector"])  # noqa: E731
    else:  # each part as its rank among all footage of the validation split (no label needed)
        pn = PercentileMap.fit(np.concatenate([v["surprise"] for v in val]))
        pd = PercentileMap.fit(np.concatenate([v["detector"] for v in val]))
        if reference == "footage_s":  # the same ranks as surprises -log(1 - rank): unbounded like `normal`
            n_map = lambda v: pn.surprise(v["surprise"])  # noqa: E731
            d_map = lambda v: pd.surprise(v["detector"])  # noqa: E731
        else:
            n_map = lambda v: pn(v["surprise"])  # noqa: E731
            d_map = lambda v: pd(v["detector"])  # noqa: E731
    if weight is None or isinstance(weight, str):  # chosen on val: by the library's metric (None), by "auc" or
        # "ap"; "clamp": by AUC, at least 0.5 (val favours the detector it selected)
        from exvad_ray.normality import WEIGHT_METRIC

        metric = WEIGHT_METRIC if weight is None else "auc" if weight == "clamp" else weight
        chosen, _scores = choose_weight([n_map(v) for v in val], [d_map(v) for v in val], [_truth(v) for v in val],
                                        metric=metric)
        weight = max(chosen, 0.5) if weight == "clamp" else chosen
    for v in data.values():
        v["fused"] = fuse(n_map(v), d_map(v), weight)
    fused_cal = calibrate_scores([v["fused"] for v in val_normal], [v["seconds"] for v in val_normal])
    segs = [v["segments"] for v in test]
    normal = [v["normal"] for v in test]

    def counts(flags: list[bool]) -> dict[str, int]:
        return {"normal_flagged": int(sum(f and n for f, n in zip(flags, normal))), "normal": int(sum(normal)),
                "anomalous_flagged": int(sum(f and not n for f, n in zip(flags, normal))),
                "anomalous": int(sum(not n for n in normal))}

    flags_n = [len(v["evidence"].segments()) > 0 for v in test]
    flags_f = _flags([fused_cal(v["fused"]) for v in test], fused_cal.threshold.threshold)
    # the fused decisions' false alarms: segments flagged on the test split's Normal videos, per hour of them
    test_normal = [v for v in test if v["normal"]]
    alarms, _videos = count_segments([fused_cal(v["fused"]) for v in test_normal], fused_cal.threshold.threshold)
    normal_hours = sum(v["seconds"] for v in test_normal) / 3600
    rows = []
    for v, fn, ff in zip(test, flags_n, flags_f):
        s = v["evidence"]
        i = int(np.argmax(s.surprise))
        ev = s.evidence(i)
        near = next((w["split"] + "/" + n for n, w in data.items() if w["id"] == ev["nearest"]["video_id"]), "?")
        rows.append({"video": v["name"], "truth": "/".join(v["labels"]), "normality_flagged": fn, "fused_flagged": ff,
                     "peak_percentile": round(ev["percentile"], 6),
                     "peak_s": round(i * v["seconds"] / max(len(v["detector"]), 1), 1), "unusual": ev["unusual"],
                     "nearest": f"{near} @ {ev['nearest']['start_s']:.1f} s (cos {ev['nearest']['similarity']:.2f})"})
    cal = model.calibrations[model.bank_for(None)].threshold
    return {"k": k, "reference": reference, "weight": weight,
            "val_normality_auc": frame_auc_ap([v["surprise"] for v in val], [v["segments"] for v in val])[0],
            "val_fused_auc": frame_auc_ap([v["fused"] for v in val], [v["segments"] for v in val])[0],
            "auc": {"detector": frame_auc_ap([v["detector"] for v in test], segs),
                    "normality": frame_auc_ap([v["surprise"] for v in test], segs),
                    "fused": frame_auc_ap([v["fused"] for v in test], segs)},
            "counts": {"detector_0.5": counts([float(np.sort(v["detector"])[::-1][: len(v["detector"]) // 16 + 1].mean())
                                               >= 0.5 for v in test]),
                       "detector_calibrated": counts(_flags([det_cal(v["detector"]) for v in test],
                                                            det_cal.threshold.threshold)),
                       "normality": counts(flags_n), "fused": counts(flags_f)},
            "fused_false_alarms_per_hour": alarms / normal_hours if normal_hours else float("nan"),
            "thresholds": {"normality": cal.threshold, "normality_method": cal.method,
                           "detector": det_cal.threshold.threshold, "fused": fused_cal.threshold.threshold},
            "rows": rows}


# The detector's training recipes compared under the shipped fusion (name: epochs, lr); the demo's was 20 at 1e-4
TRAINING = {"e20_lr1e-4": (20, 1e-4), "e40_lr1e-4": (40, 1e-4), "e20_lr3e-4": (20, 3e-4)}


TRAINING_INTRO = (
    "Each development archive's detector retrained in one process (`fit_local`: the Ray job's loop and val "
    "selection) by each recipe, with the demo's batch 16 and the archive's seed, then fused with the same "
    "normality model as shipped (k 5, scale rank_surprise, the weight chosen on val by snippet AP); figures on "
    "the test split (4 normal, 8 anomalous videos). Why: with 20 epochs at 1e-4 the selected epoch was 16-19 "
    "of 20 and val AUC still rising on the demo and all five archives. Declared before any fused figure was "
    "computed: criterion = mean over the archives of (anomalous flagged / 8 - normal flagged / 4) at the fused "
    "calibrated threshold; the demo's recipe (e20_lr1e-4) stays unless another beats it by >= 0.05 on the "
    "criterion, or ties within 0.02 and beats it by >= 0.01 mean fused AP. 60 epochs at 1e-4 selected the same "
    "epochs as 40 on every archive (identical figures; not listed). Outcome: e20_lr3e-4 ties (0.525) with "
    "fused AP +0.011, so the demo trains at 3e-4; e40_lr1e-4 gains most in AP and in the detector alone "
    "(AUC +0.066) but is 0.025 lower on the criterion. False alarms per hour are over the test split's "
    "normal footage, about a minute per archive: one segment is about 60 per hour.")


K_INTRO = (
    "As the training-length comparison (its setup and criterion), with the demo's recipe now (20 epochs, 3e-4) "
    "and the normality model fitted once per k. Prompted by the demo's own comparison table (section 'demo "
    "archive'), where k 1 under the shipped scale reached fused AP 0.722 against k 5's 0.719 with the same "
    "decisions; declared before this table was computed: switch to k 1 only if it beats k 5 by >= 0.05 on the "
    "criterion, or ties within 0.02 and beats it by >= 0.01 mean fused AP. Outcome: k 5 stays (k 1 flagged "
    "3 more normal videos; mean fused AP within 0.002).")


def run_training(workdir: Path, seed: int, recipes: tuple[str, ...] = tuple(TRAINING),
                 ks: tuple[int, ...] = (5,)) -> dict[str, Any]:
    """The demo's detector retrained in one process per recipe (the Ray job's loop and val selection, the
    demo's batch 16 and `seed`), each fused with the same normality model as shipped (k 5, rank_surprise,
    the weight chosen on val): test figures of the detector alone and fused, and the fused decisions.
    `ks`: the normality model fitted with each of these k (5 is the fit's default)."""
    import torch

    from exvad_ray.cli.demo import LABEL_SET, PROFILE, train_config
    from exvad_ray.eval.evaluate import compute_report, score_records
    from exvad_ray.models.profiles import load_profile
    from exvad_ray.train.api import DataSource, TrainRequest, class_embeddings_for, detector_config
    from exvad_ray.train.data import conform, feature_dim, load_index_records, split_records
    from exvad_ray.train.loop import fit_local

    torch.set_num_threads(os.cpu_count() or 1)
    tmp = Path(tempfile.mkdtemp(prefix="normality-training-"))
    try:
        labels, data = _load(workdir, tmp)
        models = {k: _fit(workdir, labels, k, tmp, "mean")[0] for k in ks}
        index = str(workdir / "index")
        emb, names = class_embeddings_for(LABEL_SET, PROFILE)
        records = conform(load_index_records(f"{index}/snippets", f"{index}/videos", labels), names)
        req = TrainRequest(DataSource(snippets=f"{index}/snippets", videos=f"{index}/videos", labels=labels),
                           str(tmp / "detector"), emb, names, LABEL_SET,
                           profile_detector=load_profile(PROFILE).detector)
        det_cfg = detector_config(req, feature_dim(records))
        train, val = split_records(records, "train"), split_records(records, "val")
        out = []
        for name in recipes:
            epochs, lr = TRAINING[name]
            t0 = time.time()
            detector, history = fit_local(train, val, names, emb, det_cfg, train_config(seed, epochs, lr))
            train_s = time.time() - t0
            results = score_records(detector, records)
            for r in results:
                data[r.name]["detector"] = np.asarray(r.anomaly_scores, np.float64)
            report = compute_report([r for r in results if data[r.name]["split"] == "test"], names).summary()
            best = max(range(len(history)), key=lambda i: history[i].get("val_score", -np.inf))
            for k, model in models.items():
                x = _variant(data, model, k, "footage_s")
                out.append({"recipe": name, "k": k, "epochs": epochs, "lr": lr, "best_epoch": best + 1,
                            "train_s": train_s,
                            "weight": x["weight"], "detector": x["auc"]["detector"], "fused": x["auc"]["fused"],
                            "detector_accuracy": report["accuracy"], "detector_map_avg": report["map_avg"],
                            "fused_counts": x["counts"]["fused"], "detector_counts": x["counts"]["detector_0.5"],
                            "fused_false_alarms_per_hour": x["fused_false_alarms_per_hour"]})
                print(json.dumps({"workdir": workdir.name} | out[-1]), file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"workdir": str(workdir), "seed": seed, "recipes": out}


def _mean(xs: list[dict[str, Any]], f: Any) -> float:
    return float(np.mean([f(x) for x in xs]))


def _md_training(runs: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """Per archive and recipe, then the means and the declared criterion."""
    lines = ["| archive | recipe | best epoch | weight | detector AUC / AP | accuracy | mAP | fused AUC / AP | "
             "fused normal / anomalous flagged | fused false alarms per hour |", "|---" * 10 + "|"]
    by: dict[str, list[dict[str, Any]]] = {}
    several_k = len({x.get("k", 5) for run in runs for x in run["recipes"]}) > 1
    for run in runs:
        for x in run["recipes"]:
            label = f"{x['recipe']}, k {x.get('k', 5)}" if several_k else x["recipe"]
            by.setdefault(label, []).append(x)
            c = x["fused_counts"]
            lines.append(f"| {Path(run['workdir']).name} | {label} | {x['best_epoch']} | {x['weight']:.1f} | "
                         f"{x['detector'][0]:.3f} / {x['detector'][1]:.3f} | {x['detector_accuracy']:.3f} | "
                         f"{x['detector_map_avg']:.1f} | {x['fused'][0]:.3f} / {x['fused'][1]:.3f} | "
                         f"{c['normal_flagged']}/{c['normal']}, {c['anomalous_flagged']}/{c['anomalous']} | "
                         f"{x['fused_false_alarms_per_hour']:.1f} |")
    lines += ["", "| recipe | criterion | mean fused AUC / AP | mean detector AUC / AP | mean accuracy | "
              "normal / anomalous flagged (all archives) | mean fused false alarms per hour |", "|---" * 7 + "|"]
    flat: dict[str, Any] = {}
    for name, xs in by.items():
        crit = float(np.mean([x["fused_counts"]["anomalous_flagged"] / x["fused_counts"]["anomalous"]
                              - x["fused_counts"]["normal_flagged"] / x["fused_counts"]["normal"] for x in xs]))
        fused_auc, fused_ap = _mean(xs, lambda x: x["fused"][0]), _mean(xs, lambda x: x["fused"][1])
        det_auc, det_ap = _mean(xs, lambda x: x["detector"][0]), _mean(xs, lambda x: x["detector"][1])
        nf = sum(x["fused_counts"]["normal_flagged"] for x in xs)
        af = sum(x["fused_counts"]["anomalous_flagged"] for x in xs)
        n, a = sum(x["fused_counts"]["normal"] for x in xs), sum(x["fused_counts"]["anomalous"] for x in xs)
        lines.append(f"| {name} | {crit:.3f} | {fused_auc:.3f} / {fused_ap:.3f} | {det_auc:.3f} / {det_ap:.3f} | "
                     f"{_mean(xs, lambda x: x['detector_accuracy']):.3f} | {nf}/{n}, {af}/{a} | "
                     f"{_mean(xs, lambda x: x['fused_false_alarms_per_hour']):.1f} |")
        key = name.replace("-", "m").replace(".", "p").replace(", k ", "_k")
        flat[f"normality_training_{key}_criterion"] = round(crit, 4)
        flat[f"normality_training_{key}_fused_ap"] = round(fused_ap, 4)
        flat[f"normality_training_{key}_detector_auc"] = round(det_auc, 4)
    return "\n".join(lines), flat


def _md_training_demos(demos: list[dict[str, Any]]) -> str:
    """`shipped` figures of the demo before and after the recipe changed."""
    def cell(x: dict[str, Any]) -> str:
        return f"{x['auc']:.4f} / {x['ap']:.4f}, {x['normal_flagged']}/4 / {x['anomalous_flagged']}/8"

    rows = ["| demo workdir | detector at its 0.5: AUC / AP, normal / anomalous flagged | normality alone | "
            "fused | fusion weight (val) |", "|---" * 5 + "|"]
    for d in demos:
        rows.append(f"| {Path(d['workdir']).name} | {cell(d['detector'])} | {cell(d['normality'])} | "
                    f"{cell(d['fused'])} | {d['fusion']['weight']} |")
    return ("The demo (seed 0) through the shipped path (`shipped`), its detector trained by `exvad demo`'s Ray "
            "job at 1e-4 (before) and at 3e-4 (after), each once:\n\n" + "\n".join(rows))


def _load(workdir: Path, tmp: Path) -> tuple[str, dict[str, dict[str, Any]]]:
    """The archive's labels (copied under `tmp`) and its labelled videos' series, each with its name."""
    labels = _copy_labels(workdir, tmp / "labels")
    data = _series(str(workdir / "index"), labels)
    for name, v in data.items():
        v["name"] = name
    return labels, data


def run_demo(workdir: Path, combine: str = "mean", ks: tuple[int, ...] = (5, 1)) -> dict[str, Any]:
    """Every (k, fusion reference) variant; the one reported first is what `exvad rescore` ships: the fit's
    k (5) and the scale rank_surprise (each part's rank among val's footage as a surprise, `footage_s`),
    the weight chosen on val by the library's metric. The others are shown for comparison only."""
    tmp = Path(tempfile.mkdtemp(prefix="normality-bench-"))
    try:
        labels, data = _load(workdir, tmp)
        variants, fit_s, cards = [], {}, {}
        for k in ks:
            model, fit_s[k] = _fit(workdir, labels, k, tmp, combine)
            cards[k] = model.card
            for reference in ("footage_s", "normal", "footage"):
                variants.append(_variant(data, model, k, reference))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    chosen = next(x for x in variants if x["k"] == 5 and x["reference"] == "footage_s")
    return {"chosen": chosen, "variants": variants, "fit_s": fit_s, "card": cards[5], "combine": combine}


# Fusion rules compared on development archives (other seeds of the generator, never the demo's test):
# scale "val" = the reference with the better val fused AUC, as rescore chooses; weight None = chosen on
# val, "clamp" = chosen on val but at least 0.5, a number = fixed.
REFERENCES = ("normal", "footage", "footage_s")
WEIGHTS: tuple[float | str | None, ...] = ("auc", "clamp", 0.5)
RULES = tuple((s, w) for s in ("val", *REFERENCES) for w in WEIGHTS)
# the weight's metric under the shipped scale (ranks among val's footage as surprises = rank_surprise)
METRIC_RULES = tuple(("footage_s", w) for w in ("auc", "ap", "clamp", 0.5))


def run_rules(workdir: Path, combine: str = "mean", k: int = 5, rules: tuple = RULES) -> dict[str, Any]:
    """Every fusion rule of `rules` on one archive (its test split only scored); k fixed at the fit's default."""
    tmp = Path(tempfile.mkdtemp(prefix="normality-rules-"))
    try:
        labels, data = _load(workdir, tmp)
        model, fit_s = _fit(workdir, labels, k, tmp, combine)
        refs = {r for s, _w in rules for r in (("normal", "footage") if s == "val" else (s,))}
        by_ref = {ref: {w: _variant(data, model, k, ref, w) for w in {w for _s, w in rules}} for ref in refs}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = []
    for scale, weight in rules:
        if scale == "val":  # the reference with the better val fused AUC (ties: normal), as rescore chooses
            ref = max(("normal", "footage"), key=lambda r: (by_ref[r][weight]["val_fused_auc"], r == "normal"))
        else:
            ref = scale
        x = by_ref[ref][weight]
        a, c = x["auc"]["fused"], x["counts"]["fused"]
        out.append({"rule": f"scale {scale}, weight {'val' if weight is None else weight}", "reference": ref,
                    "weight": x["weight"], "fused_auc": a[0], "fused_ap": a[1], "detector_auc": x["auc"]["detector"],
                    "normality_auc": x["auc"]["normality"], "normal_flagged": c["normal_flagged"], "normal": c["normal"],
                    "anomalous_flagged": c["anomalous_flagged"], "anomalous": c["anomalous"],
                    "normality_counts": x["counts"]["normality"], "detector_counts": x["counts"]["detector_0.5"]})
    return {"workdir": str(workdir), "fit_s": fit_s, "rules": out}


def run_shipped(workdir: Path, weight: float | None = None, scale: str | None = None) -> dict[str, Any]:
    """The shipped path on a finished `exvad demo` workdir, with this checkout's code: its index copied
    (without the normality and fused scorings the demo wrote) and rescored alone and fused by `exvad
    rescore`'s code with the demo's models, then the test split evaluated from the stored scorings as
    `exvad evaluate --scoring` does. `weight`/`scale`: a fixed fusion weight or scale instead of the defaults."""
    from exvad_ray.cli.demo import _evaluate_scoring
    from exvad_ray.pipeline.rescore import RescoreConfig, run_rescore
    from exvad_ray.storage.s3server import LocalS3Server, s3_environment

    labels, out = "s3://archive/footage/annotations/labels", {"workdir": str(workdir)}
    with LocalS3Server(str(workdir / "s3")) as server, s3_environment(server):
        fs = server.filesystem()
        idx = f"s3://index/bench-{int(time.time())}"
        for f in fs.find("index/run2"):  # a copy: the demo's own index keeps the scorings it wrote
            rel = f[len("index/run2/"):]
            if not (rel.startswith("scorings/") and rel.split("/")[1].startswith(("nrm-", "fus-", "current"))):
                fs.copy(f, f"{idx[5:]}/{rel}")
        quiet = lambda *a, **k: None  # noqa: E731
        alone = run_rescore(RescoreConfig(idx, normality="s3://models/normality-v1", labels=labels, set_current=False),
                            echo=quiet)
        kw = {"fusion_weight": weight} | ({"fusion_scale": scale} if scale else {})
        fused = run_rescore(RescoreConfig(idx, detector="s3://models/detector-v1", normality="s3://models/normality-v1",
                                          labels=labels, set_current=False, **kw), echo=quiet)
        for name, sid in (("detector", "process"), ("normality", alone["scoring_id"]), ("fused", fused["scoring_id"])):
            r, _top = _evaluate_scoring(idx, labels, sid)
            d = r.decisions
            out[name] = {"auc": round(r.auc, 4), "ap": round(r.ap, 4), "normal_flagged": d.normal_videos_flagged,
                         "normal": d.normal_videos, "anomalous_flagged": d.anomalous_videos_flagged,
                         "anomalous": d.anomalous_videos, "threshold": round(d.threshold, 5)}
        f = fused.get("fusion") or {}
        out["fusion"] = {"weight": f.get("weight"), "scale": f.get("scale"), "weight_source": f.get("weight_source")}
        import ray

        ray.shutdown()
    return out


# --------------------------------------------------------------------------------------- scale


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def synthetic_chunks(n: int, chunk: int, seed: int = 0, scenes: int = 400, per_video: int = 100):
    """(video ids, vectors (chunk, 2560)) of a mixture of scenes, each half unit-norm, lite's widths."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((scenes, 2, 1280)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=2, keepdims=True)
    done = 0
    while done < n:
        m = min(chunk, n - done)
        ids = (done + np.arange(m)) // per_video
        scene = (ids * 2654435761) % scenes
        x = centres[scene] + 0.6 / np.sqrt(1280) * rng.standard_normal((m, 2, 1280)).astype(np.float32)
        x /= np.linalg.norm(x, axis=2, keepdims=True)
        yield ids, x.reshape(m, 2560)
        done += m


def run_scale(n: int, cap: int = 20000, bank_size: int = 8000, score_n: int = 20000) -> dict[str, Any]:
    from exvad_ray.normality import GLOBAL, BankBuilder, NormalityModel, calibrate_bank, detect_layout

    t0 = time.time()
    rss0 = _rss_mib()
    builder = None
    gen_s = 0.0
    for ids, x in synthetic_chunks(n, 10000):
        if builder is None:
            builder = BankBuilder(detect_layout(x[:64]), cap=cap)
        t = time.time()
        for vid in np.unique(ids):
            sel = ids == vid
            builder.add(f"v{vid}", "cam", x[sel], np.flatnonzero(sel), np.flatnonzero(sel) * 0.64)
        gen_s += time.time() - t
    stream_s = time.time() - t0
    t = time.time()
    bank = builder.build(bank_size=bank_size, trim_fraction=0.01)
    build_s = time.time() - t
    # calibration: leave-one-video-out on 100 videos (10,000 snippets) of the stream
    t = time.time()
    raws, secs = [], []
    for ids, x in synthetic_chunks(10000, 10000, seed=0):
        for vid in np.unique(ids):
            sel = ids == vid
            raws.append(bank.search(x[sel], exclude_video=f"v{vid}")[0])
            secs.append(sel.sum() * 0.64)
    cal = calibrate_bank(raws, secs, (1.0, 1.0))
    calib_s = time.time() - t
    model = NormalityModel(bank.layout, {GLOBAL: bank}, {GLOBAL: cal}, (1.0, 1.0))
    t = time.time()
    scored = 0
    for ids, x in synthetic_chunks(score_n, 256, seed=1):
        model.score(x, None, None)
        scored += len(x)
    score_s = time.time() - t
    return {"snippets": n, "cap": cap, "bank_size": bank_size, "bank_entries": len(bank),
            "stream_s": round(stream_s, 1), "add_s": round(gen_s, 1), "build_s": round(build_s, 1),
            "calibration_s": round(calib_s, 1), "score_snippets_per_s": round(scored / score_s, 1),
            "peak_rss_mib": round(_rss_mib(), 0), "rss_before_mib": round(rss0, 0),
            "bank_mib": round(bank.vectors.nbytes / 2**20, 1), "threshold": cal.threshold.threshold}


def scale_in_subprocess(n: int) -> dict[str, Any]:
    """Each size in its own process, so that peak RSS is that size's."""
    out = subprocess.run([sys.executable, __file__, "_scale_one", "--snippets", str(n)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def build_fit_index(index: Path, n: int, per_video: int = 100, per_file: int = 10) -> dict[str, Any]:
    """An index of `n` synthetic lite-width snippets (`synthetic_chunks`), `per_video` per video, stored
    as `exvad compact` leaves it (files of `per_file` videos, their ids in the file metadata), with
    every column of the schemas: what the fit job reads, without decoding. (The job's one file per
    video per table would make writing 1e6 snippets take half an hour here; the fit reads either.)"""
    import pyarrow as pa

    from exvad_ray.index.schemas import conform
    from exvad_ray.index.store import COMPACT_PREFIX, file_uri, write_table_file

    t0 = time.time()
    shutil.rmtree(index, ignore_errors=True)
    now = pa.scalar(0, pa.timestamp("us", tz="UTC")).as_py()
    videos, files = 0, 0
    for ids, x in synthetic_chunks(n, per_file * per_video, per_video=per_video):
        snips, vids, names = [], [], []
        for vid_n in np.unique(ids):
            sel = np.flatnonzero(ids == vid_n)
            m = len(sel)
            vid = f"{vid_n:08d}-0000-4000-8000-000000000000"
            uri = f"/archive/cam00/v{vid_n:07d}.mp4"
            emb = pa.ListArray.from_arrays(pa.array(np.arange(m + 1, dtype=np.int32) * x.shape[1]),
                                           pa.array(x[sel].ravel()))
            snips.append(conform("snippets", pa.table({
                "video_id": [vid] * m, "uri": [uri] * m, "window_index": pa.array(np.arange(m) // 2, pa.int32()),
                "snippet_index": pa.array(np.arange(m), pa.int32()), "start_s": np.arange(m) * 0.64,
                "end_s": (np.arange(m) + 1) * 0.64, "frame_index": np.arange(m) * 16,
                "anomaly_score": pa.array(np.zeros(m, np.float32)), "class_probs": pa.nulls(m, pa.list_(pa.float32())),
                "visual_embedding": emb, "thumbnail_jpeg": pa.nulls(m, pa.binary())})))
            vids.append(conform("videos", {
                "video_id": [vid], "uri": [uri], "name": [f"v{vid_n:07d}"], "size_bytes": [0], "etag": [None],
                "status": ["ok"], "duration_s": [m * 0.64], "timing": ["constant"], "fps": [25.0],
                "n_frames": [m * 16], "width": [320], "height": [240], "codec": ["h264"], "n_snippets": [m],
                "n_windows": [m // 2], "video_score": [0.0], "video_class": ["Normal"], "class_names": [None],
                "class_scores": [None], "n_segments": [0], "explanation": [None], "explanation_embedding": [None],
                "window_explanation_embeddings": [None], "visual_model": ["efficientnet-lite0"],
                "caption_model": [None], "explanation_model": [None], "detector": [None], "label_set": [None],
                "recorded_at": [now], "recorded_at_source": [None], "run_id": ["bench"], "processed_at": [now]}))
            names.append(vid)
        meta = {b"exvad.video_ids": json.dumps(names).encode()}
        part = {"date": "2026-12-01", "camera": "cam00"}
        for table, rows in (("snippets", snips), ("videos", vids)):
            t = pa.concat_tables(rows)
            write_table_file(file_uri(str(index), table, part, f"{files:06d}").replace("part-", COMPACT_PREFIX),
                             t.replace_schema_metadata({**(t.schema.metadata or {}), **meta}))
        videos += len(names)
        files += 1
    return {"videos": videos, "files_per_table": files, "write_s": round(time.time() - t0, 1),
            "bytes": sum(f.stat().st_size for f in index.rglob("*.parquet"))}


class _TreeRss:
    """Peak RSS of every process under this one (Ray's GCS, raylet and workers), sampled twice a second."""

    def __init__(self) -> None:
        import threading

        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.wait(0.5):
            for p in me.children(recursive=True):
                try:
                    name, rss = p.name(), p.memory_info().rss / 2**20
                except psutil.Error:
                    continue
                key = name if not name.startswith("ray::") else "ray worker"
                self.peak[key] = max(self.peak.get(key, 0.0), rss)

    def __enter__(self) -> "_TreeRss":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def run_fit_scale(n: int, root: Path) -> dict[str, Any]:
    """The real fit job (`fit_normality`, Ray Data, no labels: all footage trimmed 1 %) over `n` stored
    snippets; peak RSS of the driver and of the largest Ray worker, in MiB."""
    from exvad_ray.train.normality import NormalityFitConfig, fit_normality

    index = root / f"index-{n}"
    built = json.loads(subprocess.run([sys.executable, __file__, "_build_fit_index", "--snippets", str(n),
                                       "--root", str(root)], capture_output=True, text=True, check=True).stdout)
    rss0 = _rss_mib()
    t0 = time.time()
    with _TreeRss() as tree:
        _model, card = fit_normality(NormalityFitConfig(index=str(index), out=str(root / f"model-{n}"), address=None),
                                     echo=lambda line: print(line, file=sys.stderr))
    out = {"snippets": n, **built, "fit_s": round(time.time() - t0, 1), "driver_peak_rss_mib": round(_rss_mib(), 0),
           "driver_rss_before_fit_mib": round(rss0, 0), "worker_peak_rss_mib": round(tree.peak.get("ray worker", 0), 0),
           "peaks_mib": {k: round(v, 0) for k, v in sorted(tree.peak.items())},
           "bank_entries": card["sizes"]["_global"]["entries"]}
    shutil.rmtree(index, ignore_errors=True)
    shutil.rmtree(root / f"model-{n}", ignore_errors=True)
    return out


# --------------------------------------------------------------------------------------- report


def _md_demo(d: dict[str, Any]) -> str:
    c0 = d["chosen"]
    card = d["card"]
    g = card["sizes"]["_global"]
    lines = [
        "Demo archive (`exvad demo`, 60 generated videos, lite profile), test split (4 normal, 8 anomalous videos), "
        "one run. The normality model is fitted by `fit_normality` (Ray Data over the stored embeddings) on the train "
        f"split's Normal videos ({g['videos']} videos, {g['entries']} bank entries; halves combined by the "
        f"{d['combine']} of their surprises) and calibrated on val's Normal videos "
        f"({'+'.join(CALIBRATE_SPLITS)}). The detector's stored scores are calibrated on val's Normal videos. Fusion: "
        "weighted mean of the two parts as `footage_s` (each part's rank among all footage of the val split as a "
        "surprise -log(1 - rank): `exvad rescore`'s default scale rank_surprise), `normal` (surprises "
        "-log(1 - percentile of normal footage)) or `footage` (plain ranks); the weight is chosen on val by "
        "snippet AP; the fused score is calibrated on val's Normal videos. The first row is the shipped path "
        "(k 5, rank_surprise); the others are for comparison; test is only scored. Thresholds: 1 false alarm per "
        "camera-hour of normal footage (extrapolated: the calibration footage is a few minutes). A video is "
        "flagged when the localisation rule flags one of its segments; the detector's 0.5 uses its video rule. Fit: "
        + ", ".join(f"k={k} {s:.0f} s" for k, s in d["fit_s"].items()) + ".",
        "",
        "| k | fusion reference | weight (val) | val AUC normality / fused | test AUC detector | normality AUC / AP | "
        "fused AUC / AP | normal flagged: det 0.5 / det cal. / normality / fused | anomalous flagged: same |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for x in d["variants"]:
        a, c = x["auc"], x["counts"]
        mark = " (shipped)" if x is c0 else ""
        lines.append(
            f"| {x['k']}{mark} | {x['reference']} | {x['weight']:.1f} | {x['val_normality_auc']:.3f} / "
            f"{x['val_fused_auc']:.3f} | {a['detector'][0]:.3f} / {a['detector'][1]:.3f} | {a['normality'][0]:.3f} / "
            f"{a['normality'][1]:.3f} | {a['fused'][0]:.3f} / {a['fused'][1]:.3f} | "
            + " / ".join(f"{c[k]['normal_flagged']}/{c[k]['normal']}" for k in ("detector_0.5", "detector_calibrated",
                                                                              "normality", "fused"))
            + " | " + " / ".join(f"{c[k]['anomalous_flagged']}/{c[k]['anomalous']}"
                                 for k in ("detector_0.5", "detector_calibrated", "normality", "fused")) + " |")
    a, c = c0["auc"], c0["counts"]
    met = lambda ok: "met" if ok else "MISSED"  # noqa: E731
    lines += ["", "Against the issue's targets (the shipped variant): normality AUC >= 0.82 "
              f"{met(a['normality'][0] >= 0.82)}; fused AUC >= 0.90 {met(a['fused'][0] >= 0.90)}; fused AP >= 0.72 "
              f"{met(a['fused'][1] >= 0.72)}; fused above both parts "
              f"{met(a['fused'][0] > max(a['detector'][0], a['normality'][0]) and a['fused'][1] > max(a['detector'][1], a['normality'][1]))}; "
              f"<= 1 of 4 normal flagged {met(c['fused']['normal_flagged'] <= 1)}; >= 7 of 8 anomalous flagged "
              f"{met(c['fused']['anomalous_flagged'] >= 7)}."]
    t = c0["thresholds"]
    lines += ["", f"The shipped variant's thresholds: normality percentile {t['normality']:.5f} "
              f"({t['normality_method']}), "
              f"detector {t['detector']:.5f}, fused {t['fused']:.5f}. Its test videos:", "",
              "| test video | truth | normality flagged | fused flagged | peak percentile | unusual half | "
              "nearest normal moment |", "|---|---|---|---|---|---|---|"]
    for r in c0["rows"]:
        lines.append(f"| {r['video']} | {r['truth']} | {'yes' if r['normality_flagged'] else 'no'} | "
                     f"{'yes' if r['fused_flagged'] else 'no'} | {r['peak_percentile']:.4f} at {r['peak_s']} s | "
                     f"{r['unusual']} | {r['nearest']} |")
    return "\n".join(lines)


def _md_rules(runs: list[dict[str, Any]], when: str = "fixed after dev1's table and before dev2's was computed"
              ) -> tuple[str, dict[str, Any]]:
    """Each rule on each development archive, and the one the criterion picks: the mean over the
    archives of (anomalous videos flagged - normal videos flagged, as fractions), then of fused AP."""
    names = [r["rule"] for r in runs[0]["rules"]]

    def score(name: str) -> tuple[float, float]:
        xs = [next(x for x in r["rules"] if x["rule"] == name) for r in runs]
        dec = np.mean([x["anomalous_flagged"] / x["anomalous"] - x["normal_flagged"] / x["normal"] for x in xs])
        return round(float(dec), 4), round(float(np.mean([x["fused_ap"] for x in xs])), 4)

    best = max(names, key=score)
    lines = ["Development archives: `exvad demo`'s generator with seeds 1, 2, ... ("
             + ", ".join(Path(r["workdir"]).name for r in runs) + "; the demo is seed 0), 60 videos each, lite, "
             "the same steps as the demo (zero-shot job, detector trained on train, job rescored, normality model "
             "fitted on train's Normal videos, k = 5). Test split of each: 4 normal, 8 anomalous videos. Rules: the "
             "scale (`normal` = surprises -log(1 - percentile of normal footage); `footage` = ranks among val's "
             "footage; `footage_s` = those ranks as surprises; `val` = the better val fused AUC) and the normality "
             "weight (`auc`, `ap` = chosen on val by snippet AUC, AP; `clamp` = by AUC, at least 0.5; or fixed). "
             f"Criterion, {when}: mean over the archives of (anomalous videos "
             "flagged - normal videos flagged, as fractions) at the calibrated threshold, then mean fused AP.", "",
             "| rule | " + " | ".join(f"{Path(r['workdir']).name}: weight, fused AUC / AP, normal / anomalous flagged"
                                     for r in runs) + " | criterion (decisions, AP) |",
             "|---|" + "---|" * len(runs) + "---|"]
    for name in names:
        cells = []
        for r in runs:
            x = next(x for x in r["rules"] if x["rule"] == name)
            cells.append(f"{x['reference']} {x['weight']:.1f}, {x['fused_auc']:.3f} / {x['fused_ap']:.3f}, "
                         f"{x['normal_flagged']}/{x['normal']} / {x['anomalous_flagged']}/{x['anomalous']}")
        mark = " **(picked)**" if name == best else ""
        lines.append(f"| {name}{mark} | " + " | ".join(cells) + f" | {score(name)[0]:.3f}, {score(name)[1]:.3f} |")
    lines += ["", "For reference, on each archive: " + "; ".join(
        f"{Path(r['workdir']).name}: detector AUC {r['rules'][0]['detector_auc'][0]:.3f}, flags "
        f"{r['rules'][0]['detector_counts']['normal_flagged']}/4 normal and "
        f"{r['rules'][0]['detector_counts']['anomalous_flagged']}/8 anomalous at its 0.5; normality alone AUC "
        f"{r['rules'][0]['normality_auc'][0]:.3f}, flags {r['rules'][0]['normality_counts']['normal_flagged']}/4 and "
        f"{r['rules'][0]['normality_counts']['anomalous_flagged']}/8 at its calibrated threshold" for r in runs) + "."]
    flat = {"normality_fusion_rule": best, "normality_fusion_rule_decisions": score(best)[0],
            "normality_fusion_rule_ap": score(best)[1], "normality_fusion_rule_archives": len(runs)}
    return "\n".join(lines), flat


def _md_shipped(runs: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    lines = ["`exvad rescore` (normality alone, and fused with the default scale and the weight chosen on val) and "
             "`exvad evaluate --scoring` on the test split (4 normal, 8 anomalous videos) of finished `exvad demo` "
             "workdirs: the demo (seed 0) and development archives (the demo's generator with seeds 1, 2, ...), each "
             "index copied without the scorings the demo wrote and rescored by this checkout's code with the demo's "
             "detector and normality model. Calibrated scorings store each snippet's surprise -log(1 - percentile) "
             "beside its float32 percentile, and AUC/AP rank by it (float32 rounds percentiles above about 1 - 6e-8 to "
             "1.0). Thresholds: 1 false alarm per hour of normal footage, never from test.", "",
             "| archive | detector at its 0.5: AUC / AP, normal / anomalous flagged | normality alone | fused | "
             "fusion weight (val) |", "|---|---|---|---|---|"]
    cell = lambda x: (f"{x['auc']:.3f} / {x['ap']:.3f}, {x['normal_flagged']}/{x['normal']} / "  # noqa: E731
                      f"{x['anomalous_flagged']}/{x['anomalous']}")
    flat: dict[str, Any] = {}
    for r in runs:
        name = Path(r["workdir"]).name
        lines.append(f"| {name} | {cell(r['detector'])} | {cell(r['normality'])} | {cell(r['fused'])} | "
                     f"{r['fusion']['weight']} |")
        for part in ("detector", "normality", "fused"):
            for key in ("auc", "ap", "normal_flagged", "anomalous_flagged"):
                flat[f"normality_shipped_{name}_{part}_{'frame_' if key in ('auc', 'ap') else ''}{key}"] = r[part][key]
        flat[f"normality_shipped_{name}_fusion_weight"] = r["fusion"]["weight"]
    return "\n".join(lines), flat


def _md_fitscale(rows: list[dict[str, Any]]) -> str:
    lines = ["The real fit job (`fit_normality`: Ray Data over the stored snippet embeddings, local Ray on this machine, "
             "no labels: all footage, trimmed 1 %) on synthetic indexes of lite-width snippets (2 x 1280 float32, a "
             "mixture of 400 scenes, 100 snippets per video) stored as `exvad compact` leaves them (files of 10 "
             "videos, 10 MB). Peak RSS sampled twice a second over every process of the session (Ray's workers "
             "include their share of the object store's mapped pages); the driver's is its own peak.", "",
             "| snippets | videos | index on disk | fit s | bank entries | driver peak RSS MiB | largest Ray worker "
             "peak RSS MiB |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['snippets']:,} | {r['videos']:,} | {r['bytes'] / 2**30:.1f} GiB | {r['fit_s']:.0f} | "
                     f"{r['bank_entries']:,} | {r['driver_peak_rss_mib']:.0f} | {r['worker_peak_rss_mib']:.0f} |")
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        lines += ["", f"{b['snippets'] / a['snippets']:.0f}x the footage: driver {b['driver_peak_rss_mib'] / a['driver_peak_rss_mib']:.2f}x, "
                  f"largest worker {b['worker_peak_rss_mib'] / a['worker_peak_rss_mib']:.2f}x: bounded by the bank's candidate "
                  "cap (20,000 x 2,560 floats = 195 MiB in the driver) and by one snippets file per task, not by the archive. "
                  "A task reads a whole snippets file, so a compacted partition of very many videos raises a worker's peak "
                  "by that file's decoded size."]
    return "\n".join(lines)


def _md_scale(rows: list[dict[str, Any]]) -> str:
    lines = ["Synthetic snippets of lite's widths (2 x 1280, a mixture of 400 scenes), streamed in chunks of 10,000 "
             "through `BankBuilder` (one process; the fit job's driver does the same with the rows its Ray Data "
             "tasks sample), trimmed 1 %, reduced by greedy k-center; calibration leave-one-video-out on 10,000 "
             "snippets; scoring in batches of 256 (k = 5, faiss flat inner product, both halves).", "",
             "| snippets | candidates cap | bank entries (MiB) | stream s | build s | calibration s | "
             "scoring snippets/s | peak RSS MiB |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['snippets']:,} | {r['cap']:,} | {r['bank_entries']:,} ({r['bank_mib']}) | {r['stream_s']} | "
                     f"{r['build_s']} | {r['calibration_s']} | {r['score_snippets_per_s']:,.0f} | {r['peak_rss_mib']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=("demo", "scale", "all", "rules", "weights", "shipped", "training", "fitscale",
                                     "_scale_one",
                                     "_build_fit_index"))
    ap.add_argument("--weight", type=float, default=None,
                    help="shipped: a fixed fusion weight (default: chosen on val)")
    ap.add_argument("--root", default="/tmp/normality-fitscale", help="fitscale: where the synthetic index goes")
    ap.add_argument("--sizes", default="100000,1000000", help="fitscale: snippets per run")
    ap.add_argument("--from-json", default=None,
                    help="fitscale: record rows measured before (one JSON per line); training: its JSON output")
    ap.add_argument("--workdir", default="demo-output")
    ap.add_argument("--demo", default=None, help="training: finished `exvad demo` workdirs (before,after) for the "
                    "shipped path's figures beside the table")
    ap.add_argument("--recipes", default=None, help=f"training: some of {', '.join(TRAINING)} (default all)")
    ap.add_argument("--ks", default="5", help="training: the normality model's k, one fit each (default 5)")
    ap.add_argument("--seeds", default=None, help="training: the generator seed of each --workdir (default 1, 2, ...)")
    ap.add_argument("--snippets", type=int, default=1_000_000)
    ap.add_argument("--combine", default="mean")
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    if args.what == "_scale_one":
        print(json.dumps(run_scale(args.snippets)))
        return
    if args.what == "_build_fit_index":  # in its own process, so that the fit's driver RSS is the fit's
        print(json.dumps(build_fit_index(Path(args.root) / f"index-{args.snippets}", args.snippets)))
        return
    if args.what == "fitscale":  # --sizes 100000,1000000 (each needs ~10 KB of disk per snippet under --root)
        root = Path(args.root)
        root.mkdir(parents=True, exist_ok=True)
        rows = [json.loads(line) for line in Path(args.from_json).read_text().splitlines()] if args.from_json else \
            [run_fit_scale(int(float(n)), root) for n in args.sizes.split(",")]
        print(json.dumps(rows))
        if args.record:
            big = rows[-1]
            record("Label-free normality (issue 22): the fit job's memory", _md_fitscale(rows),
                   {"normality_fit_snippets": big["snippets"], "normality_fit_s": big["fit_s"],
                    "normality_fit_driver_peak_rss_mib": big["driver_peak_rss_mib"],
                    "normality_fit_worker_peak_rss_mib": big["worker_peak_rss_mib"],
                    **({"normality_fit_driver_peak_rss_mib_1e5": rows[0]["driver_peak_rss_mib"],
                        "normality_fit_worker_peak_rss_mib_1e5": rows[0]["worker_peak_rss_mib"]}
                       if len(rows) > 1 else {})}, machine())
        return
    if args.what == "shipped":  # --workdir A,B: finished `exvad demo` workdirs (the demo, development archives)
        runs = []
        for w in args.workdir.split(","):
            runs.append(run_shipped(Path(w).resolve(), args.weight))
            print(json.dumps(runs[-1]), flush=True)
        if args.record:
            body, flat = _md_shipped(runs)
            record("Label-free normality (issue 22): the shipped path, ranked by the stored order", body, flat,
                   machine())
        return
    if args.what == "training":  # --workdir A,B,...: development archives, --seeds their generator seeds
        workdirs = args.workdir.split(",")
        seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else list(range(1, len(workdirs) + 1))
        recipes = tuple(args.recipes.split(",")) if args.recipes else tuple(TRAINING)
        ks = tuple(int(k) for k in args.ks.split(","))
        runs = json.loads(Path(args.from_json).read_text()) if args.from_json else \
            [run_training(Path(w).resolve(), s, recipes, ks) for w, s in zip(workdirs, seeds)]
        print(json.dumps(runs, default=str))
        demos = [run_shipped(Path(w).resolve()) for w in args.demo.split(",")] if args.demo else []
        if args.record and ks != (5,):
            body, flat = _md_training(runs)
            record("Label-free normality (issue 22): the normality model's k under the demo's recipe, on five "
                   "development archives", K_INTRO + "\n\n" + body,
                   {k.replace("normality_training_", "normality_k_"): v for k, v in flat.items()}, machine())
        elif args.record:
            body, flat = _md_training(runs)
            body = TRAINING_INTRO + "\n\n" + body
            if demos:
                body += "\n\n" + _md_training_demos(demos)
                flat |= {"normality_training_demo_fused_auc": demos[-1]["fused"]["auc"],
                         "normality_training_demo_fused_ap": demos[-1]["fused"]["ap"]}
            record("Label-free normality (issue 22): the detector's training length, on five development archives",
                   body, flat, machine())
        return
    if args.what == "weights":  # --workdir A,B,...: the weight's metric under the shipped scale
        runs = [run_rules(Path(w).resolve(), args.combine, rules=METRIC_RULES) for w in args.workdir.split(",")]
        print(json.dumps(runs, indent=1, default=str))
        if args.record:
            body, flat = _md_rules(runs, "declared before dev3-dev5 existed (and the shipped metric, AUC, kept unless "
                                         "another beat it by at least 0.05 on decisions)")
            record("Label-free normality (issue 22): the weight's metric, on five development archives", body,
                   {k.replace("normality_fusion_rule", "normality_weight_metric_rule"): v for k, v in flat.items()},
                   machine())
        return
    if args.what == "rules":  # --workdir A,B: development archives (`exvad demo` with other generator seeds)
        runs = [run_rules(Path(w).resolve(), args.combine) for w in args.workdir.split(",")]
        print(json.dumps(runs, indent=1, default=str))
        if args.record:
            body, flat = _md_rules(runs)
            held_out = "train" not in CALIBRATE_SPLITS
            title = "the fusion rule, chosen on development archives" + (
                ", normality calibrated on held-out val" if held_out else "")
            body = (f"Normality model calibrated on the Normal videos of {' and '.join(CALIBRATE_SPLITS)}"
                    + (" (footage the bank never saw; the fit's default since this comparison)." if held_out else
                       " (train's scored leave-one-video-out): the calibration the rules were first compared under.")
                    + "\n\n" + body)
            record(f"Label-free normality (issue 22): {title}", body,
                   {f"{k}_held_out" if held_out else k: v for k, v in flat.items()}, machine())
        return
    if args.what in ("demo", "all"):
        body, flat = [], {}
        d = run_demo(Path(args.workdir).resolve(), args.combine)
        print(json.dumps(d, indent=1, default=str))
        body.append(_md_demo(d))
        x = d["chosen"]
        for key in ("detector", "normality", "fused"):
            flat[f"normality_demo_{key}_frame_auc"] = round(x["auc"][key][0], 4)
            flat[f"normality_demo_{key}_frame_ap"] = round(x["auc"][key][1], 4)
        for key, c in x["counts"].items():
            flat[f"normality_demo_{key}_normal_flagged"] = c["normal_flagged"]
            flat[f"normality_demo_{key}_anomalous_flagged"] = c["anomalous_flagged"]
        flat["normality_demo_k"] = x["k"]
        flat["normality_demo_fusion_reference"] = x["reference"]
        flat["normality_demo_fusion_weight"] = x["weight"]
        flat["normality_demo_threshold"] = x["thresholds"]["normality"]
        if args.record:
            record("Label-free normality (issue 22): demo archive", "\n\n".join(body), flat, machine())
    if args.what in ("scale", "all"):
        body, flat = [], {}
        rows = [scale_in_subprocess(n) for n in sorted({100_000, args.snippets})]
        print(json.dumps(rows, indent=1))
        body.append("### Scale\n\n" + _md_scale(rows))
        big = rows[-1]
        flat["normality_scale_snippets"] = big["snippets"]
        flat["normality_scale_bank_entries"] = big["bank_entries"]
        flat["normality_scale_build_s"] = big["build_s"]
        flat["normality_scale_score_snippets_per_s"] = big["score_snippets_per_s"]
        flat["normality_scale_peak_rss_mib"] = big["peak_rss_mib"]
        flat["normality_scale_peak_rss_mib_1e5"] = rows[0]["peak_rss_mib"]
        if args.record:
            record("Label-free normality (issue 22): scale", "\n\n".join(body), flat, machine())


if __name__ == "__main__":
    main()
