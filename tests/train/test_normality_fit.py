"""`exvad normality fit` / `fit_normality` on small real indexes (Parquet written by the index writers,
a local Ray): bad input is one line and exit 2 before Ray starts; a false-alarm verdict's snippets
enter the bank so that segment is no longer flagged; a camera without a bank uses the global one;
a UCF layout's class folders never become cameras."""

from __future__ import annotations

import numpy as np
import pytest

from exvad_ray.cli import main
from exvad_ray.index import SNIPPETS, VIDEOS, write_manifest
from exvad_ray.index.labels import append_labels, make_table, read_labels, record_feedback
from exvad_ray.normality import GLOBAL

HALF = 16
FPS = 25.0
SNIP_S = 16 / FPS


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


CENTRES = unit(np.random.default_rng(42).standard_normal((6, 2, HALF)))  # normal scenes: 6 x (appearance, motion)
ODD = unit(np.random.default_rng(7).standard_normal((2, HALF)))  # something no normal video shows


def normal_video(rng: np.random.Generator, n: int) -> np.ndarray:
    c = CENTRES[rng.integers(0, len(CENTRES), n)]
    x = unit(c + 0.08 * rng.standard_normal(c.shape))
    return x.reshape(n, 2 * HALF).astype(np.float32)


def with_event(rng: np.random.Generator, n: int, a: int, b: int) -> np.ndarray:
    x = normal_video(rng, n).reshape(n, 2, HALF)
    x[a:b] = unit(ODD + 0.05 * rng.standard_normal((b - a, 2, HALF)))
    return x.reshape(n, 2 * HALF).astype(np.float32)


def write_video(index: str, vid: str, folder: str, name: str, f: np.ndarray) -> str:
    """One video's snippets and videos rows, its camera partition = the first folder of its path."""
    t = len(f)
    uri = f"file:///archive/{folder}/2024-01-01/{name}.mp4"
    part = {"date": "2024-01-01", "camera": folder}
    SNIPPETS.write(index, vid, part, {
        "video_id": [vid] * t, "uri": [uri] * t, "window_index": [0] * t, "snippet_index": list(range(t)),
        "start_s": [i * SNIP_S for i in range(t)], "end_s": [(i + 1) * SNIP_S for i in range(t)],
        "frame_index": [16 * i + 8 for i in range(t)], "anomaly_score": [0.0] * t, "class_probs": [None] * t,
        "visual_embedding": f.tolist(), "thumbnail_jpeg": [None] * t})
    VIDEOS.write(index, vid, part, {
        "video_id": [vid], "uri": [uri], "name": [name], "size_bytes": [None], "etag": [None], "status": ["ok"],
        "duration_s": [t * SNIP_S], "timing": ["constant"], "fps": [FPS], "n_frames": [16 * t], "width": [224],
        "height": [224], "codec": ["h264"], "n_snippets": [t], "n_windows": [1], "video_score": [0.0],
        "video_class": ["Normal"], "class_names": [None], "class_scores": [None], "n_segments": [0],
        "explanation": [""], "explanation_embedding": [None], "window_explanation_embeddings": [[]],
        "visual_model": ["test-lite"], "caption_model": [""], "explanation_model": [""], "detector": [""],
        "label_set": [""], "recorded_at": [None], "recorded_at_source": [None], "run_id": ["r1"],
        "processed_at": [None]})
    return uri


