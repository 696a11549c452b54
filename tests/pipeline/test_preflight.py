"""Every named resource a stage needs is checked on the driver before Ray starts (issue 24, item 3):
the profile's model files (the tiny models before `exvad models make-tiny`, a missing local model
folder), a malformed label set, a detector checkpoint that is not one, a missing or damaged normality model.
Each costs one line on stderr and exit status 2, with no Ray session and no index written."""

from __future__ import annotations

import pytest

from exvad_ray.cli import main
from exvad_ray.errors import ConfigError
from exvad_ray.models.profiles import resolve_config


@pytest.fixture()
def dirs(tmp_path):
    (tmp_path / "archive").mkdir()
    return tmp_path


def _process(dirs, *options: str) -> list[str]:
    return ["process", "--archive", str(dirs / "archive"), "--index", str(dirs / "index"), *options]


def _one_line_exit_2(rc: int, err: str, expected: str, dirs) -> None:
    import ray

    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith("exvad process: error: ") and expected in err, err
    assert "Traceback" not in err
    assert not ray.is_initialized() and not (dirs / "index").exists()


def test_tiny_profile_before_make_tiny(dirs, monkeypatch, capsys):
    monkeypatch.setenv("EXVAD_TINY_MODELS", str(dirs / "no-models-here"))
    rc = main(_process(dirs, "--profile", "tiny", "--label-set", "synthetic"))
    _one_line_exit_2(rc, capsys.readouterr().err, "exvad models make-tiny", dirs)


def test_missing_local_model_folder(dirs, tiny_dir, capsys):
    text = resolve_config("profiles", "tiny").read_text().replace("{tiny_models}/clip", str(dirs / "gone" / "clip"))
    assert str(dirs / "gone") in text
    (dirs / "p.yaml").write_text(text)
    rc = main(_process(dirs, "--profile", str(dirs / "p.yaml"), "--label-set", "synthetic"))
    _one_line_exit_2(rc, capsys.readouterr().err, f"clip model directory not found: {dirs / 'gone' / 'clip'}", dirs)


def test_malformed_label_set(dirs, tiny_dir, capsys):
    (dirs / "labels.yaml").write_text("name: broken\nclasses:\n  - name: Normal\n")  # no anomaly class
    rc = main(_process(dirs, "--profile", "tiny", "--label-set", str(dirs / "labels.yaml")))
    _one_line_exit_2(rc, capsys.readouterr().err, "is invalid", dirs)


@pytest.mark.parametrize("content", [b"", b"garbage, not a checkpoint", b"PK\x03\x04 truncated zip"])
def test_detector_that_is_not_a_checkpoint(dirs, tiny_dir, capsys, content):
    (dirs / "det").mkdir()
    (dirs / "det" / "model.pt").write_bytes(content)
    rc = main(_process(dirs, "--profile", "tiny", "--label-set", "synthetic", "--detector", str(dirs / "det")))
    _one_line_exit_2(rc, capsys.readouterr().err, "is not a detector checkpoint", dirs)


def test_preflight_each_resource(tmp_path, tiny_dir, monkeypatch):
    """The library function other commands call: each resource alone, and what passes."""
    import torch

    from exvad_ray.pipeline.validate import is_local_cluster, preflight

    torch.save({"format": "anything"}, tmp_path / "model.pt")
    preflight(profile="tiny", label_set="synthetic", detector=str(tmp_path / "model.pt"))  # all good
    preflight(detector=str(tmp_path))  # a folder holding model.pt
    with pytest.raises(ConfigError, match="--init-from: no checkpoint at"):
        preflight(detector=str(tmp_path / "nope"), detector_option="--init-from")
    with pytest.raises(ConfigError, match="unknown profile"):
        preflight(profile="nosuch")
    with pytest.raises(ConfigError, match="unknown label"):
        preflight(label_set="nosuch")
    # the normality model: the URI holds a readable model (tests/pipeline/test_rescore_normality.py: the others)
    with pytest.raises(ConfigError, match="--normality: no normality model at"):
        preflight(normality=str(tmp_path / "normality-missing"))
    (tmp_path / "normality").mkdir()
    with pytest.raises(ConfigError, match="--normality: no normality model at"):
        preflight(normality=str(tmp_path / "normality"))
    (tmp_path / "normality" / "normality.npz").write_bytes(b"PK\x03\x04 damaged")
    with pytest.raises(ConfigError, match="is not a normality model"):
        preflight(normality=str(tmp_path / "normality"))
    # a remote cluster's workers hold the model files: the driver checks the profile, not them
    monkeypatch.setenv("EXVAD_TINY_MODELS", str(tmp_path / "absent"))
    with pytest.raises(ConfigError, match="make-tiny"):
        preflight(profile="tiny")
    preflight(profile="tiny", model_files=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert is_local_cluster(None) and is_local_cluster("local") and not is_local_cluster("ray://head:10001")


@pytest.mark.parametrize("content", [None, b"not a checkpoint"])
def test_training_warm_start_checkpoint_checked_before_ray(tmp_path, content):
    """`exvad train --init-from`: the checkpoint is checked where the CLI builds the detector config,
    before Ray starts (it was read first inside a Ray Train worker)."""
    import numpy as np
    import ray

    from exvad_ray.train.api import DataSource, TrainRequest, detector_config

    if content is not None:
        (tmp_path / "parent").mkdir()
        (tmp_path / "parent" / "model.pt").write_bytes(content)
    req = TrainRequest(DataSource(), "unused", np.eye(3, 8, dtype=np.float32), ["Normal", "A", "B"],
                       init_from=str(tmp_path / "parent"))
    with pytest.raises(ConfigError, match="--init-from: " + ("no checkpoint at" if content is None else
                                                              ".*is not a detector checkpoint")):
        detector_config(req, 8)
    assert not ray.is_initialized()


def test_rescore_detector_checked_before_ray(tmp_path, capsys):
    """`exvad rescore` with a damaged model.pt beside a model card naming the classes (the driver reads
    only the card): one line, exit 2, before Ray starts (the Ray tasks failed one by one)."""
    import ray

    (tmp_path / "det").mkdir()
    (tmp_path / "det" / "model.pt").write_bytes(b"damaged")
    (tmp_path / "det" / "model_card.json").write_text('{"label_set": {"class_names": ["Normal", "Fire"]}}')
    rc = main(["rescore", "--index", str(tmp_path / "index"), "--detector", str(tmp_path / "det")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "is not a detector checkpoint" in err, err
    assert not ray.is_initialized() and not (tmp_path / "index").exists()
