"""`exvad rescore`'s driver without Ray: the detector's class names and model card come from
`model_card.json` when it names the classes (the weights are not read, so the driver needs no torch),
else from the checkpoint; a card that is not JSON is a one-line error."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from exvad_ray.errors import ExvadError
from exvad_ray.pipeline.rescore import detector_metadata


def test_class_names_from_the_model_card_without_reading_the_weights(tmp_path):
    det = tmp_path / "model.pt"
    det.write_bytes(b"not a checkpoint: loading it would fail")
    card = {"label_set": {"name": "synthetic", "class_names": ["Normal", "Fire"]}, "parent": None}
    (tmp_path / "model_card.json").write_text(json.dumps(card))
    text, names = detector_metadata(str(det))
    assert names == ["Normal", "Fire"] and json.loads(text) == card


def test_no_card_or_no_class_names_reads_the_checkpoint(tmp_path):
    det = tmp_path / "model.pt"
    det.write_bytes(b"not a checkpoint")
    with pytest.raises(ExvadError, match="cannot read detector checkpoint"):
        detector_metadata(str(det))
    (tmp_path / "model_card.json").write_text(json.dumps({"label_set": {"name": "x"}}))
    with pytest.raises(ExvadError, match="cannot read detector checkpoint"):
        detector_metadata(str(det))
    (tmp_path / "model_card.json").write_text("{not json")
    with pytest.raises(ExvadError, match="model_card.json is not JSON"):
        detector_metadata(str(det))


def test_the_command_line_and_the_rescore_driver_import_no_torch():
    """Every `exvad` command imports the rescore module to register it; torch costs seconds."""
    code = ("import sys; from exvad_ray.cli import build_parser; build_parser(); "
            "from exvad_ray.pipeline import rescore; from exvad_ray.index import scorings; from exvad_ray import checkpoints; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