def vid_id(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


@pytest.fixture()
def archive(tmp_path):
    """Index of cam01 (8 normal train videos, 2 val), cam02 (1 short normal train video) and a test video
    of cam01 with an unusual stretch at snippets 20-29; labels table; the run recorded a camera rule."""
    rng = np.random.default_rng(0)
    index, labels = str(tmp_path / "index"), str(tmp_path / "labels")
    rows, uris = [], {}
    for i in range(10):
        uri = write_video(index, vid_id(i), "cam01", f"n{i:02d}", normal_video(rng, 60))
        rows.append({"name": f"n{i:02d}", "video_uri": uri, "labels": ["Normal"], "split": "train" if i < 8 else "val"})
    uri = write_video(index, vid_id(20), "cam02", "short", normal_video(rng, 30))
    rows.append({"name": "short", "video_uri": uri, "labels": ["Normal"], "split": "train"})
    uris["test"] = write_video(index, vid_id(30), "cam01", "odd", with_event(rng, 60, 20, 30))
    rows.append({"name": "odd", "video_uri": uris["test"], "labels": ["Normal"], "split": "test"})
    append_labels(labels, make_table(rows), source="synth")
    write_manifest(index, {"run_id": "r1", "args": {"archive": "file:///archive", "camera_pattern": r"^(?P<camera>cam\d+)/"}})
    return index, labels, uris


@pytest.mark.parametrize("case", ["no-index", "no-embeddings", "unknown-camera", "empty-bank", "bad-pattern"])
def test_bad_input_is_one_line_and_exit_2_before_ray_starts(case, archive, tmp_path, capsys):
    import ray

    if ray.is_initialized():
        ray.shutdown()
    index, labels, _ = archive
    args = ["normality", "fit", "--index", index, "--labels", labels, "--out", str(tmp_path / "m")]
    expect = {"no-index": "no index at", "no-embeddings": "no snippet embeddings", "unknown-camera": "unknown camera",
              "empty-bank": "bank would be empty", "bad-pattern": "no group named camera"}[case]
    if case == "no-index":
        args[3] = str(tmp_path / "nothing")
    elif case == "no-embeddings":
        bare = str(tmp_path / "bare")
        write_video(bare, vid_id(1), "cam01", "x", np.zeros((5, 2 * HALF), np.float32))
        t = SNIPPETS.read(bare)
        SNIPPETS.write(bare, vid_id(1), {"date": "2024-01-01", "camera": "cam01"},
                       {c: (t.column(c).to_pylist() if c not in ("visual_embedding",) else [None] * 5)
                        for c in SNIPPETS.schema.names})
        args[3] = bare
    elif case == "unknown-camera":
        args += ["--camera", "cam07"]
    elif case == "empty-bank":
        args += ["--split", "val", "--calibrate-on", "val"]
        args[3 + 2] = labels
        only_test = str(tmp_path / "labels-test")
        append_labels(only_test, make_table([{"name": "odd", "labels": ["Normal"], "split": "test"}]), source="synth")
        args[5] = only_test
    else:
        args += ["--camera-pattern", "cam\\d+"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("exvad normality: error:") and expect in err[0], err
    assert not ray.is_initialized()


def _fit(index: str, labels: str | None, out: str, **kw):
    from exvad_ray.train.normality import load_normality
    from exvad_ray.train.normality import NormalityFitConfig, fit_normality

    cfg = NormalityFitConfig(index=index, out=out, labels=labels, address=None, min_camera_snippets=200, **kw)
    fit_normality(cfg, echo=lambda _l: None)
    return load_normality(out)


def test_false_alarm_enters_the_bank_and_the_segment_is_no_longer_flagged(archive, tmp_path, ray_local):
    index, labels, uris = archive
    odd = SNIPPETS.read(index).to_pandas()
    odd = odd[odd.video_id == vid_id(30)].sort_values("snippet_index")
    x = np.stack(odd.visual_embedding.to_numpy()).astype(np.float32)

    model = _fit(index, labels, str(tmp_path / "m1"))
    before = model.score(x, vid_id(30), "cam01")
    segs = before.segments()
    assert any(a <= 21 and b >= 28 for a, b in segs), segs
    assert before.percentile[20:30].min() > before.percentile[:15].max()
    assert model.card["labels_used"]["false_alarm_segments"] == 0

    record_feedback(labels, {"segment_id": "seg-odd", "uri": uris["test"], "start_s": 20 * SNIP_S,
                             "end_s": 30 * SNIP_S, "label": "Anomaly", "fps": FPS}, "false-alarm")
    model2 = _fit(index, labels, str(tmp_path / "m2"))
    after = model2.score(x, vid_id(30), "cam01")
    assert model2.card["labels_used"]["false_alarm_segments"] == 1
    bank = model2.banks[model2.bank_for("cam01")]
    pinned = {(bank.videos[v], int(s)) for v, s, p in zip(bank.video, bank.snippet, bank.pinned) if p}
    assert {(vid_id(30), i) for i in range(20, 30)} <= pinned
    assert not [(a, b) for a, b in after.segments() if a < 30 and b >= 20], after.segments()
    assert after.nearest_video[25] == vid_id(30)  # the nearest normal moment is the verdict's own snippet


def test_camera_without_enough_footage_falls_back_to_the_global_bank(archive, tmp_path, ray_local):
    index, labels, _ = archive
    model = _fit(index, labels, str(tmp_path / "m"))
    assert model.card["cameras"]["per_camera"] is True
    assert set(model.banks) == {GLOBAL, "cam01"}  # cam02 has 30 snippets < 200
    assert model.bank_for("cam01") == "cam01"
    assert model.bank_for("cam02") == GLOBAL and model.bank_for("cam99") == GLOBAL and model.bank_for(None) == GLOBAL
    x = normal_video(np.random.default_rng(5), 20)
    s = model.score(x, None, "cam99")
    assert s.bank == GLOBAL and s.percentile.shape == (20,) and s.segments() == []


def test_calibration_prefers_footage_the_bank_never_saw(archive, tmp_path, ray_local):
    """Val's 2 Normal videos of cam01 calibrate the global and cam01 banks; with only one of them
    labelled val, the bank's own videos are scored leave-one-video-out as well."""
    index, labels, _ = archive
    model = _fit(index, labels, str(tmp_path / "m"))
    used = model.card["labels_used"]
    assert used["calibration_splits"] == ["val", "train"]
    assert used["calibration_footage"] == {GLOBAL: "held-out", "cam01": "held-out"}
    rows = read_labels(labels).to_pylist()
    for r in rows:
        r["split"] = "train" if r["name"] == "n09" else r["split"]
    one_val = str(tmp_path / "labels-one-val")
    append_labels(one_val, make_table([{k: r[k] for k in ("name", "video_uri", "labels", "split")} for r in rows]),
                  source="synth")
    model = _fit(index, one_val, str(tmp_path / "m2"))
    with_loo = {GLOBAL: "with leave-one-video-out", "cam01": "with leave-one-video-out"}
    assert model.card["labels_used"]["calibration_footage"] == with_loo
    model = _fit(index, labels, str(tmp_path / "m3"), calibrate_splits=("train", "val"))
    assert model.card["labels_used"]["calibration_footage"] == with_loo


def test_a_ucf_layout_never_turns_class_folders_into_cameras(tmp_path, ray_local):
    """First folders are classes; without a camera rule the index's partition is that folder, and a
    camera rule that yields the labels' classes is refused as a camera source too."""
    rng = np.random.default_rng(1)
    index, labels = str(tmp_path / "index"), str(tmp_path / "labels")
    rows = []
    for i in range(8):
        uri = write_video(index, vid_id(i), "Normal_Videos_event", f"Normal_Videos_{i:03d}_x264", normal_video(rng, 400))
        rows.append({"name": f"Normal_Videos_{i:03d}_x264", "video_uri": uri, "labels": ["Normal"], "split": "train"})
    for i in range(3):
        uri = write_video(index, vid_id(10 + i), "Abuse", f"Abuse{i:03d}_x264", with_event(rng, 400, 5, 50))
        rows.append({"name": f"Abuse{i:03d}_x264", "video_uri": uri, "labels": ["Abuse"], "split": "train"})
    append_labels(labels, make_table(rows), source="import:ucf")
    write_manifest(index, {"run_id": "r1", "args": {"archive": "file:///archive", "camera_pattern": None}})
    model = _fit(index, labels, str(tmp_path / "m1"))
    assert set(model.banks) == {GLOBAL} and model.card["cameras"]["per_camera"] is False
    model = _fit(index, labels, str(tmp_path / "m2"), camera_pattern=r"^(?P<camera>[^/]+)/")
    assert set(model.banks) == {GLOBAL} and "class" in model.card["cameras"]["note"]


def test_without_labels_all_footage_is_trimmed_and_the_card_says_so(archive, tmp_path, ray_local):
    index, _labels, _ = archive
    model = _fit(index, None, str(tmp_path / "m"), trim=0.05)
    card = model.card
    assert card["labels_used"]["labels"] is False and "trimmed" in card["labels_used"]["selection"]
    g = card["sizes"][GLOBAL]
    assert g["trimmed"] == int(0.05 * g["candidates"]) and g["entries"] == g["candidates"] - g["trimmed"]
    assert card["feature_model"]["visual_model"] == ["test-lite"]
    assert card["feature_model"]["layout"]["names"] == ["appearance", "motion"]
    assert card["fit_s"] >= 0 and card["calibration"][GLOBAL]["threshold"] > 0.9
    # the odd stretch, although it is in the bank's source footage, is found: its own video is left out
    odd = SNIPPETS.read(index).to_pandas()
    odd = odd[odd.video_id == vid_id(30)].sort_values("snippet_index")
    s = model.score(np.stack(odd.visual_embedding.to_numpy()).astype(np.float32), vid_id(30), "cam01")
    assert s.percentile[20:30].min() > s.percentile[:15].max()
