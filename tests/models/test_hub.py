"""The gated-model token check: `exvad process --profile paper` without a token stops on the driver
with one line and exit 2 before listing the archive or writing anything to the index."""

from __future__ import annotations

import pytest

from exvad_ray.cli import main
from exvad_ray.errors import ConfigError
from exvad_ray.models.hub import check_gated_access, gated_models


@pytest.fixture()
def no_token(monkeypatch, tmp_path):
    for k in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    return tmp_path


def test_paper_without_token_fails_before_any_work(no_token, capsys):
    archive, index = no_token / "archive", no_token / "index"
    archive.mkdir()
    rc = main(["process", "--archive", str(archive), "--index", str(index), "--profile", "paper"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and "meta-llama/Llama-3.1-8B-Instruct" in err[0] and "HF_TOKEN" in err[0]
    assert not index.exists()  # no run manifest, no listing: nothing started


def test_token_from_env_or_token_file_or_offline_passes(no_token, monkeypatch):
    with pytest.raises(ConfigError):
        check_gated_access("paper")
    (no_token / "hf").mkdir()
    (no_token / "hf" / "token").write_text("placeholder-token\n")  # where huggingface_hub reads it
    check_gated_access("paper")
    (no_token / "hf" / "token").unlink()
    monkeypatch.setenv("HF_TOKEN", "placeholder-token")
    check_gated_access("paper")
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # weights pre-staged in HF_HOME: no token needed
    check_gated_access("paper")


def test_only_gated_hub_models_count(no_token):
    assert gated_models("paper") == ["meta-llama/Llama-3.1-8B-Instruct"]
    assert gated_models("paper", explainer=False) == []
    check_gated_access("paper", explainer=False)  # --explainer none: the Llama is never loaded
    assert gated_models("tiny") == []
