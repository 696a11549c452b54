"""The index tables as Delta Lake tables (issue 23; the rerun's planning reads the done set here).

Why Delta (delta-rs, `deltalake`): the log beside the data replaces our listings, tombstones and
file-name done sets: a snapshot is one log read, a replaced video is a delete in the log, every
engine that reads Delta sees only current rows, and compaction/vacuum are the format's own.
Measured facts behind each choice: docs/INDEX.md and bench/delta_facts.py.

The pieces here:
- `open_table` opens (or creates) ``INDEX/<table>`` as a Delta table with the table's schema from
  ``schemas/`` and its partition values (class, date, camera) as string columns, partitioned by
  `schemas.delta_partition_cols` (`segments`: date and camera; class is a column of its files); a
  table at a path under the index (a rescoring's ``scorings/<scoring id>/<table>``) is created with
  the schema its owner gives (`index.scorings`) and every later write follows the table's own schema.
- `table_partition_cols` is the partitioning an existing table was created with (an older Delta
  `segments` is partitioned by class, date and camera): writes follow it, whatever schemas/ says
  today, and a partition value that is not a partition column of the table goes into the files.
- `write_files` is the worker side: Parquet files for a block of rows written under the table's
  folder, returned as plain dicts (they travel through Ray) with the statistics that let readers
  prune files by video id.
- `commit` is the driver side: those files added in one commit carrying the application
  transaction (app id = run id, version = batch number). A batch the log already holds is skipped,
  so a driver killed after committing and rerun never adds a batch twice. delta-rs does not check
  this by itself (it accepts the same app version twice: docs/INDEX.md (b)), so one writer at a
  time (the index lease) is assumed.
- `delete_by_predicate` removes every row of the given videos with delta-rs's delete, which reads
  every file; `deletes.delete_videos` (what callers use) rewrites only the files that hold them
  (`rewrite_without`, `commit_rewrites`) and falls back to it.
- `snapshot_files` is the current snapshot's file list, for DuckDB and the search page.
- `video_ids` is the snapshot's `video_id` column alone: the done set of a rerun's planning.

Commits record the schema version and the writer's package version in their commit metadata.
S3 options come from the same AWS variables as the rest of the package (`storage.S3Settings`);
delta-rs commits with a conditional PUT (If-None-Match), which AWS S3 and SeaweedFS honour.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from exvad_ray import storage
from exvad_ray.errors import ExvadError, StorageError
from exvad_ray.index.schemas import SCHEMA_VERSION, arrow_schema, conform, delta_partition_cols, partition_cols, stats_cols

SCHEMA_VERSION_KEY = "exvad.schema_version"
PACKAGE_VERSION_KEY = "exvad.version"
_ID_RE = re.compile(r"[A-Za-z0-9._:-]+")
# column types whose min/max go into a file's statistics (what pruning can use)
_STATS_TYPES = (pa.types.is_string, pa.types.is_integer, pa.types.is_floating, pa.types.is_timestamp)


def table_uri(index: str, table: str) -> str:
    return storage.join(index, table)


def storage_options(uri: str) -> dict[str, str] | None:
    """delta-rs options for a location: for S3, endpoint, credentials and region from the standard
    AWS variables (plain http allowed when the endpoint is http://); None for local paths."""
    if not storage.is_remote(uri):
        return None
    s = storage.S3Settings.from_env()
    opts = {"AWS_REGION": s.region or "us-east-1"}
    if s.endpoint_url:
        opts["AWS_ENDPOINT_URL"] = s.endpoint_url
        if s.endpoint_url.startswith("http://"):
            opts["AWS_ALLOW_HTTP"] = "true"
    if s.anonymous:
        opts["AWS_SKIP_SIGNATURE"] = "true"
    elif s.access_key:
        opts.update(AWS_ACCESS_KEY_ID=s.access_key, AWS_SECRET_ACCESS_KEY=s.secret_key or "")
        if s.session_token:
            opts["AWS_SESSION_TOKEN"] = s.session_token
    return opts


def delta_schema(table: str) -> pa.Schema:
    """The table's columns (schemas/<table>.json) plus its partition values, as strings (the same
    columns in the same order whichever of them the table is partitioned by)."""
    return pa.schema(list(arrow_schema(table)) + [pa.field(c, pa.string(), nullable=False)
                                                  for c in partition_cols(table)])


def _layout(t: Any, table: str) -> tuple[Any, list[str]]:
    """(schema, partition columns) that a commit to the open table `t` declares: an index table's
    columns from schemas/, a table at a path under the index (a rescoring's
    ``scorings/<id>/<table>``) its own, fixed by whoever created it (`open_table`'s `schema`); the
    partition columns always the table's own (a commit cannot change them)."""
    part = partition_columns(t)
    if "/" not in table:
        return delta_schema(table), part
    return t.schema(), part


_PARTITIONING: dict[tuple[str, str], list[str]] = {}


def table_partition_cols(index: str, table: str) -> list[str]:
    """The partition columns of the existing Delta table ``INDEX/<table>``, from its metadata: an
    older `segments` is partitioned by class, date and camera, one created now by date and camera
    (`schemas.delta_partition_cols`). Cached per table (a table's partitioning never changes
    once created; a table removed and created again at the same path in this process would need
    `_PARTITIONING.clear()`). A table that does not exist is an ExvadError."""
    key = (storage.normalize(index).rstrip("/"), table)
    if key not in _PARTITIONING:
        _PARTITIONING[key] = partition_columns(open_table(index, table, create=False))
    return list(_PARTITIONING[key])


def partition_columns(t: Any) -> list[str]:
    """The partition columns of an open Delta table, from its metadata (what `table_partition_cols`
    caches; a writer holding the table reads them here, at no cost)."""
    return list(t.metadata().partition_columns)


def _metadata(**extra: str) -> dict[str, str]:
    from exvad_ray import __version__

    return {SCHEMA_VERSION_KEY: str(SCHEMA_VERSION), PACKAGE_VERSION_KEY: __version__, **extra}


def _uri_arg(uri: str) -> str:
    return storage.normalize(uri)


def open_table(index: str, table: str, create: bool = True, schema: pa.Schema | None = None,
               partition_by: Sequence[str] = ()) -> Any:
    """The Delta table ``INDEX/<table>`` (a `deltalake.DeltaTable`), created empty when absent and
    `create`. A folder that holds files but no Delta log (an index of today's layout) is refused:
    vacuum would delete every file the log does not know. `table` may be a path under the index
    (``scorings/<id>/segments``): such a table is created with `schema` (its columns and the
    `partition_by` columns, as strings) instead of schemas/'s, and keeps it."""
    from deltalake import CommitProperties, DeltaTable

    uri = table_uri(index, table)
    opts = storage_options(uri)
    try:
        if DeltaTable.is_deltatable(_uri_arg(uri), storage_options=opts):
            return DeltaTable(_uri_arg(uri), storage_options=opts)
        if not create:
            raise ExvadError(f"no Delta table {table!r} in {storage.normalize(index)}")
        if _has_files(uri):
            raise ExvadError(f"{uri} holds files but no Delta log (an index of the per-video layout): "
                             "write the Delta index to a new location")
        try:
            if schema is None:
                schema, partition_by = delta_schema(table), delta_partition_cols(table)
            return DeltaTable.create(_uri_arg(uri), schema, partition_by=list(partition_by) or None,
                                     storage_options=opts, name=table, configuration=_stats_config(table, schema, partition_by),
                                     commit_properties=CommitProperties(custom_metadata=_metadata()))
        except Exception:  # noqa: BLE001 - another process created it first (the first commit wins)
            if DeltaTable.is_deltatable(_uri_arg(uri), storage_options=opts):
                return DeltaTable(_uri_arg(uri), storage_options=opts)
            raise
    except ExvadError:
        raise
    except Exception as exc:  # noqa: BLE001 - delta-rs errors: storage trouble, in one line
        raise _storage_error(uri, exc) from exc


def _stats_config(table: str, schema: Any, partition_by: Sequence[str]) -> dict[str, str] | None:
    """The table property that makes delta-rs's own writers (optimize, z-order) record the same
    statistics as `write_files` (`schemas.stats_cols`), for a table of the index's schemas."""
    try:
        cols = stats_cols(table)
    except ExvadError:  # a table with a schema of its own and no schemas/ file
        return None
    names = set(pa.schema(schema).names if isinstance(schema, pa.Schema) else [f.name for f in schema.fields])
    cols = [c for c in cols or [] if c in names and c not in partition_by]
    return {"delta.dataSkippingStatsColumns": ",".join(cols)} if cols else None


def _has_files(uri: str) -> bool:
    fs, path = storage.filesystem(uri)
    try:
        return bool(fs.exists(path) and fs.ls(path, detail=False))
    except FileNotFoundError:
        return False


def _storage_error(uri: str, exc: Exception) -> StorageError:
    if storage.is_unreachable(exc) or "connect" in str(exc).lower():
        return storage.unavailable(uri, exc)
    return StorageError(f"Delta table {uri}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")


# ------------------------------------------------------------------------------------- worker side


def write_files(index: str, table: str, rows: pa.Table | dict[str, Any], partitions: Sequence[dict[str, str]]
                ) -> list[dict[str, Any]]:
    """Write a block of rows as Parquet files under ``INDEX/<table>`` (one per partition of the
    table) and return their add actions as plain dicts for `commit`. `partitions` gives each row's
    partition values (the columns of `partition_cols(table)`, e.g. class, date, camera of
    `segments`): those the table is partitioned by (`table_partition_cols`) name its folders, the
    others are stored in the files as string columns (a `segments` table created now holds `class`
    in its files; an older one has it as a folder). Nothing is visible to readers until `commit`;
    files of a block that is never committed are removed by vacuum."""
    t = open_table(index, table)  # the table exists before any of its files (normally the driver made it)
    part = partition_columns(t)  # its own partitioning, whatever schemas/ says now
    given = rows if isinstance(rows, pa.Table) else pa.table(rows)
    if "/" in table:  # a table with a schema of its own: its columns, as it was created
        cols = pa.schema([f for f in pa.schema(t.schema().to_arrow()) if f.name not in part])
        inside = [c for c in cols.names if c not in given.column_names and all(c in p for p in partitions)]
        missing = [c for c in cols.names if c not in given.column_names and c not in inside]
        if missing:
            raise ExvadError(f"{table}: columns {missing} missing")
        wanted = [*part, *inside]
    else:
        cols = None
        inside = [c for c in partition_cols(table) if c not in part]
        wanted = partition_cols(table)
        given = conform(table, given)
    if len(partitions) != given.num_rows:
        raise ExvadError(f"{table}: {len(partitions)} partition values for {given.num_rows} rows")
    missing = [c for c in wanted if any(c not in p for p in partitions)]
    if missing:
        raise ExvadError(f"{table}: partition value(s) {missing} missing")
    for c in inside:  # a partition value the table keeps in its files
        given = given.append_column(pa.field(c, pa.string(), nullable=False),
                                    pa.array([str(p[c]) for p in partitions], pa.string()))
    body = given if cols is None else given.select(cols.names).cast(cols)
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, p in enumerate(partitions):
        groups.setdefault(tuple(str(p[c]) for c in part), []).append(i)
    root = table_uri(index, table)
    out = []
    for key, idxs in sorted(groups.items()):
        chunk = body.take(pa.array(idxs, pa.int64()))
        folder = "/".join(f"{c}={v}" for c, v in zip(part, key))
        out.append(_write_file(root, folder, chunk, dict(zip(part, key)), table))
    return out


def _write_file(root: str, folder: str, chunk: pa.Table, partition_values: dict[str, str | None],
                table: str) -> dict[str, Any]:
    """Write `chunk` as a new file ``part-<uuid>.zstd.parquet`` in `folder` (relative to the table
    root, "" for none) and return its add action as a plain dict, with the statistics of the
    table's `stats_cols`."""
    rel = "/".join(p for p in (folder, f"part-{uuid.uuid4().hex}.zstd.parquet") if p)
    uri = storage.join(root, rel)
    fs, path = storage.arrow_filesystem(uri)
    if not storage.is_remote(uri):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        pq.write_table(chunk, path, filesystem=fs, compression="zstd")
        size = fs.get_file_info(path).size
    except Exception as exc:  # noqa: BLE001
        raise _storage_error(uri, exc) from exc
    return {"path": rel, "size": int(size), "partition_values": dict(partition_values),
            "modification_time": _now_ms(), "data_change": True,
            "stats": json.dumps(file_stats(chunk, stats_cols(table)))}


def _now_ms() -> int:
    return int(dt.datetime.now(dt.timezone.utc).timestamp() * 1000)


def file_stats(t: pa.Table, columns: Sequence[str] | None = None) -> dict[str, Any]:
    """Delta statistics of one file: row count, and min/max/null count of the scalar columns
    (of `columns` only when given: `schemas.stats_cols`)."""
    mins, maxs, nulls = {}, {}, {}
    for f in t.schema:
        if not any(is_(f.type) for is_ in _STATS_TYPES) or (columns is not None and f.name not in columns):
            continue
        col = t.column(f.name)
        nulls[f.name] = col.null_count
        if col.null_count == len(col):
            continue
        mm = pc.min_max(col)
        lo, hi = mm["min"].as_py(), mm["max"].as_py()
        if pa.types.is_timestamp(f.type):
            lo, hi = (v.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z" for v in (lo, hi))
        mins[f.name], maxs[f.name] = lo, hi
    return {"numRecords": t.num_rows, "minValues": mins, "maxValues": maxs, "nullCount": nulls}


# ------------------------------------------------------------------------------------- driver side


def committed_batch(index: str, table: str, run_id: str) -> int | None:
    """The last batch number that run `run_id` committed to the table (None: none)."""
    return open_table(index, table).transaction_version(run_id)


def commit(index: str, table: str, run_id: str, batch: int, files: Iterable[dict[str, Any]],
           metadata: dict[str, str] | None = None) -> bool:
    """Add the files workers wrote (`write_files`) in one commit with the application transaction
    (run_id, batch). Returns False, adding nothing, when the table already holds that batch (or a
    later one) of the run: a retry after a kill. Batches of a run are numbered upwards from 0.
    `metadata`: more commit metadata (the job records the batch's video ids there)."""
    from deltalake import CommitProperties, Transaction

    if batch < 0:
        raise ExvadError(f"batch numbers start at 0 (got {batch})")
    t = open_table(index, table)
    done = t.transaction_version(run_id)
    if done is not None and done >= batch:
        return False
    adds = [_add_action(f) for f in files]
    schema, part = _layout(t, table)
    try:
        t.create_write_transaction(
            adds, mode="append", schema=schema, partition_by=part or None,
            commit_properties=CommitProperties(app_transactions=[Transaction(app_id=run_id, version=batch)],
                                               custom_metadata=_metadata(**{"exvad.run_id": run_id,
                                                                            "exvad.batch": str(batch),
                                                                            **(metadata or {})})))
    except Exception as exc:  # noqa: BLE001
        raise _storage_error(table_uri(index, table), exc) from exc
    return True


def append(index: str, table: str, files: Iterable[dict[str, Any]]) -> None:
    """Add files in one commit of their own, without an application transaction: for rows that
    workers commit as they come (a failed video's `errors` row); concurrent appends all land (the
    log's optimistic concurrency: docs/INDEX.md (a))."""
    from deltalake import CommitProperties

    adds = [_add_action(f) for f in files]
    t = open_table(index, table)
    schema, part = _layout(t, table)
    try:
        t.create_write_transaction(
            adds, mode="append", schema=schema, partition_by=part or None,
            commit_properties=CommitProperties(custom_metadata=_metadata()))
    except Exception as exc:  # noqa: BLE001
        raise _storage_error(table_uri(index, table), exc) from exc


def _add_action(f: dict[str, Any]) -> Any:
    from deltalake.transaction import AddAction

    return AddAction(**f)


def delete_by_predicate(index: str, table: str, video_ids: Iterable[str]) -> int:
    """Delete every row of these videos with delta-rs's own delete (``video_id IN (...)``);
    returns the rows deleted. Idempotent: deleting absent videos commits nothing.

    It reads the `video_id` column of EVERY file of the table (random ids: per-file min/max
    statistics prune nothing; 77 s and 1.3 GB for 1% of 1e5 videos, bench/RESULTS.md):
    `deletes.delete_videos` rewrites only the files the id cache names, and falls back to this for a
    table the cache cannot map."""
    ids = check_video_ids(video_ids)
    if not ids:
        return 0
    t = open_table(index, table)
    deleted = 0
    for start in range(0, len(ids), 1000):  # predicate size stays bounded
        chunk = ids[start:start + 1000]
        predicate = "video_id IN (" + ", ".join(f"'{v}'" for v in chunk) + ")"
        try:
            m = t.delete(predicate, commit_properties=_commit_meta())
        except Exception as exc:  # noqa: BLE001
            raise _storage_error(table_uri(index, table), exc) from exc
        deleted += int(m.get("num_deleted_rows") or 0)
    return deleted


def check_video_ids(video_ids: Iterable[str]) -> list[str]:
    """The ids sorted and once each; an ExvadError for one that is not a video id (they go into a
    delete's predicate)."""
    ids = sorted(set(video_ids))
    bad = [v for v in ids if not _ID_RE.fullmatch(v)]
    if bad:
        raise ExvadError(f"not a video id: {bad[0]!r}")
    return ids


_HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


def path_partition_values(folder: str, part: Sequence[str]) -> dict[str, str | None] | None:
    """A data file's partition values from its folder (relative to the table, the log's path
    decoded once, as `snapshot_paths` gives it): ``c=v`` segments in the order of the partition
    columns `part`, each value URL-decoded (delta-rs's own writers percent-encode special
    characters in folder names; `write_files` writes the index's sanitised values as they are,
    where decoding changes nothing). None for any other layout."""
    import urllib.parse

    segs = folder.split("/") if folder else []
    if len(segs) != len(part):
        return None
    out: dict[str, str | None] = {}
    for c, seg in zip(part, segs):
        if not seg.startswith(c + "="):
            return None
        value = urllib.parse.unquote(seg[len(c) + 1:])
        out[c] = None if value == _HIVE_NULL else value
    return out


FILES_PER_COMMIT = 2_000  # files a rewrite (a delete, a merge) removes per commit: one commit's JSON stays a few MB


def file_partition(key: str, part: Sequence[str]) -> tuple[str, dict[str, str | None]] | None:
    """A snapshot file's folder (relative to the table) and partition values, from its path as
    `snapshot_paths` gives it; None for a file a rewrite beside it cannot keep in its partition: a
    path outside the table (a URI, an absolute path) or a folder that does not spell its values."""
    if "://" in key or key.startswith("/"):
        return None
    folder = key.rsplit("/", 1)[0] if "/" in key else ""
    values = path_partition_values(folder, part)
    return None if values is None else (folder, values)


def _read_whole(uri: str) -> tuple[pa.Table, int]:
    """A data file's rows and size in bytes, read with `pq.ParquetFile` on the open file: no hive
    partition columns come from its path; the rows keep the file's own schema."""
    try:
        fs, path = storage.arrow_filesystem(uri)
        with fs.open_input_file(path) as fh:
            return pq.ParquetFile(fh).read(use_threads=False), int(fh.size())
    except Exception as exc:  # noqa: BLE001
        raise _storage_error(uri.rsplit("/", 1)[0], exc) from exc


def _distinct_ids(rows: pa.Table) -> pa.Array:
    """The distinct `video_id`s of rows (none when they have no such column): for the id cache."""
    if "video_id" not in rows.column_names:
        return pa.array([], pa.string())
    return pc.unique(rows.column("video_id").cast(pa.string()).combine_chunks())


def rewrite_without(index: str, table: str, uri: str, folder: str, values: dict[str, str | None],
                    drop: pa.Array) -> tuple[int, int, dict[str, Any] | None, pa.Array]:
    """Read the data file `uri` whole and write its rows whose `video_id` is not in `drop` as a new
    file in `folder` (its own, relative to the table) with partition values `values`. Returns (rows
    dropped, the old file's size, the new file's add dict - None when no row remains or none was
    dropped -, the new file's distinct video ids)."""
    rows, size = _read_whole(uri)
    gone = pc.fill_null(pc.is_in(rows.column("video_id").cast(pa.string()), value_set=drop), False)
    rest = rows.filter(pc.invert(gone))
    dropped = rows.num_rows - rest.num_rows
    if not dropped or not rest.num_rows:
        return dropped, size, None, pa.array([], pa.string())
    return dropped, size, _write_file(table_uri(index, table), folder, rest, values, table), _distinct_ids(rest)


def file_sizes(uris: Sequence[str]) -> list[int]:
    """The sizes of these data files in bytes (one listing call for them all: a stat each locally,
    a HEAD each on S3)."""
    if not uris:
        return []
    fs, _ = storage.arrow_filesystem(uris[0])
    try:
        return [int(i.size) for i in fs.get_file_info([storage.arrow_filesystem(u)[1] for u in uris])]
    except Exception as exc:  # noqa: BLE001
        raise _storage_error(uris[0].rsplit("/", 1)[0], exc) from exc


def merge_files(index: str, table: str, uris: Sequence[str], folder: str, values: dict[str, str | None]
                ) -> tuple[dict[str, Any], pa.Array]:
    """Read these data files of one partition folder whole (their own schemas, no hive columns from
    the path) and write their rows, in this order, as one new file in `folder` with partition values
    `values`. Returns the new file's add dict and its distinct video ids (for the id cache). Files
    written under older schemas are read as they are and their columns unified by name."""
    rows = pa.concat_tables([_read_whole(uri)[0] for uri in uris], promote_options="default")
    return _write_file(table_uri(index, table), folder, rows, values, table), _distinct_ids(rows)


def commit_rewrites(index: str, table: str, t: Any, removed: Sequence[tuple[str, int, dict[str, str | None]]],
                    adds: Sequence[dict[str, Any]], operation: str | None = None) -> None:
    """One commit to the open table `t` removing the files `removed` ((path relative to the table
    as `snapshot_paths` gives it, size, partition values)) and adding `adds` (`rewrite_without`'s
    dicts), with our commit metadata (and `operation`, e.g. "optimize" for a merge of small files:
    then no row changes and the actions say so, data_change false, as delta-rs's optimize writes
    them). delta-rs 1.6.6 takes removes in an "append" transaction and percent-encodes their paths
    as it does the adds'."""
    from deltalake.transaction import RemoveAction

    now, change = _now_ms(), operation is None
    actions: list[Any] = [RemoveAction(path=path, data_change=change, deletion_timestamp=now, size=size,
                                       partition_values=values) for path, size, values in removed]
    actions += [_add_action({**a, "data_change": change}) for a in adds]
    schema, part = _layout(t, table)
    try:
        t.create_write_transaction(actions, mode="append", schema=schema, partition_by=part or None,
                                   commit_properties=_commit_meta() if change else _commit_meta_for(operation))
    except Exception as exc:  # noqa: BLE001
        raise _storage_error(table_uri(index, table), exc) from exc


def _commit_meta() -> Any:
    from deltalake import CommitProperties

    return CommitProperties(custom_metadata=_metadata())


def snapshot_files(index: str, table: str, partitions: dict[str, str | Sequence[str]] | None = None,
                   version: int | None = None) -> list[str]:
    """URIs of the data files of the table's current snapshot (or `version`), only those that may
    hold rows of the given values when `partitions` is set: what DuckDB or the page reads, without
    listing. Exact for the table's partition columns; a value the table keeps in its files (`class`
    of a `segments` table created by date and camera) is matched against each file's min/max
    statistics, which selects a superset: filter such a column on the rows."""
    from deltalake import DeltaTable

    uri = table_uri(index, table)
    try:
        t = DeltaTable(_uri_arg(uri), version=version, storage_options=storage_options(uri))
        filters = None
        if partitions:
            filters = [(c, "in", [str(x) for x in v]) if isinstance(v, (list, tuple, set)) else (c, "=", str(v))
                       for c, v in partitions.items()]
        return list(t.file_uris(file_pruning_predicate=filters))
    except Exception as exc:  # noqa: BLE001
        if type(exc).__name__ == "TableNotFoundError":
            raise ExvadError(f"no Delta table {table!r} in {storage.normalize(index)}") from exc
        raise _storage_error(uri, exc) from exc


def snapshot_paths(index: str, table: str) -> pa.Array | None:
    """The data files of the table's current snapshot as paths relative to the table (as on disk,
    as `snapshot_files` gives them), read from the log itself: the last checkpoint's `add.path`
    column and the JSON commits after it (at most the checkpoint interval, 100). None when the log
    holds what this reader does not follow (a multi-part or v2 checkpoint, deletion vectors, a path
    outside the table): callers then use `snapshot_files`.

    Why not delta-rs: to list the files it loads every add action with its statistics (about 3 KB
    per file for the `videos` table, 200 MB at 1e6 videos in batches of 16); the id cache needs
    only the paths (about 100 bytes a file), and a planning should not grow by more than a few
    tens of bytes per video. delta-rs's `skip_stats=True` was measured too: about the same memory
    as a full load and 8x slower than this at 1e5 videos. The format read here is the Delta
    protocol's checkpoint and commit files, which delta-rs writes and every engine reads."""
    return _log_walk(index, table)[0]


def log_version(index: str, table: str) -> int:
    """The table's current version, from the same walk of its log (no add action loaded), else
    from delta-rs."""
    version = _log_walk(index, table)[1]
    return version if version is not None else int(open_table(index, table, create=False).version())


def _log_walk(index: str, table: str) -> tuple[pa.Array | None, int | None]:
    """`snapshot_paths` and the version it read up to (None, None: a log this reader does not
    follow; (None, version): it followed the log but a path is not ours to map)."""
    import urllib.parse

    log_uri = storage.join(table_uri(index, table), "_delta_log")
    _forget_listing(log_uri)
    pointer = _read_if_exists(storage.join(log_uri, "_last_checkpoint"))
    try:
        last = None if pointer is None else json.loads(pointer)
    except ValueError:  # unreadable pointer: let delta-rs sort it out
        return None, None
    live = pa.array([], pa.string())
    if last is not None:
        if last.get("parts") or last.get("v2Checkpoint") or not isinstance(last.get("version"), int):
            return None, None
        version = int(last["version"])
        try:
            with storage.open_file(storage.join(log_uri, f"{version:020d}.checkpoint.parquet")) as fh:
                pf = pq.ParquetFile(fh)
                others = (["add.deletionVector"] if "deletionVector" in pf.schema_arrow.field("add").type.names else []) \
                    + (["sidecar"] if "sidecar" in pf.schema_arrow.names else [])
                if any(_leaf(pf.read(columns=[c], use_threads=False).column(0)).null_count < pf.metadata.num_rows
                       for c in others):
                    return None, None  # deletion vectors or v2 sidecars
                live = _leaf(pf.read(columns=["add.path"], use_threads=False).column(0)).drop_null().cast(pa.string())
        except StorageError:
            raise
        except Exception:  # noqa: BLE001 - a checkpoint this reader does not follow
            return None, None
        start = version + 1
    else:
        start = 0
    added: dict[str, None] = {}
    removed: set[str] = set()
    v = start
    while True:
        data = _read_if_exists(storage.join(log_uri, f"{v:020d}.json"))  # an outage raises, never ends the log
        if data is None:
            break
        for line in data.decode().splitlines():
            if not line.strip():
                continue
            action = json.loads(line)
            if "remove" in action:
                path = action["remove"]["path"]
                if added.pop(path, 0) == 0:
                    removed.add(path)
            elif "add" in action:
                if action["add"].get("deletionVector"):
                    return None, None
                added[action["add"]["path"]] = None
        v += 1
    if start == 0 and v == 0:
        return None, None  # no log at all
    _forget_listing(log_uri)
    if _read_if_exists(storage.join(log_uri, "_last_checkpoint")) != pointer:
        return None, None  # a checkpoint (and a log cleanup) meanwhile: the commits read may be incomplete
    if removed:
        live = live.filter(pc.invert(pc.is_in(live, value_set=pa.array(sorted(removed), pa.string()))))
    paths = pa.concat_arrays([live, pa.array(list(added), pa.string())])
    if pc.any(pc.match_substring(paths, "://")).as_py() or pc.any(pc.starts_with(paths, "/")).as_py():
        return None, v - 1  # a file outside the table (a shallow clone): not ours to map
    escaped = pc.match_substring(paths, "%").to_numpy(zero_copy_only=False)
    if escaped.any():  # the log URL-encodes a path; the file's name is its decoded form
        out = paths.to_pylist()
        for i in np.flatnonzero(escaped):
            out[i] = urllib.parse.unquote(out[i])
        paths = pa.array(out, pa.string())
    return paths, v - 1


def _leaf(col: pa.ChunkedArray) -> pa.Array:
    """A nested column read by its dotted name (``add.path``) comes as structs of one field down
    to the leaf: the leaf, null where any parent is (a checkpoint row that is not an add)."""
    arr = col.combine_chunks()
    while pa.types.is_struct(arr.type):
        arr = arr.flatten()[0]
    return arr


def _forget_listing(uri: str) -> None:
    """Drop what the S3 client remembers of a folder (its listing, its objects' ETags): the log
    moves under it - `_last_checkpoint` is rewritten (a read with the remembered ETag fails) and a
    commit added since the folder was listed would look absent, which would end the log early."""
    if storage.is_remote(uri):
        fs, path = storage.filesystem(uri)
        fs.invalidate_cache(path)


def _read_if_exists(uri: str) -> bytes | None:
    """The object's bytes, None when there is no such object; any other failure raises."""
    try:
        return storage.read_bytes(uri)
    except StorageError as exc:
        if isinstance(exc.__cause__, FileNotFoundError):
            return None
        raise


def is_delta(index: str, table: str) -> bool:
    """Whether ``INDEX/<table>`` is a Delta table (it has a ``_delta_log``), not today's layout."""
    return storage.exists(storage.join(table_uri(index, table), "_delta_log"))


def video_ids(index: str, table: str) -> pa.Array:
    """The `video_id` column of the table's current snapshot (`iter_video_ids`), as one array."""
    chunks = list(iter_video_ids(index, table))
    return pa.concat_arrays(chunks) if chunks else pa.array([], pa.string())


def iter_video_ids(index: str, table: str) -> Iterator[pa.Array]:
    """The `video_id` column of the table's current snapshot, read from the files themselves (that
    column alone), one file at a time: every row's id, duplicates kept - what the tests hold the id
    cache (`index.idmap`, which planning reads) to. One file at a time because a dataset over all
    the files keeps every file's footer (a `videos` file's footer describes all its columns: 1.1 GB
    for 1e4 files)."""
    for f in snapshot_files(index, table):
        yield file_video_id_column(f)


def file_video_id_column(uri: str) -> pa.Array:
    """One data file's `video_id` column, read alone, as strings."""
    try:
        fs, path = storage.arrow_filesystem(uri)
        with fs.open_input_file(path) as fh:
            col = pq.ParquetFile(fh).read(columns=["video_id"], use_threads=False).column(0)
    except Exception as exc:  # noqa: BLE001
        raise _storage_error(uri.rsplit("/", 1)[0], exc) from exc
    return col.cast(pa.string()).combine_chunks()


def commit_metadata(index: str, table: str) -> dict[str, Any]:
    """The newest commit's metadata (the schema version and package version that wrote it, ...)."""
    return dict(open_table(index, table, create=False).history(1)[0])


# ------------------------------------------------------------------------------------- maintenance


def optimize(index: str, table: str, z_order: Sequence[str] | None = None) -> dict[str, Any]:
    """delta-rs optimize of the table: each partition's small files merged (bin-packing,
    `optimize.compact`), or, with `z_order`, every partition rewritten with its rows clustered on
    those columns (columns inside a partition: delta-rs refuses partition columns). One commit
    carrying our commit metadata; returns delta-rs's metrics (numFilesAdded, numFilesRemoved...)."""
    t = open_table(index, table, create=False)
    meta = _commit_meta_for("optimize" + ("+z_order" if z_order else ""))
    try:
        if z_order:
            return dict(t.optimize.z_order(list(z_order), commit_properties=meta))
        return dict(t.optimize.compact(commit_properties=meta))
    except Exception as exc:  # noqa: BLE001
        raise _storage_error(table_uri(index, table), exc) from exc


def vacuum(index: str, table: str, retention_hours: int) -> list[str]:
    """Delete the table's data files that no version younger than `retention_hours` references,
    and files no commit ever referenced (a killed batch's) once older than `retention_hours`;
    returns their paths (relative to the table).

    delta-rs's default ("lite") vacuum deletes only files that a commit removed (compaction,
    deletes) more than the retention ago: it never looks at files the log never knew, so a killed
    batch's files would stay forever (measured with deltalake 1.6.6). Its `full` mode lists the
    table's folder and also deletes files no live version references whose modification time is
    older than the retention, keeping files of a remove younger than the retention: that is what
    is used here. A batch being written while this runs is younger than any sensible retention;
    with 0 it would be deleted before its commit, which is why the CLI holds the index lease."""
    if retention_hours < 0:
        raise ExvadError(f"the retention is a number of hours >= 0 (got {retention_hours})")
    t = open_table(index, table, create=False)
    try:
        return list(t.vacuum(retention_hours=int(retention_hours), dry_run=False, enforce_retention_duration=False,
                             full=True, commit_properties=_commit_meta_for("vacuum")))
    except Exception as exc:  # noqa: BLE001
        raise _storage_error(table_uri(index, table), exc) from exc


def set_retention(index: str, table: str, retention_hours: int) -> bool:
    """Set the table's log retention (`delta.logRetentionDuration`) and deleted-file retention
    (`delta.deletedFileRetentionDuration`) to `retention_hours`, as ``interval <H> hours`` (the
    form delta-rs and Spark parse; delta-rs 1.6.6 accepts any string here and silently falls back
    to its defaults, 30 and 7 days, on one it cannot parse, e.g. "<H> hours"). One commit with our
    commit metadata, and none when both already hold that value; returns whether it committed.

    Why both: once vacuum deleted the files of the versions older than the file retention, those
    versions cannot be read anyway, so keeping their log entries (30 days by default) only costs
    objects - one JSON per commit, the job's commits being one per table per batch of videos. The
    properties stay on the table, so any writer's later checkpoint (delta-rs writes one every 100
    commits and then deletes the expired log entries) and any other engine's vacuum apply the
    same retention."""
    if retention_hours < 0:
        raise ExvadError(f"the retention is a number of hours >= 0 (got {retention_hours})")
    value = f"interval {int(retention_hours)} hours"
    wanted = {"delta.logRetentionDuration": value, "delta.deletedFileRetentionDuration": value}
    t = open_table(index, table, create=False)
    try:
        held = t.metadata().configuration
        if all(held.get(k) == v for k, v in wanted.items()):
            return False
        t.alter.set_table_properties(wanted, commit_properties=_commit_meta_for("set_retention"))
    except Exception as exc:  # noqa: BLE001
        raise _storage_error(table_uri(index, table), exc) from exc
    return True


def checkpoint(index: str, table: str) -> None:
    """Write a checkpoint of the current version (a reader then reads one Parquet file instead of
    replaying the JSON commits since the last one; ``_delta_log/_last_checkpoint`` points at it)
    and delete the log entries, commits and older checkpoints, that are older than the log
    retention (`delta.logRetentionDuration`: 30 days unless `set_retention` set it) and older than
    the newest checkpoint outside it: that checkpoint stays, the base from which the versions
    younger than the retention are rebuilt (delta-rs 1.6.6 keeps it; checked in
    tests/index/test_delta_compaction.py). Time travel reaches back to that checkpoint's version."""
    t = open_table(index, table, create=False)
    try:
        t.create_checkpoint()
        t.cleanup_metadata()
    except Exception as exc:  # noqa: BLE001
        raise _storage_error(table_uri(index, table), exc) from exc


def _commit_meta_for(operation: str) -> Any:
    from deltalake import CommitProperties

    return CommitProperties(custom_metadata=_metadata(**{"exvad.operation": operation}))
