"""Rescoring vs reprocessing: put a new detector to work on an indexed archive with `exvad rescore`
(stored embeddings only) instead of `exvad process --detector` (decode, models, captions,
explanations again). Both run in one Ray session on the same synthetic archive, one after the
other; wall time and CPU seconds of the whole process tree (driver, raylet, workers) are compared
as ratios measured in the same run. The rescored snippet scores are checked against the
reprocessed ones.

    python bench/rescore.py [--profile tiny|lite] [--videos-per-class N] [--duration S]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _results import record, table  # noqa: E402
from pipeline import ProcessTreeMeter  # noqa: E402


def make_detector(uri: str, profile: str, label_set: str, seed: int = 0) -> None:
    """An untrained detector of the profile's feature sizes: its cost is what is measured."""
    import torch

    from exvad_ray.checkpoints import save_detector
    from exvad_ray.detector import DetectorConfig, ExVADDetector
    from exvad_ray.models import label_set_embeddings

    emb, names = label_set_embeddings(label_set, profile, k=4)
    torch.manual_seed(seed)
    det = ExVADDetector.build(DetectorConfig(embed_dim=emb.shape[1], num_classes=len(names)), emb, names)
    save_detector(det, uri)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="tiny", help="model profile of the archive job (default tiny)")
    ap.add_argument("--videos-per-class", type=int, default=3)
    ap.add_argument("--normal-videos", type=int, default=6)
    ap.add_argument("--duration", type=float, default=12.0, help="seconds per video (default 12)")
    ap.add_argument("--work", default=None, help="work folder (default: a temporary one, removed)")
    args = ap.parse_args()
    os.environ.setdefault("RAY_ADDRESS", "local")
    import ray

    from exvad_ray.models.tiny import ensure_tiny_models
    from exvad_ray import index as idx
    from exvad_ray.pipeline import scorings as sc
    from exvad_ray.pipeline.job import ProcessConfig, run_process
    from exvad_ray.pipeline.rescore import RescoreConfig, run_rescore
    from exvad_ray.synth import SynthConfig, generate_archive

    work = args.work or tempfile.mkdtemp(prefix="exvad-bench-rescore-")
    os.environ.setdefault("EXVAD_TINY_MODELS", os.path.join(work, "tiny-models"))
    ensure_tiny_models(os.environ["EXVAD_TINY_MODELS"], seed=0)
    archive, det = os.path.join(work, "archive"), os.path.join(work, "detector", "model.pt")
    if not os.path.exists(archive):
        generate_archive(archive, SynthConfig(videos_per_class=args.videos_per_class, normal_videos=args.normal_videos,
                                              duration=(args.duration, args.duration), seed=1, workers=2))
    make_detector(det, args.profile, "synthetic")
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False)
    load_before = os.getloadavg()
    try:
        # a first index to rescore (what an archive already has)
        base = os.path.join(work, "index-base")
        run_process(ProcessConfig(archive=archive, index=base, profile=args.profile, label_set="synthetic"),
                    echo=lambda _m: None)
        full = os.path.join(work, "index-reprocessed")
        with ProcessTreeMeter() as m_full:
            t0 = time.perf_counter()
            s_full = run_process(ProcessConfig(archive=archive, index=full, profile=args.profile, label_set="synthetic",
                                               detector=det), echo=lambda _m: None)
            wall_full = time.perf_counter() - t0
        with ProcessTreeMeter() as m_re:
            t0 = time.perf_counter()
            s_re = run_rescore(RescoreConfig(base, det, set_current=False), echo=lambda _m: None)
            wall_re = time.perf_counter() - t0
        load_after = os.getloadavg()
        a = idx.read_table(full, "snippets", ["uri", "snippet_index", "anomaly_score"]).to_pylist()
        b = sc.read_scoring(base, "snippet_scores", sc.detector_id(det)).to_pylist()
        uris = {r["video_id"]: r["uri"] for r in idx.read_table(base, "videos", ["video_id", "uri"]).to_pylist()}
        fa = {(r["uri"], r["snippet_index"]): r["anomaly_score"] for r in a}
        fb = {(uris[r["video_id"]], r["snippet_index"]): r["anomaly_score"] for r in b}
        assert fa.keys() == fb.keys(), "rescored and reprocessed indexes hold different snippets"
        max_diff = float(np.max(np.abs([fa[k] - fb[k] for k in fa])))
    finally:
        ray.shutdown()
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    hours = s_full["hours"]
    rows = [["reprocess (`exvad process --detector`)", s_full["videos_processed"], wall_full, m_full.cpu_s],
            ["rescore (`exvad rescore`)", s_re["videos_scored"], wall_re, m_re.cpu_s]]
    speed, cpu_ratio = wall_full / wall_re, m_full.cpu_s / max(m_re.cpu_s, 1e-9)
    lite_note = "" if args.profile == "lite" else (
        f" Profile `{args.profile}`: the `lite` profile had not landed on main when this was measured.")
    body = (table(["run", "videos", "wall s", "CPU s (process tree)"], rows) +
            f"\n\nRescoring is **{speed:.1f}x faster** (wall) and uses **{cpu_ratio:.1f}x less CPU** than "
            f"reprocessing the same {s_full['videos_processed']} videos ({hours:.3f} h of video), measured in one "
            f"run, one Ray session ({os.cpu_count()} CPUs); target >= 20x. Largest snippet-score difference "
            f"between the two: {max_diff:.2g}. Load average before/after: "
            f"{load_before[0]:.1f}/{load_after[0]:.1f} (the machine is shared).{lite_note}")
    print(body)
    record(f"Rescore vs reprocess (profile {args.profile})", body, {
        f"rescore.{args.profile}.speedup_wall": round(speed, 2), f"rescore.{args.profile}.cpu_ratio": round(cpu_ratio, 2),
        f"rescore.{args.profile}.reprocess_wall_s": round(wall_full, 2), f"rescore.{args.profile}.rescore_wall_s": round(wall_re, 2),
        f"rescore.{args.profile}.videos": s_full["videos_processed"], f"rescore.{args.profile}.max_score_diff": max_diff,
        f"rescore.{args.profile}.load_avg_before_after": [round(load_before[0], 1), round(load_after[0], 1)]})


if __name__ == "__main__":
    main()
