"""Fixtures for the archive-job tests: tiny models and a mixed archive on the local S3 server."""

from __future__ import annotations

import os
import shutil

import pytest

from exvad_ray import storage


@pytest.fixture(scope="session")
def mixed_archive(s3_server, tmp_path_factory, real_clips_dir) -> dict:
    """s3://…/footage with synthetic videos (one per class), real clips and every bad-file case.

    Returns {"uri", "good": {uri: n_snippets}, "bad": {uri: reason}, "labels"}.
    """
    from exvad_ray.synth import SynthConfig, generate_archive
    from exvad_ray.video import probe_video
    from exvad_ray.video.badfiles import write_bad_videos

    bucket = s3_server.create_bucket("mixed-archive")
    archive = storage.join(bucket, "footage")
    local = tmp_path_factory.mktemp("mixed")
    generate_archive(str(local / "synth"), SynthConfig.small(videos_per_class=1, normal_videos=1))
    good: dict[str, int] = {}
    for path in sorted((local / "synth").rglob("*.mp4")):
        rel = path.relative_to(local / "synth").as_posix()
        uri = storage.join(archive, rel)
        storage.put_file(str(path), uri)
        good[uri] = probe_video(str(path)).n_snippets
    for clip in ("bikes.mp4", "carphone_pristine.mp4"):
        uri = storage.join(archive, "cam09", "2026-11-05", clip)
        storage.put_file(str(real_clips_dir / clip), uri)
        good[uri] = probe_video(str(real_clips_dir / clip)).n_snippets
    bad: dict[str, str] = {}
    for path, reason in write_bad_videos(str(local / "bad")).items():
        uri = storage.join(archive, "cam99", os.path.basename(path))  # no date in the path
        storage.put_file(path, uri)
        bad[uri] = reason
    for path in (local / "synth" / "annotations" / "labels").glob("*.parquet"):
        storage.put_file(str(path), storage.join(archive, "annotations", "labels", path.name))
    shutil.rmtree(local, ignore_errors=True)
    return {"uri": archive, "good": good, "bad": bad}
