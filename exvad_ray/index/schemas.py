"""The index tables' Arrow schemas, read from `schemas/*.json` (the contract), and enforcement.

`SCHEMA_VERSION` is the version of that contract. It is recorded in every run manifest and in every
Parquet file the index writes; readers of an older index rename its columns (`RENAMED`), and an index
written by a newer version is refused with a clear error (see `exvad_ray.index.store`).
"""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from typing import Any

import pyarrow as pa

from exvad_ray.errors import ExvadError

from exvad_ray.resources import data_dir

TABLES = ("videos", "snippets", "segments", "captions", "errors", "runs")
# Tables of per-video Parquet files (runs are JSON manifests, one per run).
VIDEO_TABLES = ("videos", "snippets", "segments", "captions", "errors")

SCHEMA_VERSION = 2
# Columns renamed since each version: {version: {table: {new name: name in that version}}}.
# v1 -> v2: one name for the snippet vector whatever the visual encoder (the lite profile's is not CLIP).
RENAMED: dict[int, dict[str, dict[str, str]]] = {
    1: {"snippets": {"visual_embedding": "clip_embedding"},
        "segments": {"visual_embedding": "embedding"},
        "videos": {"visual_model": "clip_model"}},
}
# Columns added since each version: {version: {table: [names]}}; that version's files lack them and
# readers get them as nulls.
ADDED: dict[int, dict[str, list[str]]] = {
    1: {"snippets": ["thumbnail_jpeg"],
        "videos": ["window_explanation_embeddings", "recorded_at", "recorded_at_source", "timing"],
        "segments": ["start_at", "end_at", "explanation_embedding"], "errors": ["detail"]},
}


def added_columns(table: str, version: int) -> set[str]:
    """Columns of today's `table` that files of schema `version` do not have."""
    return {c for v in range(version, SCHEMA_VERSION) for c in ADDED.get(v, {}).get(table, [])}


def schemas_dir() -> str:
    """The `schemas/` folder: $EXVAD_SCHEMAS_DIR, the installed package's copy, or the checkout's."""
    return str(data_dir("schemas"))


def _arrow_type(spec: str) -> pa.DataType:
    spec = spec.strip()
    m = re.fullmatch(r"list<(.+)>", spec)
    if m:
        return pa.list_(_arrow_type(m.group(1)))
    m = re.fullmatch(r"timestamp\[(\w+)(?:,\s*tz=([\w/+-]+))?\]", spec)
    if m:
        return pa.timestamp(m.group(1), tz=m.group(2))
    simple = {"string": pa.string(), "int32": pa.int32(), "int64": pa.int64(), "float32": pa.float32(),
              "float64": pa.float64(), "bool": pa.bool_(), "binary": pa.binary()}
    if spec not in simple:
        raise ExvadError(f"unknown type {spec!r} in schemas/")
    return simple[spec]


@lru_cache(maxsize=None)
def table_spec(table: str) -> dict[str, Any]:
    path = os.path.join(schemas_dir(), f"{table}.json")
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError as exc:
        raise ExvadError(f"no schema for table {table!r} at {path}") from exc


@lru_cache(maxsize=None)
def arrow_schema(table: str, version: int = SCHEMA_VERSION) -> pa.Schema:
    """The schema of the columns stored in the files (partition columns live in the path), as
    written by schema `version` (older versions: the current schema under the old column names)."""
    spec = table_spec(table)
    old, added = renamed_columns(table, version), added_columns(table, version)
    return pa.schema([
        pa.field(old.get(f["name"], f["name"]), _arrow_type(f["type"]), nullable=f.get("nullable", True),
                 metadata={"doc": f["doc"]} if f.get("doc") else None)
        for f in spec["fields"] if f["name"] not in added
    ])


def renamed_columns(table: str, version: int) -> dict[str, str]:
    """{current name: name in `version`} for the columns renamed since `version`."""
    names = {f["name"]: f["name"] for f in table_spec(table)["fields"]}
    for v in range(SCHEMA_VERSION - 1, version - 1, -1):  # newest change first
        step = RENAMED.get(v, {}).get(table, {})
        names = {cur: step.get(name, name) for cur, name in names.items()}
    return {cur: name for cur, name in names.items() if cur != name}


def partition_cols(table: str) -> list[str]:
    """The table's partition values: what writers give for each row and readers get back as
    columns (after the stored ones), on both layouts. The per-video layout makes each a folder."""
    return list(table_spec(table).get("partition_cols", []))


def stats_cols(table: str) -> list[str] | None:
    """The columns whose min/max a Delta table of `table` records per file (``stats_cols`` in
    schemas/; None: every scalar column). Why not all: the statistics are in every add action of
    the log and every checkpoint, and a reader loads them all to get a snapshot - with all of the
    `videos` table's 27 scalar columns (uri, explanation...) loading the snapshot of 7,125 files
    took 46 MB. Kept: what a reader may prune on (ids, class, scores, times). `table` may be a path
    (``scorings/<id>/segments``): its last part names the table."""
    try:
        spec = table_spec(table.rsplit("/", 1)[-1])
    except ExvadError:  # a rescoring's own table (snippet_scores...): every scalar column
        return None
    cols = spec.get("stats_cols")
    return list(cols) if cols is not None else None


def delta_partition_cols(table: str) -> list[str]:
    """The partition columns a NEW Delta table of `table` is created with (``delta_partition_cols``
    in schemas/, default `partition_cols`); the others of `partition_cols` are ordinary string
    columns in its data files. Why: `segments` by class, date and camera held about one row per
    partition (5% of videos flagged), so compaction had nothing to merge; by date and camera a
    camera-day compacts to one file. An existing Delta table keeps the partitioning it was created
    with (`delta.table_partition_cols` reads it from the table)."""
    spec = table_spec(table)
    return list(spec.get("delta_partition_cols", spec.get("partition_cols", [])))


def conform(table: str, columns: dict[str, Any] | pa.Table) -> pa.Table:
    """Build a table with exactly the declared columns and types; raise on missing/extra columns."""
    schema = arrow_schema(table)
    names = set(columns.column_names if isinstance(columns, pa.Table) else columns)
    missing = [n for n in schema.names if n not in names]
    extra = sorted(names - set(schema.names))
    if missing or extra:
        raise ExvadError(f"{table}: columns do not match schemas/{table}.json (missing {missing}, extra {extra})")
    if isinstance(columns, pa.Table):
        return columns.select(schema.names).cast(schema)
    arrays = [pa.array(columns[f.name], type=f.type) for f in schema]
    out = pa.Table.from_arrays(arrays, schema=schema)
    for f in schema:
        if not f.nullable and out.column(f.name).null_count:
            raise ExvadError(f"{table}.{f.name} must not be null")
    return out
