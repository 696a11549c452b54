"""Fixtures for the model tests (the tiny models themselves: `tiny_dir` in tests/conftest.py)."""

from __future__ import annotations


import pytest


@pytest.fixture(scope="session")
def tiny_profile(tiny_dir):
    from exvad_ray.models import load_profile

    return load_profile("tiny")


@pytest.fixture(scope="session")
def clip(tiny_profile):
    from exvad_ray.models import ClipModel

    return ClipModel(tiny_profile.clip)
