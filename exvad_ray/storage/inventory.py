"""An archive listed from an S3 Inventory report instead of ListObjectsV2.

Listing a bucket of 1e7 objects is 1e4 LIST requests and hours; its owner usually already has a
daily S3 Inventory report of it: a ``manifest.json`` naming gzipped CSV or Parquet data files in a
destination bucket. `iter_inventory` turns that report into the same `ArchivePage` stream as
`iter_archive` gives for the archive (same keys under the prefix, same filters and ignored counts,
same sizes and ETags, so the same video ids), read one data file at a time.

Order: S3 does not promise that an inventory's data files are sorted, or that one file's keys all
come before the next's. Each data file's rows under the archive prefix are sorted and spilled to a
local Arrow file (key, size, ETag, modification time: ~100 bytes an object); files whose key
ranges follow one another are then read in turn, and overlapping ones are merged (one batch per
file in memory), so pages come in URI order as a listing's do.
"""

from __future__ import annotations

import dataclasses
import gzip
import heapq
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import unquote_plus

import pyarrow as pa

from exvad_ray.errors import StorageError
from exvad_ray.storage.locations import (
    DEFAULT_VIDEO_EXTENSIONS,
    ArchivePage,
    _archive_page,
    is_remote,
    normalize,
    open_file,
)

log = logging.getLogger(__name__)

SPILL_BATCH = 8192  # rows per batch of a spilled data file: what the merge holds per file
_FIELDS = {"key": "key", "size": "size", "etag": "etag", "lastmodifieddate": "mtime",
           "islatest": "is_latest", "isdeletemarker": "is_delete_marker"}


def _field(name: str) -> str:
    """A schema field as one spelling: CSV's ``LastModifiedDate`` and Parquet's ``last_modified_date``
    are both ``lastmodifieddate``."""
    return re.sub(r"[^a-z]", "", name.lower())


@dataclasses.dataclass(frozen=True)
class InventoryManifest:
    """What `iter_inventory` needs of a manifest.json."""

    uri: str
    source_bucket: str
    destination_bucket: str
    file_format: str  # "csv" or "parquet"
    columns: tuple[str, ...]  # fileSchema's field names, as written
    files: tuple[str, ...]  # data files' keys in the destination bucket

    def data_uris(self) -> list[str]:
        return [f"s3://{self.destination_bucket}/{k.lstrip('/')}" for k in self.files]


def read_manifest(manifest_uri: str, archive_uri: str | None = None) -> InventoryManifest:
    """Read and check an S3 Inventory manifest.json; with `archive_uri`, check that it lists the
    archive's bucket. Every problem is one StorageError line naming the manifest."""
    where = f"inventory manifest {manifest_uri}"
    try:
        raw = _read(manifest_uri)
    except StorageError as exc:
        if "not found" in str(exc):
            raise StorageError(f"{where} not found (give the URI of the report's manifest.json)") from exc
        raise
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StorageError(f"{where} is not JSON ({str(exc).splitlines()[0]})") from exc
    if not isinstance(doc, dict):
        raise StorageError(f"{where} is not an S3 Inventory manifest (a JSON object with sourceBucket, files)")
    missing = [k for k in ("sourceBucket", "destinationBucket", "fileFormat", "fileSchema", "files") if k not in doc]
    if missing:
        raise StorageError(f"{where} is not an S3 Inventory manifest: it lacks {', '.join(missing)}")
    fmt = str(doc["fileFormat"]).strip().lower()
    if fmt == "orc":
        raise StorageError(f"{where}: ORC inventories are not supported; configure the report as CSV or Parquet")
    if fmt not in ("csv", "parquet"):
        raise StorageError(f"{where}: unknown fileFormat {doc['fileFormat']!r} (CSV or Parquet)")
    schema = str(doc["fileSchema"])
    if fmt == "csv":
        columns = tuple(c.strip() for c in schema.split(","))
    else:  # "message s3.inventory { required binary key (UTF8); optional int64 size; ... }"
        columns = tuple(re.findall(r"\b(?:required|optional|repeated)\s+\w+\s+(\w+)", schema))
    have = {_field(c) for c in columns}
    lacking = [name for name, f in (("Key", "key"), ("Size", "size"), ("ETag", "etag")) if f not in have]
    if lacking:
        raise StorageError(f"{where}: its fileSchema lacks {', '.join(lacking)} (add the Size and ETag fields "
                           f"to the inventory configuration); fileSchema is {schema!r}")
    files = doc["files"]
    if not isinstance(files, list) or not all(isinstance(f, dict) and f.get("key") for f in files):
        raise StorageError(f"{where}: 'files' must be a list of {{\"key\": ...}} entries")
    source = str(doc["sourceBucket"]).rpartition(":")[2]
    manifest = InventoryManifest(uri=manifest_uri, source_bucket=source,
                                 destination_bucket=str(doc["destinationBucket"]).rpartition(":")[2],
                                 file_format=fmt, columns=columns, files=tuple(str(f["key"]) for f in files))
    if archive_uri is not None:
        _archive_prefix(manifest, archive_uri)
    return manifest


