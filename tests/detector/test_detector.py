"""Detector network, losses and scoring API."""

import numpy as np
import pytest
import torch

from exvad_ray.detector import (DetectorConfig, ExVADDetector, ExVADNet, ZeroShotScorer, mil_align, mil_bce,
                                topk_mean)
from exvad_ray.checkpoints import load_detector, save_detector
from exvad_ray.detector.model import local_attention_mask, valid_mask
from exvad_ray.errors import ConfigError, ExvadError

torch.set_num_threads(1)
NAMES = ["Normal", "Fight", "Fire", "Theft"]


def _det(fusion="add", d=16, length=64, seed=0):
    torch.manual_seed(seed)
    emb = np.random.default_rng(seed).normal(size=(4, d)).astype(np.float32)
    return ExVADDetector.build(DetectorConfig(embed_dim=d, num_classes=4, visual_length=length, attention_block=8,
                                              fusion=fusion), emb, NAMES)


def test_attention_mask_is_block_diagonal_and_respects_padding():
    valid = valid_mask(torch.tensor([12, 5]), 12)
    m = local_attention_mask(12, 4, valid)
    assert m.shape == (2, 1, 12, 12)
    assert m[0, 0, 1, 3] and not m[0, 0, 3, 4] and m[0, 0, 8, 11]
    assert not m[1, 0, 4, 5]  # key 5 is padding
    assert m[1, 0, 9, 9] and not m[1, 0, 9, 8]  # fully padded window: only itself


@pytest.mark.parametrize("fusion", ["add", "concat", "none"])
def test_padding_does_not_change_real_outputs(fusion):
    det = _det(fusion)
    x = torch.randn(2, 40, 16)
    text = torch.randn(2, 16)
    has = torch.tensor([True, True])
    batch = det.net(x, torch.tensor([40, 23]), text, has)
    alone = det.net(x[1:, :23], torch.tensor([23]), text[1:], has[1:])
    assert torch.allclose(batch.binary_logits[1, :23], alone.binary_logits[0], atol=1e-4)
    assert torch.allclose(batch.align_logits[1, :23], alone.align_logits[0], atol=1e-3)
    assert torch.isfinite(batch.binary_logits).all()


def test_score_any_length_in_chunks():
    det = _det(length=64)
    feats = np.random.default_rng(1).normal(size=(150, 16)).astype(np.float32)
    scores, probs = det.score(feats)
    assert scores.shape == (150,) and probs.shape == (150, 4)
    assert scores.dtype == np.float32 and np.all((scores > 0) & (scores < 1))
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    first, _ = det.score(feats[:64])  # chunk 1 is scored on its own
    np.testing.assert_allclose(scores[:64], first, atol=1e-5)
    assert det.score(feats[:0])[0].shape == (0,)


@pytest.mark.parametrize("parity", [False, True])
def test_short_video_scores_as_if_padded_to_the_chunk(parity):
    """Shorter than one chunk, a video is scored unpadded unless reference parity asks for VadCLIP's
    padding; either way the logits are those of the padded chunk."""
    torch.manual_seed(0)
    emb = np.random.default_rng(0).normal(size=(4, 16)).astype(np.float32)
    det = ExVADDetector.build(DetectorConfig(embed_dim=16, num_classes=4, visual_length=64, attention_block=8,
                                             reference_parity=parity, visual_prompt=parity,
                                             class_pooling="logits" if parity else "sigmoid"), emb, NAMES)
    feats = np.random.default_rng(3).normal(size=(23, 16)).astype(np.float32)
    b, a = det.logits(feats)
    x = np.zeros((1, 64, 16), np.float32)
    x[0, :23] = feats
    with torch.no_grad():
        out = det.net(torch.from_numpy(x), torch.tensor([23]), None, None)
    np.testing.assert_allclose(b, out.binary_logits[0, :23].numpy(), atol=1e-4)
    np.testing.assert_allclose(a, out.align_logits[0, :23].numpy(), atol=1e-3)


def test_explanation_feature_changes_scores_and_is_checked():
    det = _det("add")
    feats = np.random.default_rng(2).normal(size=(30, 16)).astype(np.float32)
    a, _ = det.score(feats, None)
    b, _ = det.score(feats, np.ones(16, np.float32))
    assert not np.allclose(a, b)
    with pytest.raises(ExvadError):
        det.score(feats, np.ones(8, np.float32))
    with pytest.raises(ExvadError):
        det.score(np.ones((5, 8), np.float32))


