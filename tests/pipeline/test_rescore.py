"""The retraining loop's pieces on one 20-video archive laid out like UCF-Crime (class folders,
Anomaly_Train/Test.txt, a temporal annotation file with `.mp4` names), recorded at 15 fps:

- `exvad labels import ucf --index`: every annotated segment arrives, with the video's real frame
  rate (15, not an invented 30) and so the right times; unmatched names and unlabelled videos are reported;
- `exvad rescore` with the archive bucket gone: no video is decoded, and the snippet scores, segments
  and video scores equal those of a full `exvad process --detector`; a second detector adds a
  second scoring and earlier ones stay readable."""

from __future__ import annotations

import json

import numpy as np
import pytest

from exvad_ray import storage
from exvad_ray.cli import main
from exvad_ray.index.labels import read_labels
from exvad_ray import index as idx
from exvad_ray.checkpoints import detector_id
from exvad_ray.index import scorings as sc
from exvad_ray.pipeline.job import ProcessConfig, run_process
from exvad_ray.train.data import load_index_records
from exvad_ray.video import SamplingConfig

pytestmark = pytest.mark.slow

# 20 short videos (4 per anomaly class + 4 normal), 4.5-5 s at 15 fps: 4 snippets, 2 windows each
ARCHIVE = dict(videos_per_class=4, normal_videos=4, width=96, height=64, fps=15.0, duration=(4.5, 5.0), seed=3)


def make_detector(uri: str, seed: int, card: str | None = None) -> list[str]:
    """An untrained detector; its class names. With `card`, also the model card `exvad train` writes
    beside it, naming its classes ("right") or them reversed ("wrong"): the rescore driver reads the
    names from there instead of the weights."""
    import torch

    from exvad_ray.checkpoints import save_detector
    from exvad_ray.detector import DetectorConfig, ExVADDetector
    from exvad_ray.models import label_set_embeddings

    emb, names = label_set_embeddings("synthetic", "tiny", k=4)
    torch.manual_seed(seed)
    cfg = DetectorConfig(embed_dim=emb.shape[1], num_classes=len(names), visual_length=4, layers=1, fusion="add")
    det = ExVADDetector.build(cfg, emb, names)
    with torch.no_grad():  # a sharper binary head than the initial one, so that segments get flagged
        for p in det.net.parameters():
            p.mul_(2.0)
    save_detector(det, uri)
    if card is not None:
        doc = {"label_set": {"name": "synthetic", "class_names": names if card == "right" else names[::-1]}}
        storage.write_bytes(uri.rsplit("/", 1)[0] + "/model_card.json", json.dumps(doc).encode())
    return list(names)


def ucf_layout(local, summary, archive: str) -> dict:
    """Upload the synthetic videos as UCF-Crime lays them out and write its list files; the first
    training video is left out of the lists (an unlabelled video), a name without a video is added."""
    lists: dict[str, list[str]] = {"train": ["# UCF-like list", ""], "test": []}
    left_out = None
    for spec in sorted(summary.videos, key=lambda v: v.name):
        folder = spec.label if spec.label != "Normal" else \
            ("Testing_Normal_Videos_Anomaly" if spec.split == "test" else "Training_Normal_Videos_Anomaly")
        rel = f"{folder}/{spec.name}.mp4"
        storage.put_file(str(local / spec.relpath), storage.join(archive, rel))
        if left_out is None and spec.split == "train":
            left_out = storage.join(archive, rel)
            continue
        lists["test" if spec.split == "test" else "train"].append(rel)
    lists["train"].append("Fire/Fire_999.mp4")
    files = {"train": local / "Anomaly_Train.txt", "test": local / "Anomaly_Test.txt",
             "annotations": local / "annotations" / "Temporal_Anomaly_Annotation.txt"}
    files["train"].write_text("\n".join(lists["train"]) + "\n")
    files["test"].write_text("\n".join(lists["test"]) + "\n")
    assert ".mp4  " in files["annotations"].read_text()
    return {"files": files, "left_out": left_out, "specs": {v.name: v for v in summary.videos}}


def build_rescore_index(name: str, s3_server, tmp_path_factory, archive_cfg: dict, **process) -> dict:
    """A UCF-layout archive generated and uploaded, two detectors (a: no model card, b: a right one)
    and the archive processed with detector a into an index, all in buckets named after `name`:
    {"index", "archive", "a", "b", "models", "names" (b's classes), "labels", "videos", **layout}."""
    from exvad_ray.synth import SynthConfig, generate_archive

    local = tmp_path_factory.mktemp(name)
    summary = generate_archive(str(local), SynthConfig(**archive_cfg))
    archive = s3_server.create_bucket(f"{name}-archive") + "/UCF"
    layout = ucf_layout(local, summary, archive)
    models = s3_server.create_bucket(f"{name}-models")
    det_a, det_b = models + "/a/model.pt", models + "/b/model.pt"
    make_detector(det_a, 0)  # no model card: the driver reads the class names from the checkpoint
    names = make_detector(det_b, 1, card="right")
    index = s3_server.create_bucket(f"{name}-index") + "/run1"
    cfg = ProcessConfig(archive=archive, index=index, profile="tiny", label_set="synthetic", detector=det_a,
                        sampling=SamplingConfig(window_snippets=2), progress_interval_s=30, **process)
    videos = run_process(cfg, echo=lambda _m: None)["videos_processed"]
    return {"index": index, "archive": archive, "a": det_a, "b": det_b, "models": models, "names": names,
            "labels": s3_server.create_bucket(f"{name}-labels") + "/labels", "videos": videos, **layout}


