"""Rescoring vs reprocessing: put a new detector to work on an indexed archive with `exvad rescore`
(stored embeddings only) instead of `exvad process --detector` (decode, models, captions,
explanations again).

One run, one Ray session: `exvad process --detector D` writes an index of the archive, then
`exvad rescore` scores that same index again with D, `--repeats` times (the scoring removed in
between; the first is the headline: the first scoring job of the session, the later ones find
pooled workers with torch and the detector loaded). Wall time and CPU seconds of the whole process
tree (driver, raylet, workers) are compared as ratios measured in the same run, and the rescored
snippet scores are checked against the reprocessed ones. Then `exvad rescore` once more as a fresh
command-line process (its own Python, torch-free driver, its own local Ray start): what a user
typing the command without a running cluster waits for. Rescore's phases come from its debug log.

Default: the `lite` profile on the default synthetic archive (`exvad synth` defaults: 60 videos,
8-20 s, 320x240 at 25 fps, seed 0), with an untrained detector of lite's sizes (its cost is what is
measured, not its quality) and a model card naming its classes, as `exvad train` writes.

    python bench/rescore.py [--profile lite|tiny] [--work DIR] [--repeats 3] [--no-record]
    python bench/rescore.py --videos-per-class 2 --normal-videos 2 --duration 150,160 --label "long videos"
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

for _k, _v in {"RAY_ADDRESS": "local", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled",
               "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(_k, _v)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _results import record, table  # noqa: E402
from pipeline import ProcessTreeMeter  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_detector(uri: str, profile: str, label_set: str, seed: int = 0) -> None:
    """An untrained detector of the profile's feature sizes, and a model card naming its classes."""
    import torch

    from exvad_ray.checkpoints import save_detector
    from exvad_ray.detector import DetectorConfig, ExVADDetector
    from exvad_ray.models import label_set_embeddings
    from exvad_ray.models.encoders import load_encoders
    from exvad_ray.models.profiles import load_profile

    emb, names = label_set_embeddings(label_set, profile, k=4)
    visual_dim = int(load_encoders(load_profile(profile).clip).snippet_dim)  # lite: 2560 (appearance | motion)
    torch.manual_seed(seed)
    cfg = DetectorConfig(embed_dim=emb.shape[1], num_classes=len(names),
                         visual_dim=None if visual_dim == emb.shape[1] else visual_dim)
    det = ExVADDetector.build(cfg, emb, names)
    save_detector(det, uri)
    card = {"model": "bench/rescore.py: untrained", "label_set": {"name": label_set, "class_names": list(names)}}
    with open(os.path.join(os.path.dirname(uri), "model_card.json"), "w") as f:
        json.dump(card, f)


