"""The wrappers on batches: shapes, dtypes, determinism, reload equality, clear errors on bad images."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from exvad_ray.errors import ExvadError
from exvad_ray.models import Captioner, ClipModel, TransformersExplainer, build_explanation_messages
from exvad_ray.models.tiny import make_tiny_clip, make_tiny_llm

from models_testutil import images


def test_tiny_dir_layout(tiny_dir):
    assert json.loads((tiny_dir / "MANIFEST.json").read_text())["models"] == ["clip", "captioner", "llm"]
    assert (tiny_dir / "clip" / "open_clip_config.json").is_file()
    assert (tiny_dir / "clip" / "open_clip_model.safetensors").is_file()
    for sub in ("captioner", "llm"):
        assert (tiny_dir / sub / "config.json").is_file() and (tiny_dir / sub / "tokenizer.json").is_file()
    cfg = json.loads((tiny_dir / "llm" / "config.json").read_text())
    assert cfg["hidden_size"] // cfg["num_attention_heads"] == 32  # a head size vLLM's CPU attention supports
    assert json.loads((tiny_dir / "captioner" / "config.json").read_text())["model_type"] == "blip-2"


def test_clip_image_and_text_embeddings(clip):
    assert clip.dim == 64 and clip.model_id == "exvad-tiny/clip-vit@seed0"
    f = clip.embed_images(images(5))
    assert f.shape == (5, 64) and f.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(f, clip.embed_images(images(5)))  # deterministic
    f2 = clip.embed_images(images(3, size=100))  # any size: resized with the model's own constants
    assert f2.shape == (3, 64)
    t = clip.embed_texts(["a man climbs a fence", "a car crash"])
    assert t.shape == (2, 64) and t.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("bad, msg", [
    (np.zeros((0, 224, 224, 3), np.uint8), "empty batch"),
    ([], "empty batch"),
    (np.zeros((2, 3, 224, 224), np.uint8), r"\(N, H, W, 3\)"),
    (np.zeros((224, 224, 3), np.uint8), "one image"),
    (np.zeros((2, 224, 224, 3), np.float32), "uint8"),
    ([np.zeros((10, 10, 3), np.uint8), np.zeros((12, 10, 3), np.uint8)], "same shape"),
])
def test_bad_images_give_clear_errors(clip, bad, msg):
    with pytest.raises(ExvadError, match=msg):
        clip.embed_images(bad)


def test_clip_empty_texts_error(clip):
    with pytest.raises(ExvadError, match="empty batch"):
        clip.embed_texts([])
    with pytest.raises(ExvadError, match="list of strings"):
        clip.embed_texts("one string")


def test_clip_saved_equals_in_memory_and_rebuild(tiny_dir, tiny_profile, tmp_path):
    """The saved-then-reloaded tiny CLIP computes exactly what the freshly built one does."""
    import open_clip

    from exvad_ray.models.tiny import architecture

    torch.manual_seed(0)
    fresh = open_clip.CLIP(**architecture("tiny_clip")["model_cfg"]).eval()
    loaded = ClipModel(tiny_profile.clip)
    x = loaded._preprocess(images(4))
    with torch.inference_mode():
        ref = fresh.encode_image(x, normalize=True).numpy()
    np.testing.assert_array_equal(loaded.embed_images(images(4)), ref)
    # Building again with the same seed gives the same weights.
    again = ClipModel(tiny_profile.clip.model_copy(update={"model": str(make_tiny_clip(tmp_path / "clip", seed=0))}))
    np.testing.assert_array_equal(again.embed_images(images(4)), ref)


@pytest.mark.parametrize("shape", [(224, 224), (96, 120)])
def test_clip_preprocess_uint8_resize_matches_float(clip, shape):
    """The CPU fast path (resize on uint8) stays close to resizing in float: within one grey level on
    the pipeline's 224 crops; on a mild downscale of pure noise, separable uint8 passes clamp
    overshoots that float keeps, so only the mean is held to a grey level there."""
    import torch.nn.functional as F

    x = np.ascontiguousarray(images(3, size=max(shape))[:, :shape[0], :shape[1]])
    t = torch.from_numpy(x).permute(0, 3, 1, 2).float()
    s = clip.image_size
    h, w = shape
    scale = s / min(h, w)
    nh, nw = max(s, round(h * scale)), max(s, round(w * scale))
    ref = F.interpolate(t, size=(nh, nw), mode=clip.interpolation, align_corners=False, antialias=True)
    top, left = (nh - s) // 2, (nw - s) // 2
    ref = (ref[:, :, top:top + s, left:left + s].clamp(0, 255) / 255.0 - clip.mean) / clip.std
    got = clip._preprocess(x)
    assert got.shape == ref.shape
    level = 1.01 / 255 / float(clip.std.min())  # one grey level, normalised
    diff = (got - ref).abs()
    assert float(diff.mean()) <= level
    if shape == (224, 224):
        assert float(diff.max()) <= level


def test_captioner_batch_deterministic_and_reload(tiny_profile, tmp_path):
    cap = Captioner(tiny_profile.captioner)
    assert cap.model_id == "exvad-tiny/blip2-opt@seed0"
    out = cap.caption(images(5))
    assert isinstance(out, list) and len(out) == 5 and all(isinstance(c, str) for c in out)
    assert out == cap.caption(images(5))
    # save_pretrained -> from_pretrained through the same loading code: identical captions.
    cap.model.save_pretrained(tmp_path / "cap")
    cap.processor.save_pretrained(tmp_path / "cap")
    again = Captioner(tiny_profile.captioner.model_copy(update={"model": str(tmp_path / "cap")}))
    assert again.caption(images(5)) == out
    with pytest.raises(ExvadError, match="empty batch"):
        cap.caption(np.zeros((0, 224, 224, 3), np.uint8))


def test_captioner_with_prompt_strips_it(tiny_profile):
    cap = Captioner(tiny_profile.captioner.model_copy(update={"prompt": "a photo of", "max_new_tokens": 3}))
    out = cap.caption(images(2))
    assert len(out) == 2 and not any(c.startswith("a photo of") for c in out)


def test_explainer_batch_deterministic_and_reload(tiny_profile, tmp_path):
    ex = TransformersExplainer(tiny_profile.explainer)
    convs = [build_explanation_messages([(0.0, "a man walks."), (4.0, "a man falls down.")]),
             build_explanation_messages([(1.5, "a car crashes into a pole.")], window=(0.0, 10.0))]
    out = ex.explain(convs)
    assert len(out) == 2 and all(isinstance(t, str) for t in out)
    assert ex.generated_tokens > 0
    assert ex.explain(convs) == out
    # Batched (left-padded) and one-by-one give the same greedy text.
    assert [ex.explain([c])[0] for c in convs] == out
    d = make_tiny_llm(tmp_path / "llm", seed=0)
    assert TransformersExplainer(tiny_profile.explainer.model_copy(update={"model": str(d)})).explain(convs) == out
    with pytest.raises(ExvadError, match="list of conversations"):
        ex.explain(convs[0])
