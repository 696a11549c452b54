"""Fixtures for the model tests: the tiny models, built once per session into a temporary directory."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    from exvad_ray.models.tiny import ensure_tiny_models

    path = ensure_tiny_models(tmp_path_factory.mktemp("models") / "tiny", seed=0)
    old = os.environ.get("EXVAD_TINY_MODELS")
    os.environ["EXVAD_TINY_MODELS"] = str(path)
    yield path
    if old is None:
        os.environ.pop("EXVAD_TINY_MODELS", None)
    else:
        os.environ["EXVAD_TINY_MODELS"] = old


@pytest.fixture(scope="session")
def tiny_profile(tiny_dir):
    from exvad_ray.models import load_profile

    return load_profile("tiny")


@pytest.fixture(scope="session")
def clip(tiny_profile):
    from exvad_ray.models import ClipModel

    return ClipModel(tiny_profile.clip)
