"""`exvad search` and `exvad export` on the archive job's index: output formats, one-line errors
(exit 2), a playable clip of the right duration, a manifest whose hashes verify, the audit log."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os

import pytest

from exvad_ray.cli import main

pytestmark = pytest.mark.slow


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_search_formats_and_audit(index_copy, capsys):
    from exvad_ray.search.audit import read_audit
    from exvad_ray.search.engine import SegmentIndex

    want = SegmentIndex(index_copy).search(limit=3).column("segment_id").to_pylist()
    code, out, _ = run(capsys, "search", "--index", index_copy, "--limit", "3", "--format", "json", "--user", "ana")
    assert code == 0 and [r["segment_id"] for r in json.loads(out)] == want
    code, out, _ = run(capsys, "search", "--index", index_copy, "--limit", "3", "--format", "csv")
    assert code == 0 and [r["segment_id"] for r in csv.DictReader(io.StringIO(out))] == want
    code, out, _ = run(capsys, "search", "--index", index_copy, "--limit", "3")
    assert code == 0 and out.splitlines()[0].startswith("segment_id") and f"({len(want)} segment" in out
    audit = read_audit(os.path.join(index_copy, "audit")).to_pylist()
    assert [a["action"] for a in audit] == ["search"] * 3 and audit[0]["who"] == "ana"
    assert audit[0]["result_count"] == len(want) and json.loads(audit[0]["query"])["limit"] == 3


@pytest.mark.parametrize("args,message", [
    (["--class", "Arson"], "unknown class 'Arson'; known classes: "),
    (["--since", "last week"], "malformed --since 'last week'"),
    (["--until", "2026-13-01"], "malformed --until"),
    (["--like", "nope:1"], "unknown segment id 'nope:1'"),
    (["--min-score", "7"], "min_score must be between 0 and 1"),
    (["--text", "a", "--like", "b:1"], "either a text query or --like"),
])
def test_search_errors_one_line(built_index, capsys, args, message):
    code, out, err = run(capsys, "search", "--index", built_index["index"], *args)
    assert code == 2 and out == "" and message in err and len(err.strip().splitlines()) == 1


def test_missing_index_and_unknown_segment(tmp_path, built_index, capsys):
    code, _, err = run(capsys, "search", "--index", str(tmp_path / "none"))
    assert code == 2 and "no index at" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "export", "abc:1", "--index", built_index["index"], "--out", str(tmp_path / "x"))
    assert code == 2 and "unknown segment id 'abc:1'" in err


def test_export_clip_and_manifest(index_copy, tmp_path, capsys):
    import av

    from exvad_ray.search.engine import SegmentIndex

    ix = SegmentIndex(index_copy)
    seg = ix.search(limit=100).to_pylist()[-1]
    video = ix.video(seg["video_id"])
    out = tmp_path / "evidence"
    code, text, err = run(capsys, "export", seg["segment_id"], "--index", index_copy, "--out", str(out), "--context", "1")
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest, name
    assert set(manifest["files"]) == {"clip.mp4", "thumbnail.jpg", "segment.json"}
    with open(seg["uri"], "rb") as f:
        assert manifest["source"]["sha256"] == hashlib.sha256(f.read()).hexdigest()
    # the clip: the segment plus 1 s each side, clamped to the video, decodable frame by frame
    start = max(0.0, seg["start_s"] - 1)
    end = min(video["duration_s"], seg["end_s"] + 1)
    with av.open(str(out / "clip.mp4")) as c:
        stream = c.streams.video[0]
        n = sum(1 for _ in c.decode(stream))
        fps = float(stream.average_rate)
    assert n == manifest["clip"]["frames"]
    assert abs(n / fps - (end - start)) <= 1.5 / fps
    assert abs(manifest["clip"]["source_start_s"] - start) <= 1 / fps
    row = json.loads((out / "segment.json").read_text())
    assert row["segment_id"] == seg["segment_id"] and "visual_embedding" not in row
    assert (out / "thumbnail.jpg").read_bytes()[:2] == b"\xff\xd8"
    from exvad_ray.search.audit import read_audit

    assert [a["action"] for a in read_audit(os.path.join(index_copy, "audit")).to_pylist()] == ["export"]
