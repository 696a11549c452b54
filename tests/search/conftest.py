"""Fixtures for search: indexes built by the real archive job (tiny profile, local Ray) from the
archive in tests/search/archive.py, shared by the whole package's tests: in Delta tables (the
default) and, for the tests of the per-video layout's files, in that layout (same ids and rows)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def search_archive(tmp_path_factory) -> dict:
    """{"archive", "kinds", "base"}: the archive of tests/search/archive.py, built once for both indexes."""
    from archive import build_archive

    base = tmp_path_factory.mktemp("search")
    return {"archive": base / "archive", "kinds": build_archive(base / "archive", base / "work"), "base": base}


def _build(search_archive: dict, index_format: str) -> dict:
    import ray

    from archive import build_index

    index = search_archive["base"] / f"index-{index_format}"
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, object_store_memory=300 * 1024**2, include_dashboard=False)
    try:
        summary = build_index(search_archive["archive"], index, index_format=index_format)
    finally:
        if started:
            ray.shutdown()
    kinds = search_archive["kinds"]
    assert summary["videos_processed"] == len(kinds) and summary["videos_failed"] == 0
    return {"index": str(index), "archive": str(search_archive["archive"]), "kinds": kinds}


@pytest.fixture(scope="session")
def built_index(tiny_dir, search_archive) -> dict:
    """{"index", "archive", "kinds"}: a local index of 5 videos (recording time known in every way),
    in Delta tables (the default)."""
    return _build(search_archive, "delta")


@pytest.fixture(scope="session")
def built_files_index(tiny_dir, search_archive) -> dict:
    """The same archive's index in the per-video layout (`--index-format files`; same video ids and
    rows): for the tests of what that layout's files allow (a file per video named by its id,
    tombstones, files moved or damaged)."""
    return _build(search_archive, "files")


@pytest.fixture()
def index_copy(built_index, tmp_path) -> str:
    """A private copy of the index (for tests that write labels/audit beside it or rewrite rows)."""
    dest = tmp_path / "index"
    shutil.copytree(built_index["index"], dest)
    return str(dest)


@pytest.fixture()
def files_index_copy(built_files_index, tmp_path) -> str:
    """A private copy of the per-video layout's index."""
    dest = tmp_path / "index"
    shutil.copytree(built_files_index["index"], dest)
    return str(dest)


@pytest.fixture()
def evidence_index(index_copy) -> dict:
    """A private copy of the index whose current scoring is a hand-written normality scoring: one
    segment with evidence, one video's file without the evidence columns (tests/search/evidence.py)."""
    from evidence import write_evidence_scoring

    return {"index": index_copy, **write_evidence_scoring(index_copy)}
