"""The reliability findings end to end on a real local Ray (tiny models, local archive):

- a video whose decoding task keeps crashing (SIGSEGV injected in the worker) is retried a fixed
  number of times, then becomes one `decoder_crash` error row, and the job completes (finding 1);
- VFR video gets presentation-timestamp times and the `timing` flag in the videos table (2);
- a file rewritten in place is reprocessed and its old rows are no longer served (3);
- `--retry-errors` that succeeds leaves the video ok, not also failed (5);
- the summary splits the listing (7) and a rerun with another threshold refuses (7).
"""

from __future__ import annotations

import dataclasses
import os
import shutil

import pytest

from exvad_ray.errors import ConfigError
from exvad_ray import index as idx
from exvad_ray.detector.localize import LocalizationConfig
from exvad_ray.pipeline.guard import FAULT_ENV, MAX_ATTEMPTS
from exvad_ray.pipeline.job import ProcessConfig, run_process
from exvad_ray.video.badfiles import _encode_frames, encode_test_video, write_bad_videos

pytestmark = pytest.mark.slow


def _ray(env: dict[str, str]):
    import ray

    os.environ.update(env)
    ray.init(num_cpus=2, object_store_memory=300 * 1024**2, include_dashboard=False)


def _stop(env: dict[str, str]) -> None:
    import ray

    ray.shutdown()
    for k in env:
        os.environ.pop(k, None)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("rel")
    a = root / "archive" / "cam1"
    a.mkdir(parents=True)
    encode_test_video(str(a / "steady.mp4"), 48, seed=1)
    vfr = [i * 10 for i in range(60)] + [600 + j * 200 for j in range(60)]
    _encode_frames(str(a / "vfr.mp4"), vfr, options={"preset": "ultrafast", "threads": "1"}, rate=100)
    encode_test_video(str(a / "crash_me.mp4"), 40, seed=2)
    bad = write_bad_videos(str(root / "bad"))
    shutil.copy(next(p for p in bad if p.endswith("/truncated.mp4")), a / "truncated.mp4")
    (a / "notes.txt").write_text("not a video")
    return root


def test_reliability_end_to_end(tiny_dir, archive):
    cfg = ProcessConfig(archive=str(archive / "archive"), index=str(archive / "index"), label_set="synthetic",
                        profile="tiny",
                        explainer="none", decode_tasks=1, progress_interval_s=30)
    fault = {FAULT_ENV: "crash_me:SEGV"}
    _ray(fault)
    try:
        s1 = run_process(cfg)
    finally:
        _stop(fault)
    # finding 1: the crashing video is an error row after a fixed number of attempts; the job ended
    assert (s1["videos_processed"], s1["videos_failed"], s1["videos_new"]) == (2, 2, 4)
    assert s1["files_ignored"] == {"not a video extension": 1}
    errors = {os.path.basename(r["uri"]): r for r in idx.read_table(cfg.index, "errors").to_pylist()}
    assert errors["crash_me.mp4"]["reason"] == "decoder_crash", errors["crash_me.mp4"]
    assert f"{MAX_ATTEMPTS} attempts" in errors["crash_me.mp4"]["message"]
    assert errors["truncated.mp4"]["reason"] == "truncated" and errors["truncated.mp4"]["detail"]
    # finding 2: true times for VFR video, and the flag
    videos = {os.path.basename(r["uri"]): r for r in idx.read_table(cfg.index, "videos").to_pylist()}
    assert videos["vfr.mp4"]["timing"] == "variable" and videos["steady.mp4"]["timing"] == "constant"
    assert 12.4 <= videos["vfr.mp4"]["duration_s"] <= 12.61
    snip = idx.read_table(cfg.index, "snippets", columns=["uri", "snippet_index", "start_s"]).to_pylist()
    vfr_starts = sorted((r["snippet_index"], r["start_s"]) for r in snip if r["uri"].endswith("vfr.mp4"))
    assert vfr_starts[6][1] == pytest.approx(7.8, abs=1e-3)  # index / average fps said 9.52 * ... = 10.1 s

    # finding 7: another threshold on the same index refuses before any work
    with pytest.raises(ConfigError, match="exvad rescore"):
        run_process(dataclasses.replace(cfg, localization=LocalizationConfig(threshold=0.9)))

    # finding 3 + 5: rewrite a file in place; retry the errors without the fault
    steady = archive / "archive" / "cam1" / "steady.mp4"
    old_steady = videos["steady.mp4"]["video_id"]
    encode_test_video(str(steady), 48, seed=7)
    os.utime(steady, (os.stat(steady).st_mtime + 10,) * 2)
    _ray({})
    try:
        s2 = run_process(dataclasses.replace(cfg, retry_errors=True))
    finally:
        _stop({})
    assert (s2["videos_changed"], s2["videos_retried"], s2["videos_done_before"]) == (1, 2, 1), s2
    assert (s2["videos_processed"], s2["videos_failed"]) == (2, 1), s2
    videos = idx.read_table(cfg.index, "videos").to_pylist()
    assert sorted(os.path.basename(v["uri"]) for v in videos) == ["crash_me.mp4", "steady.mp4", "vfr.mp4"]
    assert old_steady not in {v["video_id"] for v in videos}
    snippet_ids = set(idx.read_table(cfg.index, "snippets", columns=["video_id"]).column("video_id").to_pylist())
    assert old_steady not in snippet_ids and len(snippet_ids) == 3
    errors = idx.read_table(cfg.index, "errors").to_pylist()
    assert [os.path.basename(e["uri"]) for e in errors] == ["truncated.mp4"]  # crash_me's row superseded
    # on Delta tables (the default) replaced and retried rows are deletes: gone from what any reader sees,
    # before any compaction
    assert idx.is_delta_index(cfg.index)
    stored = idx.read_table(cfg.index, "errors", current=False).to_pylist()
    assert [os.path.basename(e["uri"]) for e in stored] == ["truncated.mp4"]
    stored_ids = set(idx.read_table(cfg.index, "snippets", columns=["video_id"], current=False).column("video_id").to_pylist())
    assert old_steady not in stored_ids
    idx.compact(cfg.index)
    raw = idx.read_table(cfg.index, "snippets", columns=["video_id"], current=False).column("video_id").to_pylist()
    assert old_steady not in set(raw)
