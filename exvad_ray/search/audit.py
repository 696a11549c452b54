"""The audit log: every search, export and feedback, appended as Parquet beside the labels table.

One small file per event (`audit/part-<time>-<uuid>.parquet`): append-only, no read-modify-write,
so concurrent writers (the page, the CLI, notebooks) never lose each other's entries, and DuckDB,
pyarrow or Spark read the folder as one table.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from typing import Any

import pyarrow as pa

from exvad_ray import storage

AUDIT_SCHEMA = pa.schema([
    pa.field("at", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("action", pa.string(), nullable=False),  # search | export | feedback
    pa.field("who", pa.string()),
    pa.field("via", pa.string()),  # cli | web | api
    pa.field("index", pa.string()),
    pa.field("query", pa.string()),  # JSON: the filters, the segment id, the verdict ...
    pa.field("result_count", pa.int64()),
])


def default_labels_uri(index: str) -> str:
    """Where feedback goes unless told: a `labels` folder at the index root (not an index table, so
    the index tables themselves are never rewritten)."""
    return storage.join(storage.normalize(index).rstrip("/"), "labels")


def audit_uri(labels_uri: str) -> str:
    """The audit folder beside the labels folder."""
    base = storage.normalize(labels_uri).rstrip("/")
    return (base.rsplit("/", 1)[0] if "/" in base else ".") + "/audit"


def current_user() -> str:
    return os.environ.get("EXVAD_USER") or os.environ.get("USER") or os.environ.get("LOGNAME") or "unknown"


def append_audit(uri: str, action: str, query: dict[str, Any], result_count: int | None,
                 who: str | None = None, via: str = "api", index: str | None = None) -> str:
    """Append one event; returns the file written."""
    from exvad_ray.index.store import write_table_file

    now = dt.datetime.now(dt.timezone.utc)
    table = pa.Table.from_pylist([{
        "at": now, "action": action, "who": who or current_user(), "via": via, "index": index,
        "query": json.dumps(query, sort_keys=True, default=str), "result_count": result_count,
    }], schema=AUDIT_SCHEMA)
    name = f"part-{now.strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:8]}.parquet"
    target = storage.join(uri, name)
    write_table_file(target, table)
    return target


def read_audit(uri: str) -> pa.Table:
    """The whole log, oldest first (empty table if none)."""
    import pyarrow.parquet as pq

    fs, path = storage.filesystem(uri)
    if not fs.exists(path):
        return AUDIT_SCHEMA.empty_table()
    files = sorted(f for f in fs.find(path) if f.endswith(".parquet"))
    tables = []
    for f in files:
        with fs.open(f, "rb") as fh:
            tables.append(pq.read_table(fh).cast(AUDIT_SCHEMA))
    return pa.concat_tables(tables).sort_by("at") if tables else AUDIT_SCHEMA.empty_table()
