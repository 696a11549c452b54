"""Dataset presets: the train CLI, the Python API and the model card carry VadCLIP's values, and
options given explicitly override them."""

import numpy as np
import pytest

from exvad_ray.cli import build_parser
from exvad_ray.detector import DetectorConfig
from exvad_ray.detector.presets import PRESETS
from exvad_ray.errors import ConfigError, ExvadError
from exvad_ray.train.api import DataSource, TrainRequest, _card_markdown, _preset_card, detector_config
from exvad_ray.cli.train import explicit_settings
from exvad_ray.train.loop import TrainConfig, train_config

EMB = np.zeros((14, 512), np.float32)
NAMES = ["Normal"] + [f"C{i}" for i in range(13)]


def _cli(*extra):
    args = build_parser().parse_args(["train", "--out", "x", "--class-embeddings", "e.npz", *extra])
    det, train = explicit_settings(args)
    return args, det, train


def test_presets_hold_vadclip_values_with_sources():
    ucf, xd = PRESETS["ucf"], PRESETS["xd"]
    assert (ucf.detector["layers"], ucf.detector["attention_block"], xd.detector["layers"], xd.detector["attention_block"]) == (2, 8, 1, 64)
    assert (ucf.train["lr"], xd.train["lr"], ucf.train["lr_milestones"], xd.train["lr_milestones"]) == (2e-5, 1e-5, (4, 8), (3, 6, 10))
    assert (ucf.train["loss"]["contrast"], xd.train["loss"]["contrast"]) == (0.1, 1e-4)
    for p in (ucf, xd):  # every value says where it comes from
        keys = {f"detector.{k}" for k in p.detector} | {f"train.{k}" for k in p.train if k != "loss"}
        keys |= {f"train.loss.{k}" for k in p.train["loss"]}
        assert keys <= set(p.sources), keys - set(p.sources)


def test_cli_preset_with_explicit_overrides():
    args, det, train = _cli("--preset", "xd", "--epochs", "3", "--attention-block", "16")
    cfg = train_config(args.preset, **train)
    assert (cfg.epochs, cfg.lr, cfg.lr_milestones, cfg.batch_size, cfg.seed, cfg.loss.contrast) == (3, 1e-5, (3, 6, 10), 96, 234, 1e-4)
    req = TrainRequest(DataSource(), "x", EMB, NAMES, detector=det, train=cfg, preset=args.preset)
    d = detector_config(req, 512)
    assert (d.layers, d.attention_block, d.class_pooling) == (1, 16, "logits")
    args, det, train = _cli("--lr-milestones", "none", "--contrast-weight", "1", "--reference-parity")
    cfg = train_config(args.preset, **train)
    assert cfg.lr_milestones == () and cfg.loss.contrast == 1.0 and cfg.lr == TrainConfig().lr and det == {"reference_parity": True}
    args, det, train = _cli("--lr-milestones", "2,5", "--class-pooling", "logits")
    assert train_config(None, **train).lr_milestones == (2, 5) and det == {"class_pooling": "logits"}


def test_api_preset_and_model_card():
    req = TrainRequest(DataSource(), "x", EMB, NAMES, preset="ucf")
    assert req.train.lr == 2e-5 and req.train.batch_size == 128 and req.train.preset == "ucf"
    d = detector_config(req, 512)
    assert (d.layers, d.attention_block, d.heads, d.visual_length) == (2, 8, 1, 256)
    card_preset = _preset_card("ucf")
    assert card_preset["train"]["lr"] == 2e-5 and "ucf_option.py" in card_preset["sources"]["train.lr"]
    card = {"model": "m", "created": "now", "label_set": {"name": "s", "class_names": NAMES}, "data": {"splits": {}},
            "selection": {"metric": "auc", "best_epoch": 1, "val_metrics": {}}, "preset": card_preset,
            "config": {"detector": d.to_dict(), "train": req.train.to_dict()}, "versions": {}}
    assert "UCF-Crime" in _card_markdown(card) and "milestones [4, 8]" in _card_markdown(card)
    with pytest.raises(ConfigError):
        TrainRequest(DataSource(), "x", EMB, NAMES, preset="kinetics")


def test_learning_rate_schedule_is_multistep():
    cfg = TrainConfig(lr=1.0, lr_milestones=(4, 8), lr_gamma=0.1)
    assert [round(cfg.lr_at(e), 6) for e in range(10)] == [1, 1, 1, 1, 0.1, 0.1, 0.1, 0.1, 0.01, 0.01]
    assert TrainConfig(lr=1.0, lr_milestones=()).lr_at(9) == 1.0


def test_parity_mode_refuses_what_vadclip_cannot_compute():
    ok = {"embed_dim": 16, "class_pooling": "logits", "reference_parity": True}
    assert DetectorConfig(**ok).reference_parity
    with pytest.raises(ConfigError, match="visual_dim"):
        DetectorConfig(**ok, visual_dim=32)
    with pytest.raises(ConfigError, match="visual_offset"):
        DetectorConfig(**ok, visual_offset=8)
    with pytest.raises(ConfigError, match="divide"):
        DetectorConfig(**ok, visual_length=100, attention_block=64)
    with pytest.raises(ConfigError, match="pooling"):
        DetectorConfig(**(ok | {"class_pooling": "sigmoid"}))


def test_profile_detector_defaults_sit_under_the_preset_and_the_command_line():
    from exvad_ray.models import load_profile

    lite = load_profile("lite", check_local=False).detector
    assert lite == {"layers": 0, "visual_offset": 1280}  # lite features: [appearance | motion], reads motion
    cfg = detector_config(TrainRequest(DataSource(), "x", EMB, NAMES, profile_detector=lite), 2560)
    assert (cfg.layers, cfg.visual_offset, cfg.visual_dim, cfg.input_dim) == (0, 1280, 1280, 2560)
    cfg = detector_config(TrainRequest(DataSource(), "x", EMB, NAMES, profile_detector=lite, preset="xd"), 2560)
    assert (cfg.layers, cfg.visual_offset) == (1, 1280)  # a preset sets the architecture, not the data layout
    req = TrainRequest(DataSource(), "x", EMB, NAMES, detector={"layers": 3}, profile_detector=lite, preset="xd")
    assert detector_config(req, 2560).layers == 3
    # features that are not the profile's layout (lite indexes made before motion: 1280 values; VadCLIP's 512)
    # are read whole; an offset given on the command line must fit
    for width in (1280, 512):
        cfg = detector_config(TrainRequest(DataSource(), "x", EMB, NAMES, profile_detector=lite), width)
        assert (cfg.visual_offset, cfg.input_dim, cfg.layers) == (0, width, 0)
    _, det, _ = _cli("--visual-offset", "1280")
    assert det == {"visual_offset": 1280}
    with pytest.raises(ExvadError, match="--visual-offset 1280.*1280 values"):
        detector_config(TrainRequest(DataSource(), "x", EMB, NAMES, detector=det, profile_detector=lite), 1280)
    assert detector_config(TrainRequest(DataSource(), "x", EMB, NAMES), 512).layers == 2  # project default
