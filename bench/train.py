"""Two training benchmarks.

Speed (default): epoch time of the Ray Train loop (TorchTrainer, Ray Data shards, checkpoint per
epoch) against a plain single-process torch loop on the same synthetic features; records the ratio.

    python bench/train.py [--epochs 4] [--workers 1] [--videos 240] [--dim 512]

Quality (--quality): detector settings compared on the same features and seeds: the old defaults
(before issue 16), the new defaults, and the dataset presets (--preset ucf|xd|all). Features come
from the synthetic archive processed ONCE with --profile (index kept under --work), and from a
synthetic feature set with a known signal. Each variant trains with the plain loop (the Ray job's
loop, batches and val selection) and is scored once on test: frame AUC, AP, mAP avg, accuracy.

    python bench/train.py --quality [--profile tiny|lite] [--preset all] [--seeds 0,1,2] [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
for _k, _v in {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled",
               "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}.items():
    os.environ.setdefault(_k, _v)
sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from _results import record, table  # noqa: E402
from exvad_ray.detector import DetectorConfig  # noqa: E402
from exvad_ray.train.data import training_row  # noqa: E402
from exvad_ray.train.loop import TrainConfig, balanced_epoch, memory_batches, new_net, train_epoch  # noqa: E402
from exvad_ray.train.synthetic import synthetic_feature_set  # noqa: E402

NAMES = ["Normal", "Fight", "Fire", "Theft", "Arson"]


def main() -> None:
    if "--quality" in sys.argv:
        from train_quality import main as quality

        sys.argv.remove("--quality")
        return quality()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--videos", type=int, default=240, help="training videos (half normal)")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1, help="torch threads in each loop")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    per_class = max(1, args.videos // 2 // (len(NAMES) - 1))
    train, emb = synthetic_feature_set(NAMES, n_per_class=per_class, n_normal=args.videos // 2, dim=args.dim,
                                       length=(100, 400), seed=0)
    det_cfg = DetectorConfig(embed_dim=args.dim, num_classes=len(NAMES))
    cfg = TrainConfig(epochs=args.epochs, batch_size=32, lr=1e-4)

    # plain loop: rows in memory, same batches, same model and optimiser
    rows = [training_row(r, NAMES, det_cfg.visual_length) for r in train]
    normal = [r for r in rows if not r["is_anomaly"]]
    anomaly = [r for r in rows if r["is_anomaly"]]
    rng = np.random.default_rng(0)
    net = new_net(det_cfg, emb)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr)
    plain = []
    for _ in range(args.epochs):
        t0 = time.perf_counter()
        train_epoch(net, opt, balanced_epoch(lambda: memory_batches(normal, 16, rng),
                                             lambda: memory_batches(anomaly, 16, rng)), cfg.loss, "cpu")
        plain.append(time.perf_counter() - t0)

    import ray

    from exvad_ray.train.ray_job import RayTrainSettings, run_ray_training

    ray.init(num_cpus=2, object_store_memory=300 * 1024**2, include_dashboard=False)
    with tempfile.TemporaryDirectory() as tmp:
        out = run_ray_training(train, [], NAMES, emb, det_cfg, cfg,
                               RayTrainSettings(num_workers=args.workers, storage_path=tmp, name="bench"),
                               torch_threads=args.threads)
    ray.shutdown()
    ray_epochs = out.epoch_s
    # epoch 0 includes Ray Data start-up; the steady state is the median of the rest
    p_med, r_med = statistics.median(plain[1:] or plain), statistics.median(ray_epochs[1:] or ray_epochs)
    ratio = r_med / p_med
    body = (f"{args.videos} synthetic videos (100-400 snippets, D={args.dim}), batch 32, {args.epochs} epochs, "
            f"{args.workers} Ray Train worker(s), torch threads {args.threads}. Ray epoch = train loop over "
            "Ray Data shards (time measured inside the worker, checkpoint upload excluded); whole fit() "
            f"wall including start-up {out.wall_s:.1f} s.\n\n"
            + table(["loop", "first epoch s", "median epoch s (2..)", "ratio"],
                    [["plain torch", f"{plain[0]:.2f}", f"{p_med:.2f}", "1.00"],
                     ["Ray Train", f"{ray_epochs[0]:.2f}", f"{r_med:.2f}", f"{ratio:.2f}"]]))
    record("Training loop: Ray Train vs plain torch", body,
           {"train_plain_epoch_s": p_med, "train_ray_epoch_s": r_med, "train_ray_overhead_ratio": ratio,
            "train_ray_fit_wall_s": out.wall_s})
    print(body)


if __name__ == "__main__":
    main()