@pytest.fixture(scope="module")
def processed(ray_local, tiny_dir, s3_server, tmp_path_factory):
    built = build_rescore_index("rescore", s3_server, tmp_path_factory, ARCHIVE)
    assert built["videos"] == 20
    make_detector(built["models"] + "/c/model.pt", 2, card="wrong")
    # the archive is gone: any decode would fail (and be counted as a failed video)
    fs, _ = storage.filesystem(built["archive"])
    fs.rm("rescore-archive", recursive=True)
    fs.invalidate_cache()
    assert not storage.exists(built["archive"]) and not fs.exists("rescore-archive")
    return {**built, "c": built["models"] + "/c/model.pt"}


def test_import_ucf_layout_with_real_frame_rates(processed, capsys):
    f = processed["files"]
    assert main(["labels", "import", "ucf", "--labels", processed["labels"], "--index", processed["index"],
                 "--train-list", str(f["train"]), "--test-list", str(f["test"]), "--annotations", str(f["annotations"]),
                 "--val-fraction", "0"]) == 0
    out = capsys.readouterr().out
    assert "matched 19 of 20 rows" in out and "1 names matching no video in the index: Fire_999" in out
    assert f"1 indexed videos with no label: {processed['left_out']}" in out
    rows = {r["name"]: r for r in read_labels(processed["labels"]).to_pylist()}
    assert len(rows) == 20 and rows["Fire_999"]["video_uri"] is None
    checked = 0
    for name, spec in processed["specs"].items():
        if name not in rows:
            continue
        r = rows[name]
        assert r["fps"] == 15.0 and r["n_frames"] == spec.n_frames and r["video_uri"].endswith(f"/{name}.mp4")
        assert r["labels"] == [spec.label] and r["split"] == ("test" if spec.split == "test" else "train")
        got = [(s["start_frame"] / r["fps"], s["end_frame"] / r["fps"], s["label"]) for s in r["segments"]]
        assert got == [(g.start_frame / 15.0, g.end_frame / 15.0, g.label) for g in spec.segments], name
        checked += bool(spec.segments)
    assert checked == 15  # every annotated video of the lists
    recs = {r.name: r for r in load_index_records(processed["index"] + "/snippets", processed["index"] + "/videos",
                                                  processed["labels"])}
    assert len(recs) == 19  # joined on the URIs the import found
    fire = next(v for v in processed["specs"].values() if v.label == "Fire" and v.name in recs)
    assert recs[fire.name].segments == [(g.start_frame, g.end_frame, "Fire") for g in fire.segments]


def _by_snippet(table) -> dict[tuple[str, int], float]:
    return {(v, i): s for v, i, s in zip(*(table.column(c).to_pylist() for c in ("video_id", "snippet_index", "anomaly_score")))}


def test_rescore_equals_full_processing_without_decoding(processed, capsys):
    index = processed["index"]
    assert main(["rescore", "--index", index, "--detector", processed["a"], "--actors", "1"]) == 0
    out = capsys.readouterr().out
    assert "20 scored, 0 failed" in out and "no video decoded" in out
    sid = detector_id(processed["a"])
    assert sc.current_scoring(index) == sid
    full = idx.read_table(index, "snippets", ["video_id", "snippet_index", "anomaly_score", "class_probs"])
    new = sc.read_scoring(index, "snippet_scores", sid)
    assert new.num_rows == full.num_rows > 40
    a, b = _by_snippet(full), _by_snippet(new)
    assert a.keys() == b.keys()
    np.testing.assert_allclose([b[k] for k in a], [a[k] for k in a], atol=1e-5)
    probs_a = dict(zip(zip(full.column("video_id").to_pylist(), full.column("snippet_index").to_pylist()),
                       full.column("class_probs").to_pylist()))
    probs_b = dict(zip(zip(new.column("video_id").to_pylist(), new.column("snippet_index").to_pylist()),
                       new.column("class_probs").to_pylist()))
    np.testing.assert_allclose([probs_b[k] for k in a], [probs_a[k] for k in a], atol=1e-5)
    # the windows carried explanation embeddings, and the detector fused them (fusion "add")
    videos = idx.read_table(index, "videos").to_pylist()
    assert all(len(v["window_explanation_embeddings"]) == v["n_windows"] >= 2 for v in videos)
    # same segments (ids, classes, times), now with the detector's id and model card on each
    seg_full = sc.read_scoring(index, "segments", "process")
    seg_new = sc.read_scoring(index, "segments", sid)
    assert seg_full.num_rows > 0
    key = lambda t: sorted(zip(*(t.column(c).to_pylist() for c in ("segment_id", "label", "start_s", "end_s"))))  # noqa: E731
    assert key(seg_new) == key(seg_full)
    assert set(seg_new.column("detector_id").to_pylist()) == {sid}
    assert all(seg_new.column("model_card").to_pylist()) and all(seg_new.column("thumbnail_jpeg").to_pylist())
    v_full = {r["video_id"]: r for r in sc.read_scoring(index, "videos", "process").to_pylist()}
    for r in sc.read_scoring(index, "videos", sid).to_pylist():
        assert r["video_class"] == v_full[r["video_id"]]["video_class"]
        assert r["video_score"] == pytest.approx(v_full[r["video_id"]]["video_score"], abs=1e-5)