def _read(uri: str) -> bytes:
    with open_file(uri, "rb") as f:
        return f.read()


def _archive_prefix(manifest: InventoryManifest, archive_uri: str) -> str:
    """The archive's key prefix in the source bucket ('' for the whole bucket)."""
    norm = normalize(archive_uri)
    if not is_remote(norm):
        raise StorageError(f"an inventory lists an S3 bucket: the archive must be s3://..., not {archive_uri}")
    bucket, _, key = norm[len("s3://"):].partition("/")
    if bucket != manifest.source_bucket:
        raise StorageError(f"inventory manifest {manifest.uri} lists bucket {manifest.source_bucket!r}, not the "
                           f"archive's bucket {bucket!r}")
    return key


def iter_inventory(
    manifest_uri: str, archive_uri: str, extensions: Iterable[str] | None = DEFAULT_VIDEO_EXTENSIONS,
    recursive: bool = True, hash_content: bool = False, page: int = 10_000,
) -> Iterator[ArchivePage]:
    """The archive's objects as listed by an S3 Inventory report: the pages `iter_archive` would
    give for `archive_uri` (`page` objects each, in URI order, same entries and ignored counts),
    for the objects the report holds. Only current versions that are not delete markers count
    (a report with all versions lists the others too)."""
    manifest = read_manifest(manifest_uri, archive_uri)
    prefix = _archive_prefix(manifest, archive_uri)
    exts = tuple(extensions) if extensions is not None else None
    chunk: list[tuple[str, dict[str, Any]]] = []
    found = False
    for item in _objects(manifest, prefix, recursive):
        found = True
        chunk.append(item)
        if len(chunk) >= page:
            yield _archive_page(chunk, exts, hash_content)
            chunk = []
    if chunk:
        yield _archive_page(chunk, exts, hash_content)
    if not found:
        raise StorageError(f"archive not found: no object under {archive_uri} in the inventory {manifest_uri}")


def _objects(manifest: InventoryManifest, prefix: str, recursive: bool) -> Iterator[tuple[str, dict[str, Any]]]:
    """(URI, info) of every object under the prefix, in key order; the info as a listing gives it."""
    base = f"s3://{manifest.source_bucket}/"
    with tempfile.TemporaryDirectory(prefix="exvad-inventory-") as tmp:
        spills: list[tuple[str, str, str]] = []  # (first key, last key, path)
        for n, uri in enumerate(manifest.data_uris()):
            table = _under(_read_data_file(manifest, uri), prefix, recursive)
            if table.num_rows == 0:
                continue
            keys = table.column("key")
            path = os.path.join(tmp, f"{n}.arrow")
            with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
                for batch in table.to_batches(max_chunksize=SPILL_BATCH):
                    writer.write_batch(batch)
            spills.append((keys[0].as_py(), keys[-1].as_py(), path))
            del table, keys
        spills.sort()
        single = prefix and spills and spills[0][0] == prefix
        in_order = all(a[1] < b[0] for a, b in zip(spills, spills[1:]))
        if in_order:
            rows: Iterator[tuple[str, int, str | None, float | None]] = (
                r for _, _, p in spills for r in _rows(p))
        else:
            log.info("inventory %s: data files' key ranges overlap; merging %d sorted files",
                     manifest.uri, len(spills))
            rows = heapq.merge(*[_rows(p) for _, _, p in spills], key=lambda r: r[0])
        for key, size, etag, mtime in rows:
            yield base + key, {"size": size, "ETag": etag, "LastModified": mtime}
            if single:  # the archive is one object (a listing of it is that object alone)
                return


def _rows(path: str) -> Iterator[tuple[str, int, str | None, float | None]]:
    with pa.memory_map(path) as source:
        reader = pa.ipc.open_file(source)
        for i in range(reader.num_record_batches):
            b = reader.get_batch(i)
            yield from zip(b.column(0).to_pylist(), b.column(1).to_pylist(), b.column(2).to_pylist(),
                           b.column(3).to_pylist())


