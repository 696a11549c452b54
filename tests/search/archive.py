"""The test archive for search: synthetic videos laid out so that every way of knowing the recording
time occurs (path date and time, container creation_time, path date only, nothing), indexed by the
real archive job (tiny profile, zero-shot, local Ray)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

#: relative path in the archive -> creation_time tag written into the container (None: none)
LAYOUT = {
    "cam01/20261124_223015_fighting.mp4": None,       # path date + time
    "cam01/20261124_231500_normal.mp4": None,
    "cam02/2026-11-25/crowdrush.mp4": "2026-11-25T06:10:00.000000Z",  # container time wins over a path date
    "cam02/2026-11-25/fire.mp4": None,                 # path date only
    "cam03/clip_fallingobject.mp4": None,                  # nothing: recorded_at null
}


def set_creation_time(src: str, dest: str, creation_time: str) -> None:
    """Remux `src` to `dest` (no re-encode) with a container creation_time tag."""
    import av

    with av.open(src) as inp, av.open(dest, "w", format="mp4") as out:
        out.metadata["creation_time"] = creation_time
        istream = inp.streams.video[0]
        ostream = out.add_stream_from_template(istream)
        for packet in inp.demux(istream):
            if packet.dts is None:
                continue
            packet.stream = ostream
            out.mux(packet)


def build_archive(root: Path, work: Path) -> dict[str, str]:
    """Write the archive under `root`; returns {relpath: source synthetic class}."""
    from exvad_ray.synth import SynthConfig, generate_archive

    generate_archive(str(work), SynthConfig.small(videos_per_class=1, normal_videos=1, duration=(4.0, 5.0),
                                                  classes=("Fighting", "CrowdRush", "Fire", "FallingObject")))
    made = {p.stem.split("_")[0].lower(): p for p in sorted(work.rglob("*.mp4"))}
    out = {}
    for rel, tag in LAYOUT.items():
        kind = Path(rel).stem.split("_")[-1]
        src = str(made[kind])
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if tag:
            set_creation_time(src, str(dest), tag)
        else:
            shutil.copyfile(src, dest)
        out[rel] = kind
    shutil.rmtree(work, ignore_errors=True)
    return out


def index_config(archive: Path, index: Path, index_format: str = "delta"):
    from exvad_ray.detector.localize import LocalizationConfig
    from exvad_ray.pipeline.job import ProcessConfig

    # the tiny models' scores sit near 0.72: a threshold there splits videos into several segments
    loc = LocalizationConfig(threshold=0.72, min_snippets=1, single_snippet_score=0.0, max_gap=0)
    return ProcessConfig(archive=str(archive), index=str(index), profile="tiny", label_set="synthetic",
                         progress_interval_s=30, localization=loc, index_format=index_format)


def build_index(archive: Path, index: Path, index_format: str = "delta") -> dict:
    from exvad_ray.pipeline.job import run_process

    return run_process(index_config(archive, index, index_format), echo=lambda *a, **k: None)


if __name__ == "__main__":  # build one by hand: python tests/search/archive.py DIR
    import sys
    import time

    import ray

    base = Path(sys.argv[1])
    t = time.time()
    print(build_archive(base / "archive", base / "work"), time.time() - t)
    ray.init(address="local", num_cpus=2, object_store_memory=300 * 1024**2, include_dashboard=False)
    print(build_index(base / "archive", base / "index"), time.time() - t)
    os._exit(0)
