"""Training rows from the archive indexes joined with a labels table."""

import numpy as np
import pytest

from exvad_ray.errors import ExvadError
from exvad_ray.train.data import labels_table, load_index_records, training_row, uniform_pool, write_labels


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
    write_labels(labels_table(labs), str(tmp_path / "labels.parquet"))
    return feats


def test_join_indexes_with_labels(tmp_path, write_feature_index):
    feats = write_index(tmp_path, write_feature_index)
    recs = load_index_records(str(tmp_path / "idx" / "snippets"), str(tmp_path / "idx" / "videos"),
                              str(tmp_path / "labels.parquet"))
    assert [r.name for r in recs] == ["cam0", "cam1"]
    np.testing.assert_array_equal(recs[1].features, feats["cam1"])  # snippet order restored
    assert recs[0].text_feature is None and recs[1].text_feature[0] == 1.0
    # labels are in source frames at 32 per snippet (n_frames = 2 * 16 * T): rescaled to 16 per snippet
    assert recs[1].segments == [(16, 32, "Fight")]
    with pytest.raises(ExvadError, match="no video"):
        load_index_records(str(tmp_path / "idx" / "snippets"), str(tmp_path / "idx" / "videos"),
                           str(tmp_path / "labels.parquet"), splits=["test"])
    with pytest.raises(ExvadError):
        load_index_records(str(tmp_path / "nope"), str(tmp_path / "idx" / "videos"), str(tmp_path / "labels.parquet"))


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
