"""``exvad synth ARCHIVE_URI``: write a deterministic synthetic camera archive with labels."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from exvad_ray.synth.plan import SynthConfig, SynthConfigError, parse_duration, parse_size


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "synth",
        help="generate a synthetic labelled video archive (normal activity + Fire, Fighting, FallingObject, CrowdRush)",
        description="Write H.264 MP4 videos of fixed camera scenes with injected anomalies to ARCHIVE_URI "
        "(camNN/YYYY-MM-DD/<Name>_<nnn>.mp4), with UCF-Crime temporal annotations, a Parquet labels "
        "table and train/val/test split lists under annotations/. Same seed -> same bytes.",
    )
    p.add_argument("archive", metavar="ARCHIVE_URI", help="local path, file:// or s3:// location")
    p.add_argument("--small", action="store_true", help="tiny preset for tests: 2 per class, 4 normal, 4-6 s")
    p.add_argument("--videos-per-class", type=int, help="videos per anomaly class (default 10; --small 2)")
    p.add_argument("--normal-videos", type=int, help="normal videos (default 20; --small 4)")
    p.add_argument("--duration", help="seconds per video, N or MIN-MAX (default 8-20; --small 4-6)")
    p.add_argument("--size", default="320x240", help="frame size WxH (default 320x240)")
    p.add_argument("--fps", type=float, default=25.0, help="frames per second (default 25)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--cameras", type=int, default=3, help="number of cameras (default 3)")
    p.add_argument("--days", type=int, default=3, help="number of recording dates (default 3)")
    p.add_argument("--workers", type=int, default=1, help="encoding processes (default 1; output is the same)")
    p.add_argument("--overwrite", action="store_true", help="write into a location that is not empty")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> SynthConfig:
    base = SynthConfig.small() if args.small else SynthConfig()
    width, height = parse_size(args.size)
    changes: dict[str, object] = {"width": width, "height": height, "fps": args.fps, "seed": args.seed,
                                  "cameras": args.cameras, "days": args.days, "workers": args.workers}
    if args.videos_per_class is not None:
        changes["videos_per_class"] = args.videos_per_class
    if args.normal_videos is not None:
        changes["normal_videos"] = args.normal_videos
    if args.duration is not None:
        changes["duration"] = parse_duration(args.duration)
    config = dataclasses.replace(base, **changes)  # type: ignore[arg-type]
    config.validate()
    return config


def run(args: argparse.Namespace) -> int:
    from exvad_ray.synth.archive import archive_is_empty, generate_archive

    config = config_from_args(args)
    if not args.overwrite and not archive_is_empty(args.archive):
        raise SynthConfigError(f"{args.archive} is not empty; choose a new location or pass --overwrite")
    say = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    summary = generate_archive(args.archive, config, progress=say)
    print(summary.text())
    return 0