def _under(table: pa.Table, prefix: str, recursive: bool) -> pa.Table:
    """The rows of current objects under the prefix (the object named by the prefix itself too),
    sorted by key (Arrow compares strings bytewise: UTF-8 order, the order S3 lists keys in)."""
    import pyarrow.compute as pc  # not at import: `exvad --help` imports this package

    keys = table.column("key")
    keep = pc.is_valid(keys)
    if "is_latest" in table.column_names:
        keep = pc.and_(keep, pc.fill_null(table.column("is_latest"), True))
    if "is_delete_marker" in table.column_names:
        keep = pc.and_(keep, pc.invert(pc.fill_null(table.column("is_delete_marker"), False)))
    if prefix:
        inside = pc.starts_with(keys, prefix + "/")
        if not recursive:
            rest = pc.utf8_slice_codeunits(keys, len(prefix) + 1)
            inside = pc.and_(inside, pc.invert(pc.match_substring(rest, "/")))
        keep = pc.and_(keep, pc.or_(inside, pc.equal(keys, prefix)))
    elif not recursive:
        keep = pc.and_(keep, pc.invert(pc.match_substring(keys, "/")))
    table = table.filter(keep).select(["key", "size", "etag", "mtime"])
    return table.take(pc.sort_indices(table, [("key", "ascending")]))


def _read_data_file(manifest: InventoryManifest, uri: str) -> pa.Table:
    """One data file as (key, size, etag, mtime[, is_latest, is_delete_marker]): keys decoded,
    ETags without quotes, mtime in seconds since the epoch."""
    try:
        with open_file(uri, "rb") as f:
            if manifest.file_format == "csv":
                table = _read_csv(f, uri, manifest.columns)
            else:
                table = _read_parquet(f)
    except StorageError as exc:
        raise StorageError(f"inventory data file {uri} (of {manifest.uri}): {exc}") from exc
    except (pa.ArrowException, OSError, EOFError, ValueError) as exc:
        raise StorageError(f"inventory data file {uri} cannot be read as {manifest.file_format.upper()}: "
                           f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
    return _normalise(table)


def _read_csv(f: Any, uri: str, columns: tuple[str, ...]) -> pa.Table:
    import pyarrow.csv as pacsv
    import pyarrow.compute as pc

    wanted = [c for c in columns if _field(c) in _FIELDS]
    stream = gzip.GzipFile(fileobj=f) if uri.endswith(".gz") else f
    table = pacsv.read_csv(
        stream, read_options=pacsv.ReadOptions(column_names=list(columns)),
        convert_options=pacsv.ConvertOptions(include_columns=wanted, column_types={c: pa.string() for c in wanted},
                                             strings_can_be_null=True))
    table = table.rename_columns([_FIELDS[_field(c)] for c in table.column_names])
    # CSV keys are URL-encoded (a space as '+' or %20, a '+' as %2B): decoded before any comparison
    decoded = pa.array([None if k is None else unquote_plus(k) for k in table.column("key").to_pylist()], pa.string())
    table = table.set_column(table.column_names.index("key"), "key", decoded)
    for name in ("is_latest", "is_delete_marker"):
        if name in table.column_names:
            col = pc.equal(pc.utf8_lower(table.column(name)), "true")
            table = table.set_column(table.column_names.index(name), name, col)
    if "mtime" in table.column_names:
        stamps = pc.cast(table.column("mtime"), pa.timestamp("ms", tz="UTC"))
        table = table.set_column(table.column_names.index("mtime"), "mtime", stamps)
    return table


def _read_parquet(f: Any) -> pa.Table:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(f)
    names = {_FIELDS[_field(n)]: n for n in pf.schema_arrow.names if _field(n) in _FIELDS}
    table = pf.read(columns=list(names.values()))
    return table.rename_columns([_FIELDS[_field(n)] for n in table.column_names])


def _normalise(table: pa.Table) -> pa.Table:
    """key string, size int64, etag string without quotes, mtime float64 seconds (null if absent)."""
    import pyarrow.compute as pc  # not at import: `exvad --help` imports this package

    n = table.num_rows
    for name in ("key", "size", "etag"):
        if name not in table.column_names:
            raise StorageError(f"inventory data file has no {name} column")
    size = pc.cast(table.column("size"), pa.int64())
    etag = pc.utf8_trim(pc.cast(table.column("etag"), pa.string()), '"')
    if "mtime" in table.column_names:
        col = table.column("mtime")
        if pa.types.is_timestamp(col.type):
            col = pc.divide(pc.cast(pc.cast(col, pa.timestamp("ms", tz="UTC")), pa.int64()), 1000.0)
        mtime = pc.cast(col, pa.float64())
    else:
        mtime = pa.nulls(n, pa.float64())
    cols = {"key": pc.cast(table.column("key"), pa.string()), "size": size, "etag": etag, "mtime": mtime}
    for name in ("is_latest", "is_delete_marker"):
        if name in table.column_names:
            cols[name] = pc.cast(table.column(name), pa.bool_())
    return pa.table(cols)