def test_second_detector_adds_a_scoring_and_earlier_ones_stay(processed, capsys):
    index = processed["index"]
    assert main(["rescore", "--index", index, "--detector", processed["b"], "--actors", "1"]) == 0
    sid_a, sid_b = detector_id(processed["a"]), detector_id(processed["b"])
    assert sid_a != sid_b and sc.current_scoring(index) == sid_b
    ids = [m["scoring_id"] for m in sc.list_scorings(index)]
    assert ids[0] == "process" and set(ids) >= {sid_a, sid_b}
    a = _by_snippet(sc.read_scoring(index, "snippet_scores", sid_a))
    b = _by_snippet(sc.read_scoring(index, "snippet_scores"))  # current: b
    assert a.keys() == b.keys() and max(abs(a[k] - b[k]) for k in a) > 1e-3
    # rerunning is a no-op (every video already scored); switching back is one command
    assert main(["rescore", "--index", index, "--detector", processed["b"], "--json"]) == 0
    assert '"videos_skipped": 20' in capsys.readouterr().out
    assert main(["rescore", "--index", index, "--use", "process"]) == 0
    assert sc.current_scoring(index) == "process"
    assert main(["rescore", "--index", index, "--use", "det-nope"]) == 2
    assert main(["rescore", "--index", index]) == 2
    # detector b came with a model card: the driver took the class names from it, and it is on every segment
    seg_b = sc.read_scoring(index, "segments", sid_b)
    assert seg_b.num_rows == 0 or {json.loads(c)["label_set"]["class_names"] == processed["names"]
                                   for c in seg_b.column("model_card").to_pylist()} == {True}
    assert sc.manifest(index, sid_b)["class_names"] == processed["names"]


def test_evaluate_reads_a_stored_scoring(processed, capsys, tmp_path):
    """`exvad evaluate --scoring` evaluates the scores a scoring stored (no model runs; the archive is gone):
    detector a's rescoring and the `process` scoring (same detector) give the same figures, and the
    predicted classes are the ones the rescore recorded. (`--checkpoint` would score with the video-level
    explanation, while the archive job fuses each window's own: the figures differ when a video has
    several windows, as here.)"""
    index = processed["index"]
    if not storage.exists(processed["labels"]):
        test_import_ucf_layout_with_real_frame_rates(processed, capsys)
    assert main(["rescore", "--index", index, "--detector", processed["a"], "--actors", "1"]) == 0
    sid = detector_id(processed["a"])
    data = ["--index", index, "--labels", processed["labels"], "--split", "test"]
    assert main(["evaluate", *data, "--scoring", sid, "--out", str(tmp_path / "a.json")]) == 0
    assert f"scoring {sid}:" in capsys.readouterr().err
    assert main(["evaluate", *data, "--scoring", "process", "--out", str(tmp_path / "p.json")]) == 0
    a, p = (json.loads((tmp_path / f).read_text()) for f in ("a.json", "p.json"))
    assert a["n_videos"] == p["n_videos"] == 5 and a["frame_level"]  # the test list names 5 videos
    for key in ("auc", "ap", "accuracy", "map_avg"):
        assert a[key] == pytest.approx(p[key], abs=1e-5, nan_ok=True), key
    assert 0.0 <= a["auc"] <= 1.0
    recorded = {r["name"]: r["video_class"] for r in sc.read_scoring(index, "videos", sid).to_pylist()}
    assert {n: v["predicted"] for n, v in a["videos"].items()} == {n: recorded[n] for n in a["videos"]}
    assert main(["evaluate", *data, "--scoring", sid, "--checkpoint", processed["a"]]) == 2
    assert main(["evaluate", "--labels", processed["labels"], "--snippets", index + "/snippets",
                 "--videos", index + "/videos", "--scoring", sid]) == 2
    assert "give --index" in capsys.readouterr().err


def test_a_model_card_naming_other_classes_than_the_weights_fails_every_video(processed, capsys):
    index = processed["index"]
    current = sc.current_scoring(index)
    assert main(["rescore", "--index", index, "--detector", processed["c"]]) == 1
    out = capsys.readouterr().out
    assert "0 scored, 20 failed" in out and "the model card beside" in out
    assert sc.current_scoring(index) == current  # a failed scoring is never made current
