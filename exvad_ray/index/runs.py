"""The `runs` table: one manifest per run, rewritten at the start and end of the run. A manifest
records the schema version the run wrote (``index_schema_version``), which
`exvad_ray.index.store.index_version` checks on every read. `read_runs` gives the manifests as a
table with the columns of ``schemas/runs.json``.

Where the manifests live depends on the index:

- an index of per-video files: one JSON file per run, ``INDEX/runs/run-<run_id>.json``, rewritten
  in place (as always);
- a Delta index (its ``videos`` table has a ``_delta_log``): the Delta table ``INDEX/run_log``, one
  row appended per write, with the columns of schemas/runs.json plus ``manifest_json`` (the whole
  manifest, so that `read_manifest` returns exactly the dict written) and ``revision`` (1, 2, ...
  per run: the newest revision of a run wins, whatever the writers' clocks say). Appends never
  conflict, so a run on another machine writing its manifest meanwhile does not fail, and a reader
  takes the snapshot from the log instead of listing ``runs/``. Every `COMPACT_AT` files the
  writer merges the log's files into one (`_compact`): it is read on every read of the index.

Why ``run_log`` and not ``runs``: a Delta index made by a version before this one (its job, or its
`exvad index upgrade`, which copied them; today's writes them to the run log: `write_manifests`)
holds JSON manifests in ``INDEX/runs/``, which are still read (and a run's newer Delta row
wins over its JSON file). A Delta log in that folder would make those files strangers to it, and a
full vacuum of the table (ours, or any other engine's) deletes every file its log does not know:
the old runs' manifests. A folder of its own cannot collide.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from exvad_ray import storage
from exvad_ray.errors import ExvadError
from exvad_ray.index import delta
from exvad_ray.index.schemas import SCHEMA_VERSION, arrow_schema, conform

log = logging.getLogger(__name__)

RUNS_DIR = "runs"
RUN_LOG = "run_log"  # the Delta table of the manifests on a Delta index (module doc)
COMPACT_AT = 16  # run log data files that trigger merging them into one (`_compact`)
SETTINGS_FILE = "settings.json"  # the settings the index was built with (pipeline/identity.py writes it)
_EXTRA = [pa.field("manifest_json", pa.string(), nullable=False), pa.field("revision", pa.int64(), nullable=False),
          pa.field("written_at", pa.timestamp("us", tz="UTC"), nullable=False)]


def is_manifest_name(name: str) -> bool:
    """Whether a file name in ``INDEX/runs/`` is a run manifest (``run-<run_id>.json``)."""
    return name.startswith("run-") and name.endswith(".json")


def manifest_uri(index: str, run_id: str) -> str:
    """The JSON manifest of a run on an index of per-video files (a Delta index keeps them in
    ``INDEX/run_log``; older ones may still be here)."""
    return storage.join(index, RUNS_DIR, f"run-{run_id}.json")


def run_log_uri(index: str) -> str:
    return storage.join(index, RUN_LOG)


def read_manifest(index: str, run_id: str) -> dict[str, Any] | None:
    """The run's manifest: its newest Delta row, else its JSON file, else None."""
    rows = _delta_docs(index, run_id)
    if rows:
        return rows[run_id]
    uri = manifest_uri(index, run_id)
    return _load(uri) if storage.exists(uri) else None


def write_manifest(index: str, doc: dict[str, Any]) -> None:
    """Write a run's manifest (``doc`` must hold ``run_id``); stamps the schema version. A Delta
    index gets a row in ``INDEX/run_log``, any other a JSON file (module doc)."""
    doc = _stamped(doc)
    if delta.is_delta(index, "videos"):
        _append_rows(index, [doc], _table(index))
    else:
        storage.write_bytes(manifest_uri(index, doc["run_id"]), json.dumps(doc, indent=1).encode())


def write_manifests(index: str, docs: list[dict[str, Any]]) -> int:
    """Write many runs' manifests at once, stamped as `write_manifest` stamps them; returns how
    many were written. On a Delta index they are ONE commit to the run log (an archive's thousands
    of runs, `exvad index upgrade`: one commit and one file each would be thousands of both), and a
    run whose newest manifest there already is the same doc is left out, so that writing the same
    docs again appends nothing. Any other index gets a JSON file per run."""
    docs = [_stamped(d) for d in docs]
    if not delta.is_delta(index, "videos"):
        for doc in docs:
            storage.write_bytes(manifest_uri(index, doc["run_id"]), json.dumps(doc, indent=1).encode())
        return len(docs)
    t = _table(index)
    have = _docs(index, _rows(index, table=t)) if t is not None else {}
    new = [d for d in docs if have.get(str(d["run_id"])) != d]
    if new:
        _append_rows(index, new, t)
    return len(new)


