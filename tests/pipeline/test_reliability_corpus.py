"""The hostile corpus through the job's listing and decode stage (no Ray): every good video yields
its windows with presentation-timestamp times, every bad one leaves exactly one error row with its
reason and the library's message apart, and peak RSS stays under the stated bound."""

from __future__ import annotations

import os
import resource

from exvad_ray import storage
from exvad_ray import index as idx
from exvad_ray.pipeline.decode import DecodeStage
from exvad_ray.pipeline.guard import crash_reason, fault_report
from exvad_ray.video import SamplingConfig
from exvad_ray.video.badfiles import write_corpus


def test_corpus_through_listing_and_decode_stage(tmp_path):
    expect = write_corpus(str(tmp_path / "archive"))
    index = str(tmp_path / "index")
    cfg = SamplingConfig()
    stage = DecodeStage(index, "run", cfg)
    entries = storage.list_videos(str(tmp_path / "archive"))
    assert {e.uri for e in entries} == set(expect)  # unicode, '=', spaces and the symlink loop listed
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    windows: dict[str, list[dict]] = {}
    for e in entries:
        item = {"uri": e.uri, "video_id": e.video_id, "size": e.size, "etag": "", "date": "2026-01-01",
                "camera": "c", "processing_date": "2026-01-01"}
        windows[e.uri] = [{k: r[k] for k in ("start_s", "end_s", "duration_s", "timing")} for r in stage(item)]
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    errors = {r["uri"]: r for r in idx.read_table(index, "errors").to_pylist()}
    raw = idx.read_table(index, "errors", current=False)
    assert raw.num_rows == len(errors)  # one row per bad video
    for uri, exp in expect.items():
        name = os.path.basename(uri)
        if exp.reason:
            assert uri in errors and not windows[uri], name
            assert errors[uri]["reason"] == exp.reason, (name, errors[uri])
            assert "\n" not in errors[uri]["message"]
        else:
            assert uri not in errors and windows[uri], (name, errors.get(uri))
            w = windows[uri]
            assert w[0]["timing"] == exp.timing and abs(w[0]["duration_s"] - exp.duration_s) <= 0.11, name
            assert w[0]["start_s"][0] == 0.0 and w[-1]["end_s"][-1] <= w[0]["duration_s"] + 1e-6, name
    assert any(e["detail"] for e in errors.values())  # the decoder's own words kept apart
    assert grown < cfg.max_window_bytes + 64 * 2**20, grown


def test_crash_reason_reads_the_fault_report(tmp_path, monkeypatch):
    """decoder_crash when a previous attempt left a fatal-signal report, resource_exhausted when the
    worker was killed without one (the memory killer)."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert crash_reason("vid-a")[0] == "resource_exhausted"
    os.makedirs(tmp_path / "exvad-faults", exist_ok=True)
    (tmp_path / "exvad-faults" / "vid-a.123.log").write_text("Fatal Python error: Segmentation fault\n\nStack...")
    reason, message = crash_reason("vid-a")
    assert reason == "decoder_crash" and "Segmentation fault" in message
    with fault_report("vid-a"):  # a clean pass removes the video's old reports
        pass
    assert crash_reason("vid-a")[0] == "resource_exhausted"
