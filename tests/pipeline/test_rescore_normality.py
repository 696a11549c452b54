"""`exvad rescore --normality` (alone, and fused with a detector) on a small real index (Parquet written
by the index writers, a local Ray): the scoring reads like any other (read_scoring, SegmentIndex,
`exvad evaluate --scoring`), flagged segments carry their evidence, a false-alarm verdict stops a
segment being flagged after `exvad normality fit` + `exvad rescore`, `exvad train` writes a calibrated
threshold that `exvad rescore --detector` flags at, and a bad normality model or index is one line,
exit 2, before Ray starts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from exvad_ray.cli import main
from exvad_ray.index import SNIPPETS, VIDEOS, write_manifest
from exvad_ray.index import scorings as sc
from exvad_ray.index.labels import append_labels, make_table

HALF = 16
FPS = 25.0
SNIP_S = 16 / FPS
N = 60
EVENT = (20, 30)
CLASSES = ["Normal", "Anomaly"]


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


CENTRES = unit(np.random.default_rng(42).standard_normal((6, 2, HALF)))  # normal scenes: (appearance, motion)
ODD = unit(np.random.default_rng(7).standard_normal((2, HALF)))  # something no normal video shows


def normal_video(rng: np.random.Generator, n: int = N) -> np.ndarray:
    c = CENTRES[rng.integers(0, len(CENTRES), n)]
    return unit(c + 0.08 * rng.standard_normal(c.shape)).reshape(n, 2 * HALF).astype(np.float32)


def with_event(rng: np.random.Generator, n: int = N, a: int = EVENT[0], b: int = EVENT[1]) -> np.ndarray:
    x = normal_video(rng, n).reshape(n, 2, HALF)
    x[a:b] = unit(ODD + 0.05 * rng.standard_normal((b - a, 2, HALF)))
    return x.reshape(n, 2 * HALF).astype(np.float32)


def vid_id(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


def write_video(index: str, vid: str, camera: str, name: str, f: np.ndarray | None, t: int = N,
                explanation_model: str = "caption-summary/1") -> str:
    uri = f"file:///archive/{camera}/2024-01-01/{name}.mp4"
    part = {"date": "2024-01-01", "camera": camera}
    SNIPPETS.write(index, vid, part, {
        "video_id": [vid] * t, "uri": [uri] * t, "window_index": [0] * t, "snippet_index": list(range(t)),
        "start_s": [i * SNIP_S for i in range(t)], "end_s": [(i + 1) * SNIP_S for i in range(t)],
        "frame_index": [16 * i + 8 for i in range(t)], "anomaly_score": [0.0] * t, "class_probs": [None] * t,
        "visual_embedding": f.tolist() if f is not None else [None] * t, "thumbnail_jpeg": [b"jpeg%d" % i for i in range(t)]})
    VIDEOS.write(index, vid, part, {
        "video_id": [vid], "uri": [uri], "name": [name], "size_bytes": [None], "etag": [None], "status": ["ok"],
        "duration_s": [t * SNIP_S], "timing": ["constant"], "fps": [FPS], "n_frames": [16 * t], "width": [224],
        "height": [224], "codec": ["h264"], "n_snippets": [t], "n_windows": [1], "video_score": [0.0],
        "video_class": ["Normal"], "class_names": [None], "class_scores": [None], "n_segments": [0],
        "explanation": ["street, car"], "explanation_embedding": [None], "window_explanation_embeddings": [[]],
        "visual_model": ["test-lite"], "caption_model": ["tags"], "explanation_model": [explanation_model],
        "detector": [""], "label_set": [""], "recorded_at": [None], "recorded_at_source": [None], "run_id": ["r1"],
        "processed_at": [None]})
    return uri


def _row(name: str, uri: str, split: str, event: bool) -> dict:
    seg = [{"start_frame": 16 * EVENT[0], "end_frame": 16 * EVENT[1], "label": "Anomaly"}] if event else []
    return {"name": name, "video_uri": uri, "labels": ["Anomaly"] if event else ["Normal"], "split": split,
            "fps": FPS, "n_frames": 16 * N, "segments": seg}


def build_archive(root) -> dict:
    """cam01: 8 normal + 2 anomalous train videos, 3 normal + 2 anomalous val, a test video with an
    unusual stretch (snippets 20-29, labelled) and a normal test video; cam02: one short normal video."""
    rng = np.random.default_rng(0)
    index, labels = str(root / "index"), str(root / "labels")
    rows, i = [], 0
    for split, normal, odd in (("train", 8, 2), ("val", 3, 2)):
        for k in range(normal + odd):
            name = f"{split}{k:02d}"
            uri = write_video(index, vid_id(i), "cam01", name, normal_video(rng) if k < normal else with_event(rng))
            rows.append(_row(name, uri, split, k >= normal))
            i += 1
    uri = write_video(index, vid_id(20), "cam02", "short", normal_video(rng, 30), t=30)
    rows.append({"name": "short", "video_uri": uri, "labels": ["Normal"], "split": "train"})
    odd = write_video(index, vid_id(30), "cam01", "odd", with_event(rng))
    rows.append(_row("odd", odd, "test", True))
    calm = write_video(index, vid_id(31), "cam01", "calm", normal_video(rng))
    rows.append(_row("calm", calm, "test", False))
    append_labels(labels, make_table(rows), source="synth")
    write_manifest(index, {"run_id": "r1", "args": {"archive": "file:///archive", "camera_pattern": r"^(?P<camera>cam\d+)/"}})
    return {"index": index, "labels": labels, "odd": odd, "root": root}


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return build_archive(tmp_path_factory.mktemp("normality-rescore"))


@pytest.fixture(scope="module")
def ray_module():
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, object_store_memory=300 * 1024**2, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def fitted(archive, ray_module):
    out = str(archive["root"] / "normality")
    assert main(["normality", "fit", "--index", archive["index"], "--labels", archive["labels"], "--out", out,
                 "--min-camera-snippets", "200", "--k", "1"]) == 0
    return out


def _summary(out: str) -> dict:
    """The JSON summary `exvad rescore --json` printed (after its progress lines)."""
    lines = out.splitlines()
    start = lines.index("{")
    end = start + lines[start:].index("}")
    return json.loads("\n".join(lines[start:end + 1]))


def _segments(index: str, sid: str, video: str) -> list[dict]:
    t = sc.read_scoring(index, "segments", sid)
    return [r for r in t.to_pylist() if r["video_id"] == video]


def test_normality_alone_writes_a_scoring_with_evidence_that_every_reader_reads(archive, fitted, capsys, tmp_path):
    from exvad_ray.pipeline.normality_scoring import normality_id
    from exvad_ray.search.engine import SegmentIndex

    index = archive["index"]
    assert main(["rescore", "--index", index, "--normality", fitted, "--actors", "1", "--json"]) == 0
    out = capsys.readouterr().out
    summary = _summary(out)
    sid = normality_id(fitted)
    assert summary["scoring_id"] == sid and sid.startswith("nrm-") and summary["mode"] == "normality"
    assert summary["videos_scored"] == 18 and summary["current"] and sc.current_scoring(index) == sid
    doc = sc.manifest(index, sid)
    assert doc["class_names"] == CLASSES and doc["normality"]["normality_id"] == sid
    assert 0.9 < doc["localization"]["threshold"] < 1.0 and "cam01" in doc["normality"]["banks"]

    segs = _segments(index, sid, vid_id(30))
    assert len(segs) == 1 and segs[0]["label"] == "Anomaly"
    s = segs[0]
    assert s["first_snippet"] <= EVENT[0] + 1 and s["last_snippet"] >= EVENT[1] - 2
    # the evidence (docs/CONTRACTS.md): percentile, unusual half, nearest normal moment, bank, sentence
    assert s["normality"] > doc["localization"]["threshold"] and s["unusual_half"] in ("appearance", "motion")
    assert s["nearest_video_id"] != vid_id(30) and s["nearest_uri"].startswith("file:///archive/cam01/")
    assert 0 <= s["nearest_snippet"] < N and s["nearest_start_s"] == pytest.approx(s["nearest_snippet"] * SNIP_S)
    assert s["nearest_camera"] == "cam01" and -1.0 <= s["nearest_similarity"] <= 1.0 and s["normality_bank"] == "cam01"
    assert s["evidence"].startswith("nothing like this in the normal footage of cam01")
    assert s["explanation"].startswith(s["evidence"])  # no language model: the evidence leads
    assert s["thumbnail_jpeg"] is not None and s["detector_id"] == sid
    snips = sc.read_scoring(index, "snippet_scores", sid).to_pandas()
    odd = snips[snips.video_id == vid_id(30)].sort_values("snippet_index")
    assert np.allclose(odd.anomaly_score, odd.normality) and odd.normality.iloc[22] > odd.normality.iloc[5]
    # beside each percentile its surprise -log(1 - p): the same order, where float32 percentiles round to 1
    assert np.allclose(-np.expm1(-odd.surprise.to_numpy(np.float64)), odd.anomaly_score, atol=1e-6)
    top = odd[odd.anomaly_score == 1.0]
    assert len(top) == 0 or top.surprise.min() > 16
    # the segment keeps its most unusual snippet's surprise: the order among segments whose score is 1.0
    span = odd.surprise.to_numpy()[s["first_snippet"]:s["last_snippet"] + 1]
    assert s["surprise"] == pytest.approx(float(span.max()), rel=1e-6)
    videos = {r["name"]: r for r in sc.read_scoring(index, "videos", sid).to_pylist()}
    assert videos["odd"]["video_class"] == "Anomaly" and videos["calm"]["video_class"] == "Normal"
    assert not _segments(index, sid, vid_id(31))  # the normal test video is not flagged
    # the search engine and evaluate read it unchanged
    found = SegmentIndex(index, use_sidecar=False, scoring=sid).search().to_pylist()
    flagged = {r["video_id"] for r in sc.read_scoring(index, "segments", sid).to_pylist()}
    assert {r["video_id"] for r in found} == flagged and vid_id(31) not in flagged
    assert next(r for r in found if r["segment_id"] == s["segment_id"])["evidence"] == s["evidence"]
    # the anomalous videos (train and val ones too: scored against the others) are flagged, the normal ones not
    assert flagged == {vid_id(i) for i in (8, 9, 13, 14, 30)}
    capsys.readouterr()
    assert main(["evaluate", "--index", index, "--labels", archive["labels"], "--split", "test", "--scoring", sid,
                 "--out", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["auc"] > 0.9 and report["n_videos"] == 2
    err = capsys.readouterr().err
    assert "(the scoring's own)" in err and "normal videos flagged 0/1, anomalous 1/1" in err
    # idempotent: a rerun scores nothing again
    assert main(["rescore", "--index", index, "--normality", fitted, "--json"]) == 0
    out = capsys.readouterr().out
    assert _summary(out)["videos_skipped"] == 18


def test_train_calibrates_its_threshold_and_rescore_fuses_with_it(archive, fitted, capsys, tmp_path):
    """`exvad train` writes `calibration` (threshold from the val split's Normal videos) into the model
    card; `exvad rescore --detector` flags at it; fused with the normality model, the scoring takes the
    class from the detector, the weight chosen on val, and carries the evidence."""
    from exvad_ray.checkpoints import detector_id

    index, labels = archive["index"], archive["labels"]
    emb = unit(np.random.default_rng(3).standard_normal((2, 16))).astype(np.float32)
    np.savez(tmp_path / "classes.npz", embeddings=emb, class_names=np.array(CLASSES))
    det = str(tmp_path / "det")
    assert main(["train", "--index", index, "--labels", labels, "--class-embeddings", str(tmp_path / "classes.npz"),
                 "--out", det, "--epochs", "2", "--batch-size", "4", "--lr", "1e-3", "--layers", "0",
                 "--visual-length", "64", "--no-test-eval", "--false-alarms-per-hour", "2"]) == 0
    card = json.loads((tmp_path / "det" / "model_card.json").read_text())
    cal = card["calibration"]
    assert cal["normal_videos"] == 3 and cal["split"] == "val" and cal["false_alarms"]["per_hour"] == 2
    assert cal["threshold"] is not None and cal["map"]["n"] == 3 * N
    capsys.readouterr()
    assert main(["rescore", "--index", index, "--detector", det, "--no-current", "--json"]) == 0
    out = capsys.readouterr().out
    summary = _summary(out)
    assert summary["threshold"] == pytest.approx(cal["threshold"]) and "calibrated" in summary["threshold_source"]
    assert sc.manifest(index, detector_id(det))["localization"]["threshold"] == pytest.approx(cal["threshold"])
    # an older card (no calibration) flags at 0.5
    from exvad_ray.pipeline.normality_scoring import calibrated_localization

    assert calibrated_localization({"label_set": {}}) is None

    assert main(["rescore", "--index", index, "--detector", det, "--normality", fitted, "--labels", labels,
                 "--no-current", "--json"]) == 0
    out = capsys.readouterr().out
    summary = _summary(out)
    sid = summary["scoring_id"]
    assert sid.startswith("fus-") and summary["mode"] == "fused" and summary["videos_scored"] == 18
    assert "chosen on the val split" in summary["fusion"]["weight_source"]
    doc = sc.manifest(index, sid)
    assert doc["fusion"]["scale"] == "rank_surprise" and 0 <= doc["fusion"]["weight"] <= 1
    assert doc["fusion"]["detector_calibration"] == "model card" and doc["class_names"] == CLASSES
    assert doc["localization"]["threshold"] == pytest.approx(doc["fusion"]["threshold"]["threshold"])
    snips = sc.read_scoring(index, "snippet_scores", sid).to_pandas()
    assert snips.normality.notna().all() and snips.anomaly_score.between(0, 1).all()
    assert np.allclose(-np.expm1(-snips.surprise.to_numpy(np.float64)), snips.anomaly_score, atol=1e-6)
    for s in sc.read_scoring(index, "segments", sid).to_pylist():  # every flagged segment says why
        assert s["evidence"] and s["normality_bank"] in ("cam01", "global") and s["detector_id"] == detector_id(det)
    capsys.readouterr()
    assert main(["evaluate", "--index", index, "--labels", labels, "--split", "test", "--scoring", sid]) == 0
    capsys.readouterr()
    # the same models and choices: the same scoring id
    assert main(["rescore", "--index", index, "--detector", det, "--normality", fitted, "--labels", labels,
                 "--no-current", "--json"]) == 0
    out = capsys.readouterr().out
    assert _summary(out)["scoring_id"] == sid


def test_a_false_alarm_verdict_stops_the_segment_being_flagged_after_fit_and_rescore(ray_module, tmp_path, capsys):
    """End to end through the commands: rescore flags the odd stretch; an analyst marks it a false
    alarm (`exvad feedback`); the next `exvad normality fit` + `exvad rescore` no longer flags it."""
    a = build_archive(tmp_path)
    index, labels = a["index"], a["labels"]
    base = ["--index", index, "--labels", labels, "--min-camera-snippets", "200", "--k", "1"]
    assert main(["normality", "fit", *base, "--out", str(tmp_path / "m1")]) == 0
    assert main(["rescore", "--index", index, "--normality", str(tmp_path / "m1"), "--json"]) == 0
    out = capsys.readouterr().out
    sid1 = _summary(out)["scoring_id"]
    segs = _segments(index, sid1, vid_id(30))
    assert len(segs) == 1
    assert main(["feedback", segs[0]["segment_id"], "--index", index, "--labels", labels,
                 "--verdict", "false-alarm"]) == 0
    assert main(["normality", "fit", *base, "--out", str(tmp_path / "m2")]) == 0
    assert main(["rescore", "--index", index, "--normality", str(tmp_path / "m2"), "--json"]) == 0
    out = capsys.readouterr().out
    sid2 = _summary(out)["scoring_id"]
    assert sid2 != sid1
    first, last = segs[0]["first_snippet"], segs[0]["last_snippet"]
    after = [s for s in _segments(index, sid2, vid_id(30)) if s["first_snippet"] <= last and s["last_snippet"] >= first]
    assert after == []
    assert json.loads(sc.read_scoring(index, "videos", sid2).to_pandas().set_index("name").loc["odd"].to_json()
                      )["video_class"] == "Normal"


@pytest.mark.parametrize("case", ["missing", "not-a-model", "empty-bank", "no-embeddings", "other-width"])
def test_bad_normality_input_is_one_line_and_exit_2_before_ray_starts(case, archive, tmp_path, capsys):
    import ray

    from exvad_ray.checkpoints import save_normality
    from exvad_ray.normality import GLOBAL, Bank, BankCalibration, NormalityModel, PercentileMap, Threshold
    from exvad_ray.normality.halves import Layout

    if ray.is_initialized():
        ray.shutdown()
    index = archive["index"]
    layout = Layout(2 * HALF, ("appearance", "motion"), ((0, HALF), (HALF, 2 * HALF)))

    def model(n: int, lay: Layout = layout) -> NormalityModel:
        x = unit(np.random.default_rng(0).standard_normal((n, lay.dim))).astype(np.float32)
        bank = Bank(lay, x, np.zeros(n, np.int32), np.arange(n, dtype=np.int32), np.zeros(n), np.zeros(n, np.int32),
                    np.zeros(n, bool), ["v"], ["cam01"])
        pm = PercentileMap.fit(np.linspace(0, 1, 10))
        cal = BankCalibration((pm, pm), pm, Threshold(0.99, 1.0, 1.0, "measured", 0, 0, 2))
        return NormalityModel(lay, {GLOBAL: bank}, {GLOBAL: cal}, (1.0, 1.0))

    uri = str(tmp_path / "m")
    expect = {"missing": "no normality model at", "not-a-model": "is not a normality model",
              "empty-bank": "empty bank", "no-embeddings": "no snippet embeddings", "other-width": "scores 64-d"}[case]
    if case == "not-a-model":
        (tmp_path / "m").mkdir()
        (tmp_path / "m" / "normality.npz").write_bytes(b"not a zip")
    elif case == "empty-bank":
        save_normality(model(0), uri)
    elif case == "no-embeddings":
        save_normality(model(5), uri)
        index = str(tmp_path / "bare")
        write_video(index, vid_id(1), "cam01", "x", None, t=5)
    elif case == "other-width":
        save_normality(model(5, Layout(64, ("visual",), ((0, 64),))), uri)
    assert main(["rescore", "--index", index, "--normality", uri]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("exvad rescore: error:") and expect in err[0], err
    assert not ray.is_initialized()


def test_process_with_normality_scores_the_committed_videos_too(archive, fitted, monkeypatch, tmp_path, capsys):
    """`exvad process --normality`: once the job's rows are committed, its videos are scored with the
    model into a scoring marked current (the job itself is stood in for by the index it would write)."""
    from exvad_ray.cli.process import process_and_refresh
    from exvad_ray.pipeline import job
    from exvad_ray.pipeline.job import ProcessConfig
    from exvad_ray.pipeline.normality_scoring import normality_id

    index = str(tmp_path / "index")
    import shutil

    shutil.copytree(archive["index"], index, ignore=shutil.ignore_patterns("scorings"))
    monkeypatch.setattr(job, "run_process", lambda cfg, echo=print: {"index": cfg.index})
    cfg = ProcessConfig(archive="file:///archive", index=index, normality=fitted)
    assert cfg.run_id() == ProcessConfig(archive="file:///archive", index=index).run_id()  # not the run's identity
    summary = process_and_refresh(cfg, echo=lambda _l: None)
    n = summary["normality_scoring"]
    assert n["scoring_id"] == normality_id(fitted) and n["mode"] == "normality" and n["videos_scored"] == 18
    assert sc.current_scoring(index) == n["scoring_id"]
    flagged = {r["video_id"] for r in sc.read_scoring(index, "segments").to_pylist()}
    assert flagged == {vid_id(i) for i in (8, 9, 13, 14, 30)}


def test_process_with_a_bad_normality_model_stops_before_ray(tmp_path, capsys):
    import ray

    if ray.is_initialized():
        ray.shutdown()
    (tmp_path / "archive").mkdir()
    assert main(["process", "--archive", str(tmp_path / "archive"), "--index", str(tmp_path / "index"),
                 "--normality", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--normality: no normality model at" in err[0], err
    assert not ray.is_initialized()