def test_checkpoint_roundtrip_through_storage(tmp_path):
    det = _det("concat")
    det.meta = {"label_set": "x"}
    save_detector(det, str(tmp_path / "m" / "model.pt"))
    again = load_detector(str(tmp_path / "m"))  # folder works too
    feats = np.random.default_rng(3).normal(size=(70, 16)).astype(np.float32)
    np.testing.assert_allclose(det.score(feats)[1], again.score(feats)[1], atol=1e-6)
    assert again.class_names == NAMES and again.meta["label_set"] == "x" and again.config.fusion == "concat"
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ExvadError):
        load_detector(str(tmp_path / "bad.pt"))
    with pytest.raises(ExvadError):
        load_detector(str(tmp_path / "missing"))


def test_config_and_class_checks():
    with pytest.raises(ConfigError):
        DetectorConfig(fusion="mul")
    with pytest.raises(ExvadError):
        ExVADDetector.build(DetectorConfig(embed_dim=16, num_classes=2), np.zeros((2, 16)), ["Fight", "Normal"])


def test_zero_shot_scorer():
    emb = np.eye(4, 8, dtype=np.float32)
    zs = ZeroShotScorer(emb, NAMES)
    feats = np.stack([emb[0], emb[2], emb[2]])
    scores, probs = zs.score(feats)
    assert probs.argmax(1).tolist() == [0, 2, 2]
    np.testing.assert_allclose(scores, 1 - probs[:, 0], atol=1e-6)
    assert scores[0] < 0.01 and scores[1] > 0.99
    assert zs.predict_video(feats)[2].video_class == "Fire"


def test_topk_mean_and_losses_by_hand():
    v = torch.tensor([[1.0, 5.0, 3.0, 0.0], [2.0, 9.0, 0.0, 0.0]])
    lengths = torch.tensor([4, 1])  # k = 1 for both
    assert topk_mean(v, lengths).tolist() == [5.0, 2.0]  # padding (9.0) ignored
    lengths20 = torch.tensor([20])  # k = 20//16 + 1 = 2
    assert topk_mean(torch.arange(20.0)[None], lengths20).item() == pytest.approx(18.5)
    logits = torch.zeros(1, 3)  # sigmoid 0.5 -> BCE = ln 2
    assert mil_bce(logits, torch.tensor([3]), torch.tensor([1.0])).item() == pytest.approx(np.log(2), rel=1e-5)
    align = torch.zeros(1, 3, 4)  # uniform over 4 classes -> CE = ln 4
    assert mil_align(align, torch.tensor([3]), torch.tensor([[0.0, 1, 1, 0]])).item() == pytest.approx(np.log(4), rel=1e-5)


def test_net_rejects_mismatched_class_embeddings():
    with pytest.raises(ValueError):
        ExVADNet(DetectorConfig(embed_dim=16, num_classes=4), torch.zeros(3, 16))


def test_visual_dim_projects_other_encoders_into_the_class_space(tmp_path):
    """EfficientNet-Lite-style visual features (24 values) with MiniLM-style class and explanation
    features (16): the detector learns a projection 24 -> 16; checkpoints record visual_dim."""
    cfg = DetectorConfig(embed_dim=16, visual_dim=24, num_classes=4, visual_length=64, attention_block=8)
    assert cfg.input_dim == 24 and cfg.projects_input
    assert DetectorConfig(embed_dim=16).input_dim == 16 and not DetectorConfig(embed_dim=16, visual_dim=16).projects_input
    torch.manual_seed(0)
    det = ExVADDetector.build(cfg, np.random.default_rng(0).normal(size=(4, 16)).astype(np.float32), NAMES)
    assert tuple(det.net.input_proj.weight.shape) == (16, 24)
    feats = np.random.default_rng(1).normal(size=(70, 24)).astype(np.float32)
    scores, probs = det.score(feats, np.ones(16, np.float32))
    assert scores.shape == (70,) and probs.shape == (70, 4)
    with pytest.raises(ExvadError):
        det.score(feats[:, :16])  # visual features must have visual_dim values
    with pytest.raises(ExvadError):
        det.score(feats, np.ones(24, np.float32))  # explanations live in the class space
    save_detector(det, str(tmp_path / "model.pt"))
    again = load_detector(str(tmp_path / "model.pt"), device="cpu")
    assert again.config.visual_dim == 24 and again.state()["config"]["visual_dim"] == 24
    np.testing.assert_allclose(again.score(feats)[0], det.score(feats)[0], atol=1e-6)
    with pytest.raises(ConfigError):
        DetectorConfig(embed_dim=16, visual_dim=0)


