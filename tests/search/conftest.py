"""Fixtures for search: one index built by the real archive job (tiny profile, local Ray) from the
archive in tests/search/archive.py, shared by the whole package's tests."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def built_index(tiny_dir, tmp_path_factory) -> dict:
    """{"index", "archive", "kinds"}: a local index of 5 videos (recording time known in every way)."""
    import ray

    from archive import build_archive, build_index

    base = tmp_path_factory.mktemp("search")
    kinds = build_archive(base / "archive", base / "work")
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, object_store_memory=300 * 1024**2, include_dashboard=False)
    try:
        summary = build_index(base / "archive", base / "index")
    finally:
        if started:
            ray.shutdown()
    assert summary["videos_processed"] == len(kinds) and summary["videos_failed"] == 0
    return {"index": str(base / "index"), "archive": str(base / "archive"), "kinds": kinds}


@pytest.fixture()
def index_copy(built_index, tmp_path) -> str:
    """A private copy of the index (for tests that write labels/audit beside it or rewrite rows)."""
    dest = tmp_path / "index"
    shutil.copytree(built_index["index"], dest)
    return str(dest)


@pytest.fixture()
def evidence_index(index_copy) -> dict:
    """A private copy of the index whose current scoring is a hand-written normality scoring: one
    segment with evidence, one video's file without the evidence columns (tests/search/evidence.py)."""
    from evidence import write_evidence_scoring

    return {"index": index_copy, **write_evidence_scoring(index_copy)}
