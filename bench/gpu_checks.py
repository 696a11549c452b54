"""GPU checks of the project's own code paths (run on a lent GPU; see docs/GPU.md).

1. The model stages (tiny models of the paper's architectures) on CUDA in bf16: shapes, no NaNs,
   and CLIP features on the GPU (bf16) vs the CPU (fp32) agree (cosine similarity).
2. The detector at paper dimensions (D=512, 256-snippet windows) on CUDA: a few training steps
   (loss must fall) and scoring throughput (windows/s).

    python bench/gpu_checks.py --json OUT.json            # on the GPU machine
    python bench/gpu_checks.py --json OUT.json --record   # here, to record it
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "models"))


DEVICE = "cuda"


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def stage_checks(tmp: str) -> dict:
    import yaml

    from exvad_ray.models import make_tiny_models
    from exvad_ray.models import stages as ms
    from models_testutil import window_batch

    tiny = make_tiny_models(os.path.join(tmp, "tiny"))
    os.environ["EXVAD_TINY_MODELS"] = str(tiny)
    here = os.path.dirname(os.path.abspath(__file__))
    prof = yaml.safe_load(open(os.path.join(here, "..", "configs", "profiles", "tiny.yaml")))
    for key in ("clip", "captioner", "explainer"):
        prof[key]["device"], prof[key]["dtype"] = DEVICE, "bf16"
    gpu_profile = os.path.join(tmp, "tiny-gpu.yaml")
    yaml.safe_dump(prof, open(gpu_profile, "w"))
    out: dict = {}
    batch = window_batch(n_snippets=(256, 100), n_kf=(16, 7))
    t = time.perf_counter()
    b = ms.ClipImageStage(gpu_profile)(batch)
    b = ms.CaptionStage(gpu_profile)(b)
    b = ms.CaptionCleaningStage(gpu_profile)(b)
    b = ms.ExplanationStage(gpu_profile)(b)
    b = ms.TextEmbeddingStage(gpu_profile)(b)
    out["stages_wall_s"] = time.perf_counter() - t
    out["errors"] = [None if e is None or e != e else str(e) for e in b["error"]]
    feats = [np.asarray(f, np.float32) for f in b["visual_embedding"]]
    out["clip_shapes"] = [list(f.shape) for f in feats]
    out["clip_finite"] = bool(all(np.isfinite(f).all() for f in feats))
    out["explanations"] = [str(e)[:80] for e in b["explanation"]]
    cpu = ms.ClipImageStage("tiny")(window_batch(n_snippets=(256, 100), n_kf=(16, 7)))
    cos = [float((a * np.asarray(c, np.float32)).sum(1).min()) for a, c in zip(feats, cpu["visual_embedding"])]
    out["clip_gpu_bf16_vs_cpu_fp32_min_cosine"] = min(cos)
    return out


def detector_checks() -> dict:
    from exvad_ray.detector.config import DetectorConfig
    from exvad_ray.detector.inference import ExVADDetector
    from exvad_ray.detector.losses import LossWeights
    from exvad_ray.train.data import training_row
    from exvad_ray.train.loop import balanced_epoch, memory_batches, new_net, train_epoch
    from exvad_ray.train.synthetic import synthetic_feature_set

    names = ["Normal", "Fire", "Fighting", "FallingObject", "CrowdRush"]
    small = DEVICE == "cpu"  # checking the script itself: a few videos, one epoch
    recs, emb = synthetic_feature_set(names, n_per_class=2 if small else 16, n_normal=4 if small else 32, dim=512,
                                      length=(200, 256), seed=0)
    cfg = DetectorConfig(embed_dim=512, num_classes=len(names))
    net = new_net(cfg, emb).to(DEVICE)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-4)
    rows = [training_row(r, names, cfg.visual_length) for r in recs]
    rng = np.random.default_rng(0)
    normal = [r for r in rows if not r["is_anomaly"]]
    anomaly = [r for r in rows if r["is_anomaly"]]
    losses = []
    t = time.perf_counter()
    for _ in range(1 if small else 8):
        parts = train_epoch(net, opt, balanced_epoch(lambda: memory_batches(normal, 8, rng),
                                                     lambda: memory_batches(anomaly, 8, rng)), LossWeights(), DEVICE)
        losses.append(float(parts.get("loss", next(iter(parts.values())))))
    sync()
    train_s = time.perf_counter() - t
    det = ExVADDetector(net.eval(), names, device=DEVICE)
    n_win = 4 if small else 64
    feats = np.random.default_rng(1).normal(size=(256 * n_win, 512)).astype(np.float32)
    det.score(feats[:256])
    sync()
    t = time.perf_counter()
    det.score(feats)
    sync()
    score_s = time.perf_counter() - t
    return {"detector_epoch_losses": losses, "detector_train_s": train_s,
            "detector_score_windows_per_s": n_win / score_s, "detector_score_snippets_per_s": 256 * n_win / score_s}


def record(res: dict) -> None:
    """Write a --json result into bench/RESULTS.md and bench/results.json (run here, not on the GPU box)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _results import machine, record as rec, table

    st, dt = res["stages"], res["detector"]
    body = table(["check", "result"], [
        ["model stages (tiny models) on CUDA in bf16: errors", str(st["errors"])],
        ["CLIP features GPU bf16 vs CPU fp32, min cosine", f"{st['clip_gpu_bf16_vs_cpu_fp32_min_cosine']:.4f}"],
        ["detector (D=512) 8 epochs, 96 videos: loss first -> last",
         f"{dt['detector_epoch_losses'][0]:.3f} -> {dt['detector_epoch_losses'][-1]:.3f} in {dt['detector_train_s']:.1f} s"],
        ["detector scoring, 256-snippet windows", f"{dt['detector_score_windows_per_s']:,.0f} windows/s "
                                                  f"({dt['detector_score_snippets_per_s']:,.0f} snippets/s)"],
    ])
    m = machine()
    m["gpu"] = res["device"]
    m["cpu"], m["cores"], m["memory_gib"] = "lent GPU host", 16, 128
    rec("GPU checks of the project's code", body + f"\n\ntorch {res['torch']} on the GPU host.",
        {"gpu_checks.device": res["device"], "gpu_checks.clip_bf16_min_cosine": st["clip_gpu_bf16_vs_cpu_fp32_min_cosine"],
         "gpu_checks.detector_score_windows_per_s": dt["detector_score_windows_per_s"],
         "gpu_checks.detector_loss_first": dt["detector_epoch_losses"][0],
         "gpu_checks.detector_loss_last": dt["detector_epoch_losses"][-1]}, machine_info=m)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", required=True, help="where the result goes (or, with --record, where it is read)")
    ap.add_argument("--record", action="store_true", help="record an earlier --json result into bench/RESULTS.md")
    ap.add_argument("--device", default="cuda", help="cuda (default), or cpu to check the script itself")
    args = ap.parse_args()
    global DEVICE
    DEVICE = args.device
    if args.record:
        record(json.load(open(args.json)))
        return 0
    if DEVICE == "cuda" and not torch.cuda.is_available():
        raise SystemExit("needs a CUDA device")
    res: dict = {"device": torch.cuda.get_device_name(0) if DEVICE == "cuda" else "cpu", "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        for name, fn in (("stages", lambda: stage_checks(tmp)), ("detector", detector_checks)):
            try:
                res[name] = fn()
            except Exception as exc:  # noqa: BLE001 - report and go on to the next check
                import traceback

                res[name] = {"failed": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-3000:]}
    print(json.dumps(res, indent=1, default=str))
    with open(args.json, "w") as f:
        json.dump(res, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