def test_visual_offset_reads_only_the_later_part_of_each_snippet_feature(tmp_path):
    """lite stores [appearance | motion] and its detector reads the motion half: with visual_offset the
    detector takes (T, offset + width) features, and whatever is before the offset changes nothing."""
    cfg = DetectorConfig(embed_dim=16, visual_dim=24, visual_offset=10, num_classes=4, visual_length=64,
                         attention_block=8)
    assert (cfg.input_dim, cfg.visual_width, cfg.projects_input) == (34, 24, True)
    assert not DetectorConfig(embed_dim=16, visual_offset=5).projects_input  # reads 16 values: no projection
    torch.manual_seed(0)
    det = ExVADDetector.build(cfg, np.random.default_rng(0).normal(size=(4, 16)).astype(np.float32), NAMES)
    assert tuple(det.net.input_proj.weight.shape) == (16, 24)
    feats = np.random.default_rng(1).normal(size=(30, 34)).astype(np.float32)
    other = feats.copy()
    other[:, :10] = np.random.default_rng(2).normal(size=(30, 10))
    np.testing.assert_array_equal(det.score(feats)[0], det.score(other)[0])
    with pytest.raises(ExvadError, match="34"):
        det.score(feats[:, 10:])  # the stored width, offset included, is what it takes
    save_detector(det, str(tmp_path / "model.pt"))
    again = load_detector(str(tmp_path / "model.pt"), device="cpu")
    assert again.config.visual_offset == 10
    np.testing.assert_allclose(again.score(feats)[0], det.score(feats)[0], atol=1e-6)
    with pytest.raises(ConfigError, match="visual_offset"):
        DetectorConfig(embed_dim=16, visual_offset=-1)


@pytest.mark.parametrize("fusion", ["add", "concat", "none"])
@pytest.mark.parametrize("explained", [True, False])
def test_training_and_inference_score_a_video_the_same(fusion, explained):
    """The training forward (train mode, a padded batch row with has_text) and the scoring API give
    one video the same logits. Before the fix, `add` without an explanation added the text
    projection's bias (a zero F_T) in training only; now inference adds it too."""
    from exvad_ray.train.data import VideoRecord, training_row
    from exvad_ray.train.loop import rows_to_batch

    det = _det(fusion, length=64)
    with torch.no_grad():  # a trained-looking detector: non-zero biases everywhere
        for p in det.net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    rng = np.random.default_rng(4)
    text = rng.normal(size=16).astype(np.float32) if explained else None
    rec = VideoRecord("v", rng.normal(size=(41, 16)).astype(np.float32), text, ["Fight"])
    other = VideoRecord("w", rng.normal(size=(64, 16)).astype(np.float32), rng.normal(size=16).astype(np.float32), ["Normal"])
    batch = rows_to_batch([training_row(r, NAMES, 64, 16) for r in (rec, other)])  # the other one is explained
    det.net.train()
    with torch.no_grad():
        out = det.net(batch["features"], batch["length"].long(), batch["text"], batch["has_text"].bool())
    b, a = det.logits(rec.features, text)
    np.testing.assert_allclose(out.binary_logits[0, :41].numpy(), b, atol=1e-5)
    np.testing.assert_allclose(out.align_logits[0, :41].numpy(), a, atol=1e-4)


def test_config_of_older_checkpoints_keeps_their_behaviour():
    old = {"embed_dim": 16, "num_classes": 4, "attn_window": 64, "layers": 1}  # before attention_block / class_pooling
    cfg = DetectorConfig.from_dict(old)
    assert cfg.attention_block == 64 and cfg.class_pooling == "sigmoid"
    assert DetectorConfig.from_dict(cfg.to_dict()) == cfg
