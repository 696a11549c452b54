"""The hostile corpus (exvad_ray.video.badfiles.write_corpus): every odd-but-valid video is sampled
with the right times, every broken one raises its reason; decode memory stays under the stated
bound; AV1 (which decord cannot open) falls back to PyAV; error reasons are one list."""

from __future__ import annotations

import os
import re

import av
import numpy as np
import pytest

from exvad_ray import errors
from exvad_ray.errors import VideoDecodeError
from exvad_ray.video import SamplingConfig, iter_windows, probe_video, snippet_layout
from exvad_ray.video.badfiles import write_corpus
from exvad_ray.video.sampling import _decode_size


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(str(tmp_path_factory.mktemp("corpus")))


def pts_seconds(path: str) -> list[float]:
    """Every frame's presentation time by decoding with PyAV (the reference)."""
    with av.open(path) as c:
        s = c.streams.video[0]
        times = sorted(float(f.pts * s.time_base) for f in c.decode(video=0))
    return [t - times[0] for t in times]


def test_corpus_has_twenty_kinds(corpus):
    good = [p for p, e in corpus.items() if e.reason is None]
    bad = [p for p, e in corpus.items() if e.reason]
    assert len(corpus) >= 20 and len(good) >= 10 and len(bad) >= 10


def test_each_case_is_sampled_or_rejected_with_its_reason(corpus):
    for path, expect in sorted(corpus.items()):
        name = os.path.basename(path)
        if expect.reason:
            with pytest.raises(VideoDecodeError) as err:
                list(iter_windows(path))
            assert err.value.reason == expect.reason, (name, str(err.value), err.value.detail)
            assert "\n" not in str(err.value)
            continue
        info = probe_video(path)
        rows = list(iter_windows(path, info=info))
        assert info.timing == expect.timing, name
        assert abs(info.duration_s - expect.duration_s) <= 0.11, (name, info.duration_s)
        times = pts_seconds(path)
        layout = snippet_layout(info.n_frames)
        start_s = np.concatenate([r["start_s"] for r in rows])
        np.testing.assert_allclose(start_s, [times[i] for i in layout[:, 0]], atol=2e-3, err_msg=name)
        assert all(r["frames"].shape[1:] == (224, 224, 3) for r in rows), name


def test_vfr_snippet_times_are_presentation_times(corpus):
    """Finding 2: 60 frames at 100 fps then 60 at 5 fps. Snippet 6 (frames 96..111) starts at
    0.6 + 36 * 0.2 = 7.8 s and its middle frame (103) is at 9.2 s; index / average rate said 3.84 s."""
    path = next(p for p in corpus if p.endswith("vfr.mp4"))
    info = probe_video(path)
    (row,) = list(iter_windows(path, info=info))
    assert info.timing == "variable" and info.n_frames == 120
    assert row["start_s"][6] == pytest.approx(7.8, abs=1e-3)
    assert row["start_s"][4] == pytest.approx(0.6 + 4 * 0.2, abs=1e-3)
    assert row["start_s"][1] == pytest.approx(0.16, abs=1e-3)
    assert row["end_s"][-1] == pytest.approx(info.duration_s, abs=1e-3)
    assert 103 in row["frame_index"]
    assert row["keyframe_s"].max() <= row["end_s"][-1]


def test_av1_falls_back_to_pyav(corpus):
    """Finding 4: AV1 is a valid codec; decord cannot open it, PyAV (dav1d) decodes it."""
    path = next(p for p in corpus if p.endswith("av1.mp4"))
    info = probe_video(path)
    assert info.codec in ("libdav1d", "av1") and info.backend == "pyav"
    (row,) = list(iter_windows(path, info=info))
    with av.open(path) as c:
        ref = next(c.decode(video=0)).to_ndarray(format="rgb24")
    assert row["frames"].shape == (3, 224, 224, 3)
    assert abs(float(row["frames"][0].mean()) - float(ref.mean())) < 12  # the same picture, resized


def test_decoded_frame_size_is_capped_whatever_the_aspect():
    """Finding 1: a 16x8000 stream used to decode at 224x112000 (75 MB a frame)."""
    cfg = SamplingConfig()
    for w, h in ((16, 8000), (8000, 16), (7680, 4320), (640, 480), (224, 224), (8192, 16)):
        dw, dh = _decode_size(w, h, cfg)
        assert dw * dh * 3 <= cfg.max_decoded_frame_bytes and min(dw, dh) >= cfg.image_size, (w, h, dw, dh)
    assert cfg.max_window_bytes < 64 * 2**20  # the bound docs/PIPELINE.md states (60.2 MB)


def test_peak_rss_under_bound_on_extreme_aspect(corpus):
    """Sampling the extreme-aspect videos grows peak RSS by less than the stated per-task frame
    bound plus the decoder's own buffers (measured with ru_maxrss)."""
    import resource

    cfg = SamplingConfig()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    for name in ("tall_16x8000.mp4", "wide_8000x16.mp4"):
        path = next(p for p in corpus if p.endswith(name))
        for _ in iter_windows(path, cfg):
            pass
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    assert grown < cfg.max_window_bytes + 64 * 2**20, grown


def test_reason_list_is_what_sampling_raises():
    """errors.DECODE_REASONS names exactly the reasons the video package raises."""
    here = os.path.join(os.path.dirname(errors.__file__), "video")
    raised: set[str] = set()
    for name in os.listdir(here):
        if name.endswith(".py"):
            src = open(os.path.join(here, name)).read()
            raised |= set(re.findall(r'VideoDecodeError\(\s*"(\w+)"', src))
            raised |= set(re.findall(r'reason = "(\w+)" if .* else "(\w+)"', src)[0] if re.search(
                r'reason = "(\w+)" if .* else "(\w+)"', src) else ())
            raised |= set(re.findall(r'Expect\("(\w+)"\)', src))
    assert raised <= set(errors.DECODE_REASONS), raised - set(errors.DECODE_REASONS)
    assert set(errors.DECODE_REASONS) - raised <= {"bad_timing"}, set(errors.DECODE_REASONS) - raised
    with pytest.raises(ValueError):
        VideoDecodeError("no_such_reason", "x")