class PhaseLog(logging.Handler):
    """Collects rescore's `rescore phases (s): {...}` debug lines."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.phases: list[dict[str, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if msg.startswith("rescore phases (s): "):
            self.phases.append(json.loads(msg.split(": ", 1)[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="lite", help="model profile of the archive job (default lite)")
    ap.add_argument("--videos-per-class", type=int, default=10)
    ap.add_argument("--normal-videos", type=int, default=20)
    ap.add_argument("--duration", default="8,20", help="seconds per video, MIN,MAX (default 8,20)")
    ap.add_argument("--size", default="320x240", help="frame size WxH (default 320x240)")
    ap.add_argument("--repeats", type=int, default=3, help="rescore runs in the session (default 3)")
    ap.add_argument("--work", default=None, help="work folder; its archive is reused (default: a temporary one)")
    ap.add_argument("--no-cli", action="store_true", help="skip the fresh command-line rescore")
    ap.add_argument("--no-record", action="store_true", help="print, do not write bench/RESULTS.md")
    ap.add_argument("--label", default="", help="names the archive in the RESULTS.md section and results.json keys "
                    "(default: none, the default archive)")
    args = ap.parse_args()
    import ray

    from exvad_ray import index as idx
    from exvad_ray.checkpoints import detector_id
    from exvad_ray.index import scorings as sc
    from exvad_ray.pipeline.job import ProcessConfig, run_process
    from exvad_ray.pipeline.rescore import RescoreConfig, run_rescore
    from exvad_ray.synth import SynthConfig, generate_archive

    work = args.work or tempfile.mkdtemp(prefix="exvad-bench-rescore-")
    if args.profile == "tiny":
        from exvad_ray.models.tiny import ensure_tiny_models

        os.environ.setdefault("EXVAD_TINY_MODELS", os.path.join(work, "tiny-models"))
        ensure_tiny_models(os.environ["EXVAD_TINY_MODELS"], seed=0)
    archive, det = os.path.join(work, "archive"), os.path.join(work, "detector", "model.pt")
    full = os.path.join(work, f"index-{args.profile}")
    shutil.rmtree(full, ignore_errors=True)
    if not os.path.exists(os.path.join(archive, "annotations")):
        width, height = (int(v) for v in args.size.split("x"))
        lo, hi = (float(v) for v in args.duration.split(","))
        generate_archive(archive, SynthConfig(videos_per_class=args.videos_per_class, normal_videos=args.normal_videos,
                                              duration=(lo, hi), width=width, height=height, workers=2))
    os.makedirs(os.path.dirname(det), exist_ok=True)
    make_detector(det, args.profile, "synthetic")
    phase_log = PhaseLog()
    rs_log = logging.getLogger("exvad_ray.pipeline.rescore")
    rs_log.setLevel(logging.DEBUG)
    rs_log.addHandler(phase_log)
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False)
    load = [os.getloadavg()[0]]
    sid = detector_id(det)
    rescores: list[tuple[float, float]] = []
    try:
        with ProcessTreeMeter() as m_full:
            t0 = time.perf_counter()
            s_full = run_process(ProcessConfig(archive=archive, index=full, profile=args.profile, label_set="synthetic",
                                               detector=det), echo=lambda _m: None)
            wall_full = time.perf_counter() - t0
        load.append(os.getloadavg()[0])
        for _ in range(args.repeats):
            shutil.rmtree(sc.scoring_root(full, sid), ignore_errors=True)
            with ProcessTreeMeter() as m_re:
                t0 = time.perf_counter()
                # the same index, rescored with the same detector: the scores must come out the same
                s_re = run_rescore(RescoreConfig(full, det, set_current=False), echo=lambda _m: None)
                wall_re = time.perf_counter() - t0
            rescores.append((wall_re, m_re.cpu_s))
            load.append(os.getloadavg()[0])
            assert s_re["videos_scored"] == s_full["videos_processed"] and not s_re["videos_failed"], s_re
        a = idx.read_table(full, "snippets", ["video_id", "snippet_index", "anomaly_score"]).to_pylist()
        b = sc.read_scoring(full, "snippet_scores", sid).to_pylist()
        fa = {(r["video_id"], r["snippet_index"]): r["anomaly_score"] for r in a}
        fb = {(r["video_id"], r["snippet_index"]): r["anomaly_score"] for r in b}
        assert fa.keys() == fb.keys(), "rescored and reprocessed indexes hold different snippets"
        max_diff = float(np.max(np.abs([fa[k] - fb[k] for k in fa])))
    finally:
        ray.shutdown()
    cli = None
    if not args.no_cli:  # a fresh `exvad rescore` process: own Python, own local Ray
        shutil.rmtree(sc.scoring_root(full, sid), ignore_errors=True)
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        with ProcessTreeMeter() as m_cli:
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, "-m", "exvad_ray.cli", "-v", "rescore", "--index", full,
                                  "--detector", det, "--no-current"], env=env, capture_output=True, text=True)
            wall_cli = time.perf_counter() - t0
        cli = (wall_cli, m_cli.cpu_s)
        if out.returncode != 0:
            raise SystemExit(f"exvad rescore failed:\n{out.stdout}\n{out.stderr}")
        for line in out.stderr.splitlines():
            if "rescore phases (s): " in line:
                phase_log.phases.append({"(fresh CLI) " + k: v for k, v in
                                         json.loads(line.split("rescore phases (s): ", 1)[1]).items()})
        load.append(os.getloadavg()[0])
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)

    n, hours = s_full["videos_processed"], s_full["hours"]
    (wall_re, cpu_re), rest = rescores[0], rescores[1:]
    rows = [["reprocess (`exvad process --detector`)", n, wall_full, m_full.cpu_s, "1"],
            ["rescore, first in the session (`run_rescore`)", n, wall_re, cpu_re, f"{wall_full / wall_re:.1f}x"]]
    if rest:
        med_w, med_c = statistics.median(w for w, _ in rest), statistics.median(c for _, c in rest)
        rows.append([f"rescore, repeats 2-{len(rescores)} in the session (median)", n, med_w, med_c,
                     f"{wall_full / med_w:.1f}x"])
    if cli:
        rows.append(["rescore as a fresh `exvad rescore` process (own Ray start)", n, cli[0], cli[1],
                     f"{wall_full / cli[0]:.1f}x"])
    speed, cpu_ratio = wall_full / wall_re, m_full.cpu_s / max(cpu_re, 1e-9)
    phases = "\n".join(f"- run {i + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in p.items())
                       for i, p in enumerate(phase_log.phases))
    per_video = phase_log.phases[0].get("tasks: scoring and writing", float("nan")) / max(n, 1)
    body = (table(["run", "videos", "wall s", "CPU s (process tree)", "wall vs reprocess"], rows) +
            f"\n\nFirst rescore in the session: **{speed:.1f}x faster** (wall), **{cpu_ratio:.1f}x less CPU** than "
            f"reprocessing the same {n} videos ({hours:.3f} h of video, {args.size}, profile `{args.profile}`), "
            f"measured in one run, one Ray session ({os.cpu_count()} CPUs); target >= 20x. Largest snippet-score "
            f"difference between the two: {max_diff:.2g}. Load average (1 min) at start / after each step: "
            f"{' / '.join(f'{v:.1f}' for v in load)} (the machine is shared).\n\n"
            f"Rescore phases (s; its debug log):\n{phases}\n\nScoring and writing: {per_video * 1000:.0f} ms per "
            f"video in the first run.")
    print(body)
    if not args.no_record:
        p = args.profile + (f".{args.label.replace(' ', '_')}" if args.label else "")
        flat = {f"rescore.{p}.speedup_wall": round(speed, 2), f"rescore.{p}.cpu_ratio": round(cpu_ratio, 2),
                f"rescore.{p}.reprocess_wall_s": round(wall_full, 2), f"rescore.{p}.rescore_wall_s": round(wall_re, 2),
                f"rescore.{p}.rescore_repeat_walls_s": [round(w, 2) for w, _ in rest],
                f"rescore.{p}.cli_wall_s": round(cli[0], 2) if cli else None,
                f"rescore.{p}.videos": n, f"rescore.{p}.max_score_diff": max_diff,
                f"rescore.{p}.load_avg": [round(v, 1) for v in load]}
        record(f"Rescore vs reprocess (profile {args.profile}{', ' + args.label if args.label else ''})", body, flat)


if __name__ == "__main__":
    main()
