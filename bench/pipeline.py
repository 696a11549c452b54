"""End-to-end archive-job throughput with the tiny models on this machine, against
(a) the sampled-decode ceiling on the same videos in the same run (bench/decode.py's measure), and
(b) a naive sequential per-video loop that calls the very same stage code in one process,
plus peak memory (RSS of the driver and all its Ray workers).

    python bench/pipeline.py [--explainer none|transformers] [--videos-per-class N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _results import record, table  # noqa: E402
from decode import measure  # noqa: E402


class PeakRSS:
    """Samples the RSS of this process and all its descendants (Ray's raylet and workers)."""

    def __init__(self, interval: float = 0.25):
        import psutil

        self.psutil, self.interval, self.peak = psutil, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _total(self) -> int:
        me = self.psutil.Process()
        total = 0
        for p in [me, *me.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except self.psutil.Error:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self._total())

    def __enter__(self) -> PeakRSS:
        self.peak = self._total()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _batch(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for key in rows[0]:
        col = np.empty(len(rows), dtype=object)
        col[:] = [r[key] for r in rows]
        out[key] = col
    return out


def sequential(items: list[dict[str, Any]], index: str, explainer: str, label_set: str) -> float:
    """The naive loop: one video at a time, one window at a time, the same stage classes."""
    from exvad_ray.pipeline.assemble import VideoAssembler, VideoContext
    from exvad_ray.pipeline.decode import DecodeStage
    from exvad_ray.pipeline.fused import FusedModelStage
    from exvad_ray.pipeline.scoring import scorer_class_names
    from exvad_ray.video import SamplingConfig

    models = FusedModelStage("tiny", explainer, None, label_set)
    models.setup()  # models load once, outside the timing (as in the actors' setup)
    ctx = VideoContext(index, "bench-seq", scorer_class_names(None, label_set), "zero-shot", label_set)
    assembler = VideoAssembler(ctx)
    decode = DecodeStage(index, "bench-seq", SamplingConfig())
    t0 = time.perf_counter()
    for item in items:
        for row in decode(item):
            assembler(models(_batch([row])))
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--explainer", choices=["none", "transformers"], default="none")
    ap.add_argument("--videos-per-class", type=int, default=3)
    ap.add_argument("--normal-videos", type=int, default=6)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    for k, v in {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled",
                 "RAY_USAGE_STATS_ENABLED": "0"}.items():
        os.environ.setdefault(k, v)
    import ray

    from exvad_ray.models import ensure_tiny_models
    from exvad_ray.pipeline.job import ProcessConfig, list_work, run_process
    from exvad_ray.storage import list_videos
    from exvad_ray.synth import SynthConfig, generate_archive
    from exvad_ray.video import SamplingConfig

    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("EXVAD_TINY_MODELS", os.path.join(tmp, "tiny"))
        ensure_tiny_models(os.environ["EXVAD_TINY_MODELS"])
        archive = os.path.join(tmp, "archive")
        generate_archive(archive, SynthConfig(videos_per_class=args.videos_per_class,
                                              normal_videos=args.normal_videos, duration=(10.0, 16.0)))
        videos = list_videos(archive)
        frames = cpu = 0.0
        for v in videos:
            m = measure(v.uri, SamplingConfig(), repeats=1)
            frames += m["frames"]
            cpu += m["cpu_s"]
        ceiling = frames / cpu * cores  # decode parallelises across videos: per-core rate x cores
        hours = frames / 25.0 / 3600

        cfg = ProcessConfig(archive=archive, index=os.path.join(tmp, "idx-seq"), explainer=args.explainer,
                            label_set="synthetic")
        items, _ = list_work(cfg, "2026-01-01")
        with PeakRSS() as seq_mem:
            seq_s = sequential(items, cfg.index, args.explainer, "synthetic")

        ray.init(num_cpus=cores, include_dashboard=False, object_store_memory=1024**3)
        cfg = ProcessConfig(archive=archive, index=os.path.join(tmp, "idx-pipe"), explainer=args.explainer,
                            label_set="synthetic", progress_interval_s=30)
        with PeakRSS() as pipe_mem:
            t0 = time.perf_counter()
            summary = run_process(cfg, echo=lambda *_: None)
            pipe_s = time.perf_counter() - t0
        ray.shutdown()
        assert summary["videos_processed"] == len(videos), summary

    pipe_fps, seq_fps = frames / pipe_s, frames / seq_s
    flat = {
        f"pipeline.{args.explainer}.videos": len(videos), f"pipeline.{args.explainer}.src_frames": int(frames),
        f"pipeline.{args.explainer}.decode_ceiling_src_fps": round(ceiling, 1),
        f"pipeline.{args.explainer}.src_fps": round(pipe_fps, 1),
        f"pipeline.{args.explainer}.ratio_to_decode_ceiling": round(pipe_fps / ceiling, 3),
        f"pipeline.{args.explainer}.sequential_src_fps": round(seq_fps, 1),
        f"pipeline.{args.explainer}.speedup_vs_sequential": round(seq_s / pipe_s, 2),
        f"pipeline.{args.explainer}.video_hours_per_hour": round(hours / (pipe_s / 3600), 2),
        f"pipeline.{args.explainer}.first_video_s": summary.get("first_video_s"),
        f"pipeline.{args.explainer}.steady_video_hours_per_hour": summary.get("steady_video_hours_per_hour"),
        f"pipeline.{args.explainer}.sequential_video_hours_per_hour": round(hours / (seq_s / 3600), 2),
        f"pipeline.{args.explainer}.peak_rss_gib": round(pipe_mem.peak / 1024**3, 2),
        f"pipeline.{args.explainer}.sequential_peak_rss_gib": round(seq_mem.peak / 1024**3, 2),
    }
    print("\n".join(f"{k}: {v}" for k, v in flat.items()))
    if not args.no_record:
        rows = [
            ["sampled decode ceiling (same videos)", ceiling, "1.00", "", ""],
            ["naive sequential loop (same stages)", seq_fps, f"{seq_fps / ceiling:.3f}", "1.00",
             f"{seq_mem.peak / 1024**3:.2f}"],
            ["archive job (Ray Data, local)", pipe_fps, f"{pipe_fps / ceiling:.3f}", f"{seq_s / pipe_s:.2f}",
             f"{pipe_mem.peak / 1024**3:.2f}"],
        ]
        body = table(["", "src frames/s", "ratio to ceiling", "speed-up vs sequential", "peak RSS GiB"], rows)
        body += (f"\n\n{len(videos)} synthetic videos, {int(frames)} frames ({hours * 60:.1f} min of video), "
                 f"explainer `{args.explainer}`, tiny models, {cores} cores. Pipeline time includes actor start-up and "
                 f"model loading (the sequential loop's model loading is excluded); "
                 f"{flat[f'pipeline.{args.explainer}.video_hours_per_hour']} video-hours per hour end to end; "
                 f"first video done after {summary.get('first_video_s')} s (start-up), then "
                 f"{summary.get('steady_video_hours_per_hour')} video-hours per hour (steady state) against "
                 f"{flat[f'pipeline.{args.explainer}.sequential_video_hours_per_hour']} for the sequential loop "
                 "(the rate after the first video overstates the steady state: decoding runs ahead while the "
                 "model actor starts).")
        if pipe_fps / ceiling < 0.7 or seq_s / pipe_s < 1.5:
            body += (f"\n\n**Targets not met** (ratio to the decode ceiling >= 0.7, speed-up >= 1.5x): on an archive "
                     f"this small the job is start-up bound: {summary.get('first_video_s')} s pass before the first "
                     f"video is written (Ray Data start, the fused model actor importing torch and loading CLIP and "
                     f"the label embeddings), while the whole sequential loop takes {seq_s:.1f} s once its models "
                     "are loaded. A benchmark long enough to amortise start-up (tens of minutes of processing on "
                     "2 cores) is still to be run.")
        record(f"Archive job throughput (explainer {args.explainer})", body, flat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
