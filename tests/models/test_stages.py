"""Stages on window rows (Ray's numpy batch format), as plain Python and inside Ray Data."""

from __future__ import annotations

import numpy as np
import pytest

from exvad_ray.models import (
    CaptionCleaningStage, CaptionStage, ClipImageStage, ExplanationPromptStage, ExplanationStage, TextEmbeddingStage,
)
from models_testutil import window_batch


@pytest.fixture(scope="module")
def stages(tiny_profile):
    return [ClipImageStage(tiny_profile), CaptionStage(tiny_profile), CaptionCleaningStage(tiny_profile),
            ExplanationStage(tiny_profile), TextEmbeddingStage(tiny_profile)]


def run(stages, batch):
    for s in stages:
        batch = s(batch)
    return batch


def test_chain_shapes_dtypes_and_ids(stages):
    out = run(stages, window_batch())
    assert list(out["error"]) == [None, None]
    for i, (n, k) in enumerate([(5, 3), (3, 2)]):
        assert out["visual_embedding"][i].shape == (n, 64) and out["visual_embedding"][i].dtype == np.float32
        assert out["keyframe_embedding"][i].shape == (k, 64) and out["keyframe_embedding"][i].dtype == np.float32
        assert len(out["captions"][i]) == k and all(isinstance(c, str) for c in out["captions"][i])
        assert len(out["clean_captions"][i]) == k
        assert set(out["clean_captions"][i]) <= set(out["captions"][i])
        assert isinstance(out["explanation"][i], str)
    assert out["explanation_embedding"].shape == (2, 64) and out["explanation_embedding"].dtype == np.float32
    assert list(out["visual_model"]) == ["exvad-tiny/clip-vit@seed0"] * 2
    assert list(out["caption_model"]) == ["exvad-tiny/blip2-opt@seed0"] * 2
    assert list(out["explanation_model"]) == ["exvad-tiny/qwen2-chat@seed0"] * 2
    assert "frames" in out and list(out["video_id"]) == ["vid0", "vid1"]


def test_chain_is_deterministic(stages, tiny_profile):
    a = run(stages, window_batch())
    fresh = [type(s)(tiny_profile) for s in stages]
    b = run(fresh, window_batch())
    for col in ("visual_embedding", "keyframe_embedding"):
        for x, y in zip(a[col], b[col]):
            np.testing.assert_array_equal(x, y)
    assert [list(c) for c in a["captions"]] == [list(c) for c in b["captions"]]
    assert list(a["explanation"]) == list(b["explanation"])
    np.testing.assert_array_equal(a["explanation_embedding"], b["explanation_embedding"])


def test_bad_row_gets_an_error_others_go_on(stages):
    batch = window_batch()
    batch["frames"][1] = np.zeros((3, 3, 224, 224), np.uint8)  # channels first: wrong layout
    out = run(stages, batch)
    assert out["error"][0] is None
    assert out["error"][1].startswith("visual: ExvadError:") and "(N, H, W, 3)" in out["error"][1]
    assert out["visual_embedding"][1].shape == (0, 64)
    assert out["visual_embedding"][0].shape == (5, 64) and len(out["captions"][0]) == 3
    assert out["explanation"][1] == "" and not out["explanation_embedding"][1].any()


def test_prior_error_rows_pass_through(stages):
    batch = window_batch()
    batch["error"] = np.array(["decode: VideoDecodeError: truncated", None], dtype=object)
    out = run(stages, batch)
    assert out["error"][0] == "decode: VideoDecodeError: truncated" and out["error"][1] is None
    assert out["visual_embedding"][0].shape == (0, 64) and list(out["captions"][0]) == []


def test_cleaning_stage_uses_keyframe_features(tiny_profile, clip):
    caps = ["a man climbs a fence", "a car crashes into a pole", "people walk in a park"]
    feats = clip.embed_texts([caps[2], caps[0], caps[2]])  # constructed: frames look like captions 2, 0, 2
    batch = {"captions": np.array([np.array(caps, dtype=object)], dtype=object),
             "keyframe_embedding": _obj([feats])}
    out = CaptionCleaningStage(tiny_profile)(batch)
    assert list(out["clean_captions"][0]) == [caps[2], caps[0], caps[2]]


def _obj(values):
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out


def test_empty_keyframes_and_window_prompt(stages, tiny_profile):
    batch = window_batch(n_snippets=(4,), n_kf=(0,))
    batch["keyframes"] = _obj([np.zeros((0, 224, 224, 3), np.uint8)])
    batch["keyframe_s"] = _obj([np.zeros(0)])
    out = run(stages, batch)
    assert out["error"][0] is None and out["keyframe_embedding"][0].shape == (0, 64)
    assert list(out["captions"][0]) == [] and out["explanation"][0] == ""
    # Later windows of a long video get a per-window prompt with their time span.
    b = window_batch(n_snippets=(4,), n_kf=(2,))
    b["window_index"] = np.array([1])
    b["clean_captions"] = _obj([np.array(["a", "b"], dtype=object)])
    msgs = ExplanationPromptStage()(b)["messages"][0]
    assert "part of a long video from 0.0 s to 2.1 s" in msgs[1]["content"]


@pytest.mark.slow
def test_stages_in_ray_data(tiny_profile):
    """The same classes as Ray Data actor pools on a real local Ray (2 CPUs, fractional num_cpus)."""
    import ray

    ray.init(num_cpus=2, object_store_memory=300 * 1024**2, include_dashboard=False, ignore_reinit_error=True)
    try:
        b = window_batch(n_snippets=(4, 2, 3), n_kf=(2, 1, 2))
        rows = [{k: v[i] for k, v in b.items()} for i in range(3)]
        ds = ray.data.from_items(rows)
        for cls in (ClipImageStage, CaptionStage):  # the whole chain runs in the pipeline's end-to-end tests
            ds = ds.map_batches(cls, fn_constructor_kwargs={"profile": tiny_profile}, batch_size=2,
                                compute=ray.data.ActorPoolStrategy(size=1), num_cpus=0.5)
        out = sorted(ds.drop_columns(["frames", "keyframes"]).take_all(), key=lambda r: r["video_id"])
    finally:
        ray.shutdown()
    assert [r["error"] for r in out] == [None] * 3, out[0]["error"]
    assert [np.asarray(r["visual_embedding"]).shape for r in out] == [(4, 64), (2, 64), (3, 64)]
    assert [np.asarray(r["keyframe_embedding"]).shape for r in out] == [(2, 64), (1, 64), (2, 64)]
    assert [len(r["captions"]) for r in out] == [2, 1, 2]
    assert all(r["caption_model"] == "exvad-tiny/blip2-opt@seed0" for r in out)