def _stamped(doc: dict[str, Any]) -> dict[str, Any]:
    if "run_id" not in doc:
        raise ExvadError("a run manifest needs a run_id")
    return {**doc, "index_schema_version": SCHEMA_VERSION}


def read_manifests(index: str) -> list[dict[str, Any]]:
    """Every run's manifest, oldest first (by first start): the Delta rows (newest per run) and
    the JSON files of runs that have no Delta row."""
    docs = {str(d["run_id"]): d for d in _json_docs(index)}
    docs.update(_delta_docs(index))
    return sorted(docs.values(), key=lambda d: str(d.get("first_started_at") or d.get("started_at") or ""))


def _json_docs(index: str) -> list[dict[str, Any]]:
    fs, path = storage.filesystem(storage.join(index, RUNS_DIR))
    try:
        names = sorted(f for f in fs.ls(path, detail=False) if is_manifest_name(f.rsplit("/", 1)[-1]))
    except FileNotFoundError:
        return []
    prefix = "s3://" if storage.is_remote(index) else ""
    return [_load(prefix + n) for n in names]


def _load(uri: str) -> dict[str, Any]:
    try:
        doc = json.loads(storage.read_bytes(uri))
    except ValueError as exc:
        raise ExvadError(f"run manifest {uri} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or "run_id" not in doc:
        raise ExvadError(f"run manifest {uri} lacks a run_id")
    return doc


# ------------------------------------------------------------------------------------- Delta


def _schema() -> pa.Schema:
    """The run log's columns: schemas/runs.json's (only run_id required: a manifest written
    without an archive is stored as given, as its JSON file would be) and the extra three."""
    return pa.schema([f.remove_metadata().with_nullable(f.name != "run_id") for f in arrow_schema("runs")] + _EXTRA)


def _table(index: str) -> Any:
    """The `deltalake.DeltaTable` of ``INDEX/run_log``, or None when there is none."""
    from deltalake import DeltaTable

    uri = run_log_uri(index)
    if not storage.exists(storage.join(uri, "_delta_log")):
        return None
    try:
        return DeltaTable(uri, storage_options=delta.storage_options(uri))
    except Exception as exc:  # noqa: BLE001
        raise _error(uri, exc) from exc


def _error(uri: str, exc: Exception) -> ExvadError:
    if storage.is_unreachable(exc):
        return storage.unavailable(uri, exc)
    return ExvadError(f"run log {uri}: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:300]}")


def _rows(index: str, run_ids: list[str] | None = None, table: Any = None) -> pa.Table | None:
    """(run_id, revision, written_at, manifest_json) of the run log, those runs' when `run_ids`."""
    t = table if table is not None else _table(index)
    if t is None:
        return None
    try:
        rows = t.to_pyarrow_table(columns=["run_id", "revision", "written_at", "manifest_json"],
                                  filters=[("run_id", "in", run_ids)] if run_ids is not None else None)
    except Exception as exc:  # noqa: BLE001
        raise _error(run_log_uri(index), exc) from exc
    return rows


def _delta_docs(index: str, run_id: str | None = None) -> dict[str, dict[str, Any]]:
    """{run_id: manifest} from the run log's newest revision of each run."""
    return _docs(index, _rows(index, [run_id] if run_id is not None else None))


def _docs(index: str, rows: pa.Table | None) -> dict[str, dict[str, Any]]:
    """{run_id: manifest} of the newest revision of each run among `rows` (of `_rows`)."""
    if rows is None or rows.num_rows == 0:
        return {}
    order = pc.sort_indices(rows, [("run_id", "ascending"), ("revision", "ascending"), ("written_at", "ascending")])
    newest: dict[str, str] = {}
    for rid, text in zip(rows.column("run_id").take(order).to_pylist(),
                         rows.column("manifest_json").take(order).to_pylist()):
        newest[rid] = text
    out = {}
    for rid, text in newest.items():
        try:
            out[rid] = json.loads(text)
        except ValueError as exc:
            raise ExvadError(f"run log {run_log_uri(index)}: the manifest of run {rid} is not valid JSON: {exc}") from exc
    return out


def _append_rows(index: str, docs: list[dict[str, Any]], t: Any) -> None:
    """One row per doc appended to ``INDEX/run_log`` (`t`: its table, None: created by this
    write), all in one commit, each the next revision of its run; every `COMPACT_AT` data files,
    the log's files are merged into one (`_compact`)."""
    from deltalake import write_deltalake

    uri = run_log_uri(index)
    ids = sorted({str(d["run_id"]) for d in docs})
    prev = _rows(index, ids, t) if t is not None else None
    revision: dict[str, int] = {}
    if prev is not None and prev.num_rows:
        top = prev.group_by("run_id").aggregate([("revision", "max")])
        revision = dict(zip(top.column("run_id").to_pylist(), top.column("revision_max").to_pylist()))
    revisions = []
    for d in docs:
        revision[str(d["run_id"])] = revision.get(str(d["run_id"]), 0) + 1
        revisions.append(revision[str(d["run_id"])])
    now = dt.datetime.now(dt.timezone.utc)
    row = {**_columns(docs), "manifest_json": [json.dumps(d, indent=1) for d in docs],
           "revision": revisions, "written_at": [now] * len(docs)}
    table = pa.table(row, schema=_schema())
    meta = _commit_properties(**({"exvad.run_id": str(docs[0]["run_id"])} if len(docs) == 1
                                 else {"exvad.runs": str(len(docs))}))
    opts = delta.storage_options(uri)
    try:
        try:
            write_deltalake(uri, table, mode="append", name=RUN_LOG, storage_options=opts, commit_properties=meta)
        except Exception:  # noqa: BLE001 - the first write of two runs at once: one created the table, retry
            if t is not None:
                raise
            write_deltalake(uri, table, mode="append", storage_options=opts, commit_properties=meta)
    except Exception as exc:  # noqa: BLE001
        raise _error(uri, exc) from exc
    if t is not None and len(t.file_uris()) + 1 >= COMPACT_AT:
        try:
            _compact(uri)
        except Exception as exc:  # noqa: BLE001 - the rows are written; merging waits for the next write
            log.warning("run log %s not compacted: %s", uri, _error(uri, exc))


def _compact(uri: str) -> None:
    """Merge the run log's files into one, and delete the files such merges removed more than the
    table's deleted-file retention ago (delta-rs's lite vacuum: 7 days unless set; never a file the
    log does not know, so it cannot touch anything else). Why: each write adds a file of one row,
    and `read_manifests` runs on every read of the index (`store.index_version`); measured on local
    disk, 100 runs (200 rows): 430 ms to read 200 files, 12 ms to read one."""
    from deltalake import DeltaTable

    t = DeltaTable(uri, storage_options=delta.storage_options(uri))
    t.optimize.compact(commit_properties=_commit_properties(**{"exvad.operation": "optimize"}))
    t.vacuum(dry_run=False, commit_properties=_commit_properties(**{"exvad.operation": "vacuum"}))


def _commit_properties(**extra: str) -> Any:
    from deltalake import CommitProperties

    from exvad_ray import __version__

    return CommitProperties(custom_metadata={delta.SCHEMA_VERSION_KEY: str(SCHEMA_VERSION),
                                             delta.PACKAGE_VERSION_KEY: __version__, **extra})


# ------------------------------------------------------------------------------------- as a table


def _ts(value: Any) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def _columns(docs: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Manifests as the columns of ``schemas/runs.json``."""
    return {
        "run_id": [d["run_id"] for d in docs], "archive": [d.get("archive") for d in docs],
        "started_at": [_ts(d.get("started_at")) for d in docs],
        "finished_at": [_ts(d.get("finished_at")) for d in docs],
        "processing_date": [d.get("processing_date") for d in docs],
        "args_json": [json.dumps(d.get("args")) for d in docs],
        "summary_json": [json.dumps(d.get("summary")) for d in docs],
        "versions_json": [json.dumps(d.get("versions")) for d in docs],
        "index_schema_version": [int(d.get("index_schema_version") or 1) for d in docs],
    }


def read_runs(index: str) -> pa.Table:
    """The manifests (`read_manifests`) as rows of ``schemas/runs.json``."""
    return conform("runs", _columns(read_manifests(index)))
