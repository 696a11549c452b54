"""The `runs` table: one JSON manifest per run (``INDEX/runs/run-<run_id>.json``), rewritten at the
start and end of the run. A manifest records the schema version the run wrote
(``index_schema_version``), which `exvad_ray.index.store.index_version` checks on every read.
`read_runs` gives the manifests as a table with the columns of ``schemas/runs.json``.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pyarrow as pa

from exvad_ray import storage
from exvad_ray.errors import ExvadError
from exvad_ray.index.schemas import SCHEMA_VERSION, conform

RUNS_DIR = "runs"
SETTINGS_FILE = "settings.json"  # the settings the index was built with (pipeline/identity.py writes it)


def manifest_uri(index: str, run_id: str) -> str:
    return storage.join(index, RUNS_DIR, f"run-{run_id}.json")


def read_manifest(index: str, run_id: str) -> dict[str, Any] | None:
    uri = manifest_uri(index, run_id)
    return _load(uri) if storage.exists(uri) else None


def write_manifest(index: str, doc: dict[str, Any]) -> None:
    """Write a run's manifest (``doc`` must hold ``run_id``); stamps the schema version."""
    doc = {**doc, "index_schema_version": SCHEMA_VERSION}
    storage.write_bytes(manifest_uri(index, doc["run_id"]), json.dumps(doc, indent=1).encode())


def read_manifests(index: str) -> list[dict[str, Any]]:
    """Every run's manifest, oldest first (by first start)."""
    fs, path = storage.filesystem(storage.join(index, RUNS_DIR))
    try:
        names = sorted(f for f in fs.ls(path, detail=False) if f.rsplit("/", 1)[-1].startswith("run-")
                       and f.endswith(".json"))
    except FileNotFoundError:
        return []
    prefix = "s3://" if storage.is_remote(index) else ""
    docs = [_load(prefix + n) for n in names]
    return sorted(docs, key=lambda d: str(d.get("first_started_at") or d.get("started_at") or ""))


def _load(uri: str) -> dict[str, Any]:
    try:
        doc = json.loads(storage.read_bytes(uri))
    except ValueError as exc:
        raise ExvadError(f"run manifest {uri} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or "run_id" not in doc:
        raise ExvadError(f"run manifest {uri} lacks a run_id")
    return doc


def _ts(value: Any) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def read_runs(index: str) -> pa.Table:
    """The manifests as rows of ``schemas/runs.json``."""
    docs = read_manifests(index)
    return conform("runs", {
        "run_id": [d["run_id"] for d in docs], "archive": [d.get("archive") for d in docs],
        "started_at": [_ts(d.get("started_at")) for d in docs],
        "finished_at": [_ts(d.get("finished_at")) for d in docs],
        "processing_date": [d.get("processing_date") for d in docs],
        "args_json": [json.dumps(d.get("args")) for d in docs],
        "summary_json": [json.dumps(d.get("summary")) for d in docs],
        "versions_json": [json.dumps(d.get("versions")) for d in docs],
        "index_schema_version": [int(d.get("index_schema_version") or 1) for d in docs],
    })
