"""Which rows of an index are current: supersede rules for changed content and retried errors.

Rows are never rewritten in place (per-video files, append-only), so a reader needs rules to
know which ones still describe the archive:

1. **Changed content.** A video's id is its URI plus its content version (S3 ETag; local size +
   modification time, or a content hash). When the job finds a URI whose indexed id differs from
   the id it lists now, the object was replaced: it writes a tombstone
   ``INDEX/superseded/<old id>.json`` ({uri, by, at}) and processes the new content. Rows of a
   tombstoned id are not served by `read_table`, and `exvad compact` deletes them.
2. **Retried errors.** A video that failed and later succeeded (``--retry-errors``) has a `videos`
   row: its `errors` rows are not served and compaction deletes them. A video that failed more
   than once is served with its newest error row only.

Tombstones and done-sets come from file listings (no Parquet data is read), so the rules cost a
listing per read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from exvad_ray import storage
from exvad_ray.index import store as idx
from exvad_ray.index.schemas import arrow_schema

SUPERSEDED_DIR = "superseded"


def superseded_ids(index: str) -> set[str]:
    """Ids of videos whose content was replaced (tombstone file names)."""
    root = storage.join(index, SUPERSEDED_DIR)
    fs, path = storage.filesystem(root)
    try:
        names = fs.ls(path, detail=False) if fs.exists(path) else []
    except FileNotFoundError:
        return set()
    return {os.path.basename(n)[:-len(".json")] for n in names if n.endswith(".json")}


def mark_superseded(index: str, old_to_new: dict[str, tuple[str, str]]) -> None:
    """Write a tombstone per replaced video: {old id: (uri, new id)}. On a Delta index the old
    rows are deleted from every video table first (a delete in each log: no reader, ours or
    another engine, sees them again); the rescorings' Delta tables are the caller's
    (`scorings.delete_videos`: the planner calls both); the tombstone stays for scorings in
    per-video files (an upgraded index's), whose readers hide the replaced videos by it."""
    import datetime as dt

    if old_to_new and idx.is_delta_index(index):
        from exvad_ray.index import delta, deletes
        from exvad_ray.index.schemas import VIDEO_TABLES

        for table in VIDEO_TABLES:
            if delta.is_delta(index, table):
                deletes.delete_videos(index, table, old_to_new)

    for old, (uri, new) in sorted(old_to_new.items()):
        doc = {"video_id": old, "uri": uri, "superseded_by": new, "at": dt.datetime.now(dt.timezone.utc).isoformat()}
        storage.write_bytes(storage.join(index, SUPERSEDED_DIR, f"{old}.json"), json.dumps(doc).encode())


def find_replaced(index: str, current: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Indexed ids whose URI now lists with another id: {old id: (uri, new id)}.

    `current` maps URI -> the id listed now, for the URIs not already done under that id (the
    only ones that can have been replaced), so an unchanged archive costs no Parquet read.
    """
    if not current:
        return {}
    gone = superseded_ids(index)
    out: dict[str, tuple[str, str]] = {}
    for table in ("videos", "errors"):
        for t in _id_uri_chunks(index, table, current):
            for vid, uri in zip(t.column("video_id").to_pylist(), t.column("uri").to_pylist()):
                new = current.get(storage.normalize(uri)) if uri else None
                if new and vid != new and vid not in gone:
                    out[vid] = (uri, new)
    return out


def _id_uri_chunks(index: str, table: str, current: dict[str, str]) -> Iterator[pa.Table]:
    """The (video_id, uri) rows of a table whose uri is one of `current`'s. A Delta table is read a
    file at a time, those two columns only, each file's rows filtered before the next is read, so
    the driver holds the URIs still to do and never the table's whole uri column (1e7 videos: ~1 GB);
    today's layout is read as one dataset, as before."""
    if not idx.is_delta_index(index):
        yield idx.read_stored(index, table, columns=["video_id", "uri"])
        return
    wanted = pa.array(sorted(current), pa.string())  # the listing's URIs, as the job stored them
    version = idx.index_version(index)
    for page in idx.iter_table_files(index, table, page=256):
        t = idx.read_files(index, table, page, ["video_id", "uri"], version)
        yield t.filter(pc.is_in(t.column("uri"), value_set=wanted))


def read_table(index: str, table: str, columns: list[str] | None = None, current: bool = True) -> pa.Table:
    """Read a whole table with its hive partition columns (`store.read_stored`); `current`: only the
    rows that still describe the archive (the supersede rules above), else every stored row."""
    if not (current and "video_id" in arrow_schema(table).names):
        return idx.read_stored(index, table, columns)
    want = None if columns is None else list(dict.fromkeys(columns + ["video_id"] + (
        ["processed_at"] if table == "errors" else [])))
    rows = current_rows(index, table, idx.read_stored(index, table, want))
    return rows if columns is None else rows.select(columns)


def current_rows(index: str, table: str, rows: pa.Table, *, gone: set[str] | None = None,
                 ok_ids: set[str] | None = None) -> pa.Table:
    """The rows of `table` that readers see (rules in the module docstring)."""
    if "video_id" not in rows.column_names or rows.num_rows == 0:
        return rows
    gone = superseded_ids(index) if gone is None else gone
    drop = set(gone)
    if table == "errors":
        drop |= idx.done_video_ids(index, ("videos",)) if ok_ids is None else ok_ids
    if drop:
        rows = rows.filter(pc.invert(pc.is_in(rows.column("video_id"), value_set=pa.array(sorted(drop)))))
    if table == "errors" and "processed_at" in rows.column_names and rows.num_rows:
        rows = _newest_per_video(rows)
    return rows


def _newest_per_video(rows: pa.Table) -> pa.Table:
    order = pc.sort_indices(rows, sort_keys=[("video_id", "ascending"), ("processed_at", "descending")])
    rows = rows.take(order)
    ids = rows.column("video_id").to_pylist()
    keep = [i for i, v in enumerate(ids) if i == 0 or ids[i - 1] != v]
    return rows.take(pa.array(keep, type=pa.int64()))


def stale_ids(index: str) -> dict[str, set[str]]:
    """Per table, the video ids whose rows compaction must delete."""
    gone = superseded_ids(index)
    tables = ("videos", "snippets", "segments", "captions", "errors")
    out = {t: set(gone) for t in tables}
    out["errors"] |= idx.done_video_ids(index, ("videos",))
    return out


def purge(index: str) -> dict[str, int]:
    """Delete the rows readers no longer see (for `exvad compact`); returns videos purged per table.

    Per-video files of stale ids are deleted; merged (compact-*) files holding stale ids are
    rewritten without them under a new name (written first, then the old one deleted), so an
    interrupted purge leaves at worst rows that the read rules still hide.
    """
    import hashlib

    import pyarrow.parquet as pq

    removed: dict[str, int] = {}
    for table, stale in stale_ids(index).items():
        n = 0
        for f in idx.list_files(index, table) if stale else []:
            m = idx.PART_RE.search(f)
            if m:
                if m.group(1) in stale:
                    idx.remove(f)
                    n += 1
                continue
            ids = idx.compacted_ids(f)
            hit = stale.intersection(ids)
            if not hit:
                continue
            with storage.open_file(f) as fh:
                t = pq.read_table(fh)
            keep_ids = sorted(set(ids) - hit)
            t = t.filter(pc.invert(pc.is_in(t.column("video_id"), value_set=pa.array(sorted(hit)))))
            meta = dict(t.schema.metadata or {})
            meta[b"exvad.video_ids"] = json.dumps(keep_ids).encode()
            digest = hashlib.sha1("\n".join(keep_ids).encode()).hexdigest()[:16]
            target = f"{f.rsplit('/', 1)[0]}/{idx.COMPACT_PREFIX}{digest}.parquet"
            if keep_ids:
                idx.write_table_file(target, t.replace_schema_metadata(meta))
            if target != f:
                idx.remove(f)
            n += len(hit)
        removed[table] = n
    return removed
