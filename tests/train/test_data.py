"""Training rows from the archive indexes joined with a labels table."""

import numpy as np
import pytest

from exvad_ray.errors import ExvadError
from exvad_ray.index.labels import append_labels, make_table
from exvad_ray.train.data import load_index_records, training_row, uniform_pool


def write_index(tmp_path, write_feature_index, n_videos=3, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    videos, labs, feats = [], [], {}
    for v in range(n_videos):
        t = 5 + v
        f = rng.normal(size=(t, dim)).astype(np.float32)
        feats[f"cam{v}"] = f
        videos.append({"video_id": f"id{v}", "name": f"cam{v}", "features": f,
                       "text": (np.ones(dim) * v).astype(np.float32) if v else None})
        if v < 2:  # video 2 is unlabelled
            labs.append({"name": f"cam{v}", "labels": ["Fight"] if v else ["Normal"], "split": "train",
                         "segments": [{"start_frame": 32, "end_frame": 64, "label": "Fight"}] if v else [],
                         "n_frames": t * 32 if v else None})
    write_feature_index(str(tmp_path / "idx"), videos)
    append_labels(str(tmp_path / "labels"), make_table(labs), source="import:test")
    return feats


def test_join_indexes_with_labels(tmp_path, write_feature_index):
    feats = write_index(tmp_path, write_feature_index)
    recs = load_index_records(str(tmp_path / "idx" / "snippets"), str(tmp_path / "idx" / "videos"),
                              str(tmp_path / "labels"))
    assert [r.name for r in recs] == ["cam0", "cam1"]
    np.testing.assert_array_equal(recs[1].features, feats["cam1"])  # snippet order restored
    assert recs[0].text_feature is None and recs[1].text_feature[0] == 1.0
    # labels are in source frames at 32 per snippet (n_frames = 2 * 16 * T): rescaled to 16 per snippet
    assert recs[1].segments == [(16, 32, "Fight")]
    with pytest.raises(ExvadError, match="no video"):
        load_index_records(str(tmp_path / "idx" / "snippets"), str(tmp_path / "idx" / "videos"),
                           str(tmp_path / "labels"), splits=["test"])
    with pytest.raises(ExvadError):
        load_index_records(str(tmp_path / "nope"), str(tmp_path / "idx" / "videos"), str(tmp_path / "labels"))


def test_training_rows_pool_and_pad():
    from exvad_ray.train.data import VideoRecord

    f = np.arange(10, dtype=np.float32).repeat(2).reshape(10, 2)
    np.testing.assert_allclose(uniform_pool(f, 5)[:, 0], [0.5, 2.5, 4.5, 6.5, 8.5])
    row = training_row(VideoRecord("v", f, None, ["fight"], [], "train"), ["Normal", "Fight"], 4)
    assert row["features"].shape == (4, 2) and row["length"] == 4 and row["is_anomaly"]
    assert row["label"].tolist() == [0, 1] and not row["has_text"]
    short = training_row(VideoRecord("v", f[:3], np.ones(2, np.float32), ["Normal"], [], "train"), ["Normal", "Fight"], 8)
    assert short["length"] == 3 and short["features"][3:].sum() == 0 and short["has_text"]
    with pytest.raises(ExvadError, match="not in the label set"):
        training_row(VideoRecord("v", f, None, ["Arson"], [], "train"), ["Normal", "Fight"], 4)


def test_current_view_feeds_training_records(tmp_path, write_feature_index):
    """Verdicts reach the records: a confirmed segment is ground truth of its class (and the video
    anomalous), a false alarm only a Normal interval (no anomaly segment)."""
    from exvad_ray.index.labels import record_feedback

    write_index(tmp_path, write_feature_index)
    labels = str(tmp_path / "labels")
    seg = {"segment_id": "id0:1", "uri": "file:///archive/cam0.mp4", "start_s": 1.0, "end_s": 2.0,
           "fps": 16.0, "n_frames": 80}
    record_feedback(labels, seg, "confirmed", cls="Fight")
    record_feedback(labels, dict(seg, segment_id="id1:0", uri="file:///archive/cam1.mp4", start_s=0.0), "false-alarm")
    recs = {r.name: r for r in load_index_records(str(tmp_path / "idx" / "snippets"), str(tmp_path / "idx" / "videos"),
                                                  labels)}
    assert recs["cam0"].labels == ["Fight"] and recs["cam0"].segments == [(16, 32, "Fight")]
    assert recs["cam1"].segments == [(16, 32, "Fight")]  # the Normal interval is not an anomaly segment
