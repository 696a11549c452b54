"""Load test: many short videos on the local S3 server through the archive job, with the process
tree's peak memory and a check that nothing failed or was retried.

    nice -n 10 python bench/reliability_load.py --videos 2000 [--no-record]

Videos are 24-frame 64x48 H.264 clips (20 distinct ones, each uploaded under many names: distinct
URIs are distinct videos to the job). Explainer `none`, tiny models, local Ray on this machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _results import record, table  # noqa: E402
from pipeline import ProcessTreeMeter  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=2000)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    for k, v in {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled",
                 "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
        os.environ.setdefault(k, v)
    import ray

    from exvad_ray import storage
    from exvad_ray.models.tiny import ensure_tiny_models
    from exvad_ray import index as idx
    from exvad_ray.pipeline.job import ProcessConfig, run_process
    from exvad_ray.storage.s3server import LocalS3Server, s3_environment
    from exvad_ray.video.badfiles import encode_test_video

    tmp = tempfile.mkdtemp(prefix="exvad-load-")
    os.environ["EXVAD_TINY_MODELS"] = str(ensure_tiny_models(os.path.join(tmp, "tiny"), seed=0))
    load_before = os.getloadavg()
    with LocalS3Server() as server, s3_environment(server):
        bucket = server.create_bucket("load")
        archive = storage.join(bucket, "archive")
        clips = []
        for i in range(20):
            p = os.path.join(tmp, f"c{i}.mp4")
            encode_test_video(p, 24, seed=i)
            clips.append(p)
        t0 = time.time()
        fs, _ = storage.filesystem(bucket)
        for n in range(args.videos):
            fs.put_file(clips[n % 20], storage.join(archive, f"cam{n % 8}", f"2026-03-{1 + n % 28:02d}",
                                                   f"v{n:05d}.mp4")[len("s3://"):])
        upload_s = time.time() - t0
        ray.init(num_cpus=os.cpu_count(), object_store_memory=400 * 1024**2, include_dashboard=False,
                 log_to_driver=False)
        cfg = ProcessConfig(archive=archive, index=storage.join(bucket, "index"), label_set="synthetic",
                            profile="tiny", explainer="none", progress_interval_s=60)
        with ProcessTreeMeter() as meter:
            t0 = time.time()
            summary = run_process(cfg, echo=lambda *_: None)
            wall = time.time() - t0
        ray.shutdown()
        videos = idx.read_table(cfg.index, "videos", columns=["uri"]).column("uri").to_pylist()
        once = len(videos) == len(set(videos)) == args.videos
    load_after = os.getloadavg()
    flat = {
        "reliability_load.videos": args.videos, "reliability_load.wall_s": round(wall, 1),
        "reliability_load.videos_per_s": round(args.videos / wall, 2),
        "reliability_load.peak_rss_gib": round(meter.peak / 1024**3, 2),
        "reliability_load.failed": summary["videos_failed"],
        "reliability_load.videos_retried_after_crash": summary.get("videos_crash_retried"), "reliability_load.exactly_once": once,
        "reliability_load.upload_s": round(upload_s, 1),
        "reliability_load.load_avg_before": round(load_before[0], 1),
        "reliability_load.load_avg_after": round(load_after[0], 1),
    }
    print("\n".join(f"{k}: {v}" for k, v in flat.items()))
    if not args.no_record:
        body = table(["videos", "wall s", "videos/s", "peak RSS GiB (driver + Ray)", "failed", "exactly once"],
                     [[args.videos, round(wall, 1), round(args.videos / wall, 2), round(meter.peak / 1024**3, 2),
                       summary["videos_failed"], once]])
        body += (f"\n\n24-frame 64x48 H.264 clips on the local S3 server (SeaweedFS), index on the same server, "
                 f"explainer `none`, tiny models, local Ray with {os.cpu_count()} CPUs. Upload {upload_s:.0f} s "
                 f"(not in the wall time). The machine was shared: 1-minute load average {load_before[0]:.1f} "
                 f"before and {load_after[0]:.1f} after, so times are several-fold slower than on an idle "
                 "machine; memory is what this run bounds.")
        record("Reliability: load on local S3", body, flat)
    return 0 if once and summary["videos_failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
