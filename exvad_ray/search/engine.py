"""The query engine: DuckDB over the index's hive-partitioned `segments` Parquet, at any storage URI.

Why this shape:
- Partition pruning is done here, on the file list: the files of `segments/class=/date=/camera=` are
  listed once per `SegmentIndex` (cached; `refresh()` relists), and only those whose partition values
  can match the filters are handed to DuckDB (`read_parquet(?)`), so a narrow query opens few files.
  A Delta `segments` created by date and camera keeps `class` in its files (a camera-day compacts to
  one file): there the class is filtered on the rows (`label`, as on every layout) and only a path's
  own values prune; the hive values are read as text without naming them
  (`hive_types_autocast = false`: DuckDB refuses a hive type for a column that is not a folder).
  A `--like` or a segment lookup opens only `part-<video_id>.parquet` files (the id names the file).
- Every value that comes from a user travels as a bound parameter (`?`); the SQL text is built only
  from fixed fragments chosen by which filters are set. No user text is ever spliced into SQL.
- `s3://` indexes are read through the job's own fsspec filesystem registered in DuckDB
  (`register_filesystem`), so no DuckDB extension (httpfs) is needed and the same credentials apply.
- Similarity ranking is exact (cosine in SQL over the filtered rows); `exvad_ray.search.vectors`
  adds an approximate sidecar for very large indexes.
- A file that vanished (compaction replaces part files while a page serves) or cannot be parsed
  must not stop search: a failed scan probes its files, skips the unreadable ones (named in
  `last_unreadable` for the caller's banner and audit row), answers from the rest, and relists the
  table before the next query, so a long-lived page follows the index without a restart.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from exvad_ray import storage
from exvad_ray.errors import ExvadError
from exvad_ray.index.scorings import EVIDENCE
from exvad_ray.search.sql import HIVE_OPTIONS, run_sql

PARTS = ("class", "date", "camera")
#: columns a result has (besides `similarity` when ranked by similarity, `thumbnail_jpeg` on request)
RESULT_COLUMNS = ("segment_id", "video_id", "uri", "label", "score", "class_score", "start_s", "end_s",
                  "peak_s", "start_at", "end_at", "explanation", "camera", "date")
#: why a segment was flagged (docs/CONTRACTS.md "evidence"): results of a rescoring carry these too
#: (null without a normality model, or in files written before they existed); "process" results do not
EVIDENCE_COLUMNS = tuple(f.name for f in EVIDENCE)
# the `videos` columns a video's page shows: all but the embeddings (a vector per window)
VIDEO_COLUMNS = "COLUMNS(lambda c: c NOT LIKE '%embedding%')"
VISUAL_WEIGHT = 0.5  # weight of the visual embedding in text similarity when the profile is aligned
#: videos longer than this may put a segment's start on a later day than its date partition
MAX_VIDEO_DAYS = 1


class SearchError(ExvadError):
    """A query that cannot run as given (unknown class, malformed time, unknown segment, no index)."""


@dataclasses.dataclass(frozen=True)
class Query:
    """A search. Empty filters match everything; `text` and `like` choose similarity ranking."""

    classes: tuple[str, ...] = ()
    min_score: float | None = None
    max_score: float | None = None
    since: dt.datetime | None = None  # start_at >= since (segments with an unknown time never match)
    until: dt.datetime | None = None  # start_at < until
    cameras: tuple[str, ...] = ()
    prefix: str | None = None  # uri starts with this
    video_id: str | None = None
    detector: str | None = None  # videos.detector (checkpoint URI or zero-shot:<label set>)
    text: str | None = None
    like: str | None = None  # a segment id
    limit: int = 50

    def describe(self) -> dict[str, Any]:
        """JSON-safe form (audit log)."""
        out = {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, (), "")}
        return json.loads(json.dumps(out, default=str))


def parse_time(value: str | dt.datetime | dt.date | None, name: str = "time") -> dt.datetime | None:
    """ISO 8601 date or date-time; naive values are UTC. A malformed value is a one-line error."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc)
    text = str(value).strip()
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SearchError(f"malformed {name} {text!r}: use ISO 8601, e.g. 2026-11-24 or 2026-11-24T22:00:00") from None
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def _part_id(path: str) -> str | None:
    m = re.search(r"/part-([0-9a-f-]{36})[^/]*\.parquet$", path)
    return m.group(1) if m else None


def _hive_values(path: str) -> dict[str, str]:
    return dict(m.groups() for m in re.finditer(r"(?:^|/)(class|date|camera)=([^/]+)", path))


class SegmentIndex:
    """The flagged segments of one index, for notebooks, the CLI and the web page.

    >>> SegmentIndex("s3://idx/run1").search(classes=["Fighting"], min_score=0.8).to_pandas()
    """

    def __init__(self, uri: str, profile: str | None = None, use_sidecar: bool = True, scoring: str | None = None,
                 list_ttl_s: float | None = None):
        """`list_ttl_s`: relist the files when the listing is older (a long-lived page; None: list once)."""
        self.uri = storage.normalize(uri).rstrip("/")
        self.list_ttl_s = list_ttl_s
        self._listed_at = 0.0
        self.use_sidecar = use_sidecar
        self._scoring = scoring
        self._profile = profile
        self._files: list[tuple[str, dict[str, str]]] | None = None
        self._con: Any = None
        self._encoder: Any = None
        self._stale = False  # a scan found the listing out of date: relist before the next query
        # how a calibrated scoring's segments of equal score are ordered by their surprise: "direct", "union"
        # (by name: some files lack the column) or "none" (no file has it); learnt at the first search
        self._surprise_order: str | None = None
        self._bad: dict[str, str] = {}  # file -> why it cannot be read (skipped until it leaves the listing)
        #: files the last query (search, segment, video, snippets) had to skip, file -> reason
        self.last_unreadable: dict[str, str] = {}

    # ---- storage ---------------------------------------------------------------------------
    @property
    def con(self) -> Any:
        if self._con is None:
            import duckdb

            con = duckdb.connect()
            con.execute("SET enable_progress_bar = false")
            if storage.is_remote(self.uri):
                fs, _ = storage.filesystem(self.uri)
                con.register_filesystem(fs)
            self._con = con
        return self._con

    def _list(self, table: str) -> list[str]:
        from exvad_ray.index.store import list_files

        return list_files(self.uri, table)

    @functools.cached_property
    def in_blocks(self) -> bool:
        """A Delta index: its files hold blocks of videos under names that say nothing of them."""
        from exvad_ray.index.store import is_delta_index

        return is_delta_index(self.uri)

    def _may_hold(self, path: str, video_ids: set[str]) -> bool:
        """Whether a table file may hold rows of these videos: a per-video file only its own, a
        compacted file or a Delta file any."""
        if self.in_blocks or not os.path.basename(path).startswith("part-"):
            return True
        return _part_id(path) in video_ids

    @functools.cached_property
    def columns(self) -> set[str]:
        """Columns of the segments files (an index of schema v1 names the visual vector `embedding`)."""
        rel = self._read("DESCRIBE SELECT * FROM read_parquet(?)", [f for f, _ in self.files if f not in self._bad][:8])
        return set(rel.column(0).to_pylist())

    def _vector_column(self, name: str) -> str:
        from exvad_ray.index.schemas import renamed_columns

        if name in self.columns:
            return name
        for version in (1,):
            old = renamed_columns("segments", version).get(name)
            if old and old in self.columns:
                return old
        raise SearchError(f"{self.uri}: segments have no {name} column")

    def refresh(self) -> None:
        """Forget the cached file list (call after a run added videos) and which files were unreadable."""
        self._relist()
        self._bad.clear()

    def _relist(self) -> None:
        self._files = None
        self._stale = False
        self.__dict__.pop("videos", None)
        self.__dict__.pop("columns", None)
        self.__dict__.pop("superseded", None)
        self.__dict__.pop("in_blocks", None)
        self.__dict__.pop("file_classes", None)
        self.__dict__.pop("label_set_classes", None)

    def begin_query(self) -> None:
        """Start of a caller's request (the page's): `last_unreadable` counts from here."""
        self.last_unreadable = {}

    def _probe(self, files: Sequence[str]) -> dict[str, str]:
        """Which of `files` cannot be opened as Parquet (vanished, truncated, not Parquet): file -> reason."""
        import duckdb

        bad = {}
        for f in files:
            try:
                run_sql(self.con, "SELECT count(*) AS n FROM parquet_metadata(?)", [f])
            except duckdb.Error as exc:
                bad[f] = str(exc).splitlines()[0][:300]
        return bad

    def _read(self, sql: str, files: list[str], pre: Sequence[Any] = (), post: Sequence[Any] = (),
              empty: pa.Table | Callable[[], pa.Table] | None = None) -> pa.Table:
        """`sql` with `read_parquet(?)` over `files` (bound between `pre` and `post`), skipping files
        that cannot be read: on a failed scan the files are probed, the unreadable ones recorded in
        `last_unreadable` and left out (the listing is relisted before the next query), and the
        statement runs again over the rest (none left: `empty`). An error no file explains is raised
        as it was."""
        import duckdb

        known = [f for f in files if f in self._bad]
        if known:
            self.last_unreadable.update({f: self._bad[f] for f in known})
            files = [f for f in files if f not in self._bad]
        while files:
            try:
                return run_sql(self.con, sql, [*pre, files, *post])
            except duckdb.Error:
                bad = self._probe(files)
                if not bad:
                    raise
            self._bad.update(bad)
            self.last_unreadable.update(bad)
            self._stale = True
            files = [f for f in files if f not in bad]
        if empty is not None:
            return empty() if callable(empty) else empty
        raise SearchError(f"no readable files left in {self.uri} for this query "
                          f"({len(self.last_unreadable)} unreadable)")

    @functools.cached_property
    def scoring(self) -> str:
        """Which detector scoring's segments are searched: "process" (the index's own `segments`),
        or a rescoring in ``INDEX/scorings/<id>/`` (`exvad rescore`); default the current one
        (`index.scorings.current_scoring`: the ``scorings/current`` table of a Delta index, else
        ``scorings/CURRENT.json``, else "process")."""
        if self._scoring:
            return self._scoring
        from exvad_ray.index.scorings import current_scoring

        return current_scoring(self.uri)

    def _segments_table(self) -> str:
        if self.scoring == "process":
            return "segments"
        if not re.fullmatch(r"[A-Za-z0-9._-]+", self.scoring) or not self._list(f"scorings/{self.scoring}/segments") \
                and not storage.exists(storage.join(self.uri, "scorings", self.scoring, "scoring.json")):
            raise SearchError(f"unknown scoring {self.scoring!r} in {self.uri}")
        return f"scorings/{self.scoring}/segments"

    @property
    def files(self) -> list[tuple[str, dict[str, str]]]:
        if self._stale or (self._files is not None and self.list_ttl_s is not None
                           and time.monotonic() - self._listed_at > self.list_ttl_s):
            self._relist()  # a scan met a vanished or damaged file, or the listing is old: list again
        if self._files is None:
            files = self._list(self._segments_table())
            if not files and not self._list("videos"):
                raise SearchError(f"no index at {self.uri} (no videos/ or segments/ table there)")
            gone = self.superseded
            self._files = [(f, _hive_values(f[len(self.uri):].split("/segments/", 1)[-1])) for f in files
                           if not (gone and _part_id(f) in gone)]
            self._listed_at = time.monotonic()
            listed = set(files)  # a damaged segments file that left the listing is no longer news
            self._bad = {f: why for f, why in self._bad.items() if f in listed or "/segments/" not in f}
        return self._files

    @functools.cached_property
    def superseded(self) -> set[str]:
        """Ids of videos whose content was replaced (tombstones ``INDEX/superseded/<id>.json``, written
        by the archive job): their rows are not served, as `index.read_table` does not serve them."""
        fs, path = storage.filesystem(storage.join(self.uri, "superseded"))
        try:
            names = fs.ls(path, detail=False) if fs.exists(path) else []
        except FileNotFoundError:
            return set()
        return {os.path.basename(n)[:-len(".json")] for n in names if n.endswith(".json")}

    @functools.cached_property
    def videos(self) -> pa.Table:
        """The small `videos` table (without embeddings): classes known, detectors, recording times."""
        files = self._list("videos")
        if not files:
            return pa.table({"video_id": pa.array([], pa.string())})
        return self._read(f"SELECT {VIDEO_COLUMNS} FROM read_parquet(?, hive_partitioning = "
                          "true, union_by_name = true, hive_types = {'date': 'VARCHAR', 'camera': 'VARCHAR'})", files,
                          empty=pa.table({"video_id": pa.array([], pa.string())}))

    # ---- vocabulary --------------------------------------------------------------------------
    def known_classes(self) -> list[str]:
        names: set[str] = set(self.label_set_classes)
        names.update(v["class"] for _, v in self.files if "class" in v)
        names.update(self.file_classes)
        return sorted(names - {"Normal"})

    @functools.cached_property
    def label_set_classes(self) -> set[str]:
        """The classes the videos were scored with (their `class_names`), that one column read with
        DISTINCT: the whole `videos` table in memory was 1.1 GB at 1e5 videos, this 280 MB."""
        import duckdb

        files = self._list("videos")
        if not files:
            return set()
        empty = pa.table({"c": pa.array([], pa.string())})
        for options in ("", ", union_by_name = true"):  # by name (slower, 4x the memory) only for mixed schemas
            try:
                rows = self._read(f"SELECT DISTINCT unnest(class_names) AS c FROM read_parquet(?{options})",
                                  files, empty=empty)
                return {c for c in rows.column(0).to_pylist() if c}
            except duckdb.BinderException:  # a file without the column
                continue
        return set()

    def video_rows(self, video_ids: Sequence[str], columns: str = VIDEO_COLUMNS) -> pa.Table:
        """The `videos` rows of these videos only (`columns`: a SELECT list). On a Delta index the
        files holding them come from the id cache (`index.idmap`), on the per-video layout from
        the files' names; only those files are read."""
        wanted = sorted(set(video_ids))
        empty = pa.table({"video_id": pa.array([], pa.string())})
        if not wanted:
            return empty
        if self.in_blocks:
            from exvad_ray.index import idmap

            snap, rows = idmap.iter_positions(self.uri, "videos")
            keep = pa.array(wanted, pa.string())
            pos = sorted({int(p) for ps, ids in rows
                          for p in ps[pc.is_in(ids, value_set=keep).to_numpy(zero_copy_only=False)]})
            files = [snap.uri(p) for p in pos]
        else:
            files = [f for f in self._list("videos") if self._may_hold(f, set(wanted))]
        if not files:
            return empty
        return self._read(f"SELECT {columns} FROM read_parquet(?, hive_partitioning = true, union_by_name = true, "
                          "hive_types = {'date': 'VARCHAR', 'camera': 'VARCHAR'}) "
                          "WHERE video_id IN (SELECT unnest(?::VARCHAR[]))", files, post=[wanted], empty=empty)

    def detector_video_ids(self, detector: str) -> list[str]:
        """Ids of the videos scored by `detector` (the `detector` column alone, filtered in the scan)."""
        files = self._list("videos")
        if not files:
            return []
        empty = pa.table({"video_id": pa.array([], pa.string())})
        rows = self._read("SELECT video_id FROM read_parquet(?) WHERE detector = ?", files, post=[detector], empty=empty)
        return rows.column(0).to_pylist()

    @functools.cached_property
    def file_classes(self) -> set[str]:
        """The classes of the segments files whose path names none (a Delta `segments` created by
        date and camera keeps `class` in its files): that one column read, once per listing."""
        inside = [f for f, v in self.files if "class" not in v and f not in self._bad]
        if not inside:
            return set()
        empty = pa.table({"class": pa.array([], pa.string())})
        rows = self._read(f"SELECT DISTINCT class FROM read_parquet(?, {HIVE_OPTIONS})", inside, empty=empty)
        return {c for c in rows.column(0).to_pylist() if c}

    def _canonical_classes(self, classes: Sequence[str]) -> list[str]:
        known = {c.lower(): c for c in self.known_classes()}
        out = []
        for c in classes:
            if c.lower() not in known:
                raise SearchError(f"unknown class {c!r}; known classes: {', '.join(sorted(known.values())) or 'none'}")
            out.append(known[c.lower()])
        return out

    # ---- query building ----------------------------------------------------------------------
    def _prune(self, q: Query, classes: list[str], video_ids: Sequence[str] | None = None) -> list[str]:
        from exvad_ray.index.partitions import sanitize

        want_class = {sanitize(c) for c in classes}
        lo = (q.since - dt.timedelta(days=MAX_VIDEO_DAYS)).date().isoformat() if q.since else None
        hi = q.until.date().isoformat() if q.until else None
        vids = set(video_ids) if video_ids else None
        out = []
        for f, parts in self.files:
            if want_class and "class" in parts and parts["class"] not in want_class:
                continue  # a class folder (a path without one: the rows are filtered by `_where`)
            if q.cameras and parts.get("camera") not in q.cameras:
                continue
            d = parts.get("date")
            if d and ((lo and d < lo) or (hi and d > hi)):
                continue
            if vids is not None and not self._may_hold(f, vids):
                continue
            out.append(f)
        return out

    def _where(self, q: Query, classes: list[str]) -> tuple[list[str], list[Any]]:
        """Fixed SQL fragments and their bound values (user input only ever in `params`)."""
        clauses: list[str] = []
        params: list[Any] = []
        if classes:
            clauses.append("label IN (SELECT unnest(?::VARCHAR[]))")
            params.append(classes)
        if q.min_score is not None:
            clauses.append("score >= ?")
            params.append(float(q.min_score))
        if q.max_score is not None:
            clauses.append("score <= ?")
            params.append(float(q.max_score))
        if q.since is not None:
            clauses.append("start_at >= ?")
            params.append(q.since)
        if q.until is not None:
            clauses.append("start_at < ?")
            params.append(q.until)
        if q.cameras:
            clauses.append("camera IN (SELECT unnest(?::VARCHAR[]))")
            params.append(list(q.cameras))
        if q.prefix:
            clauses.append("starts_with(uri, ?)")
            params.append(q.prefix)
        if q.video_id:
            clauses.append("video_id = ?")
            params.append(q.video_id)
        if self.superseded:  # rows of replaced videos inside compacted files
            clauses.append("video_id NOT IN (SELECT unnest(?::VARCHAR[]))")
            params.append(sorted(self.superseded))
        if q.detector:
            clauses.append("video_id IN (SELECT unnest(?::VARCHAR[]))")
            params.append(self.detector_video_ids(q.detector))
        return clauses, params

    def _scan(self, files: list[str], select: str, clauses: list[str], params: list[Any], order: str,
              limit: int | None, pre: list[Any] = (), union: bool = False) -> pa.Table:
        """`union`: columns by name across files (a rescoring's older files lack the evidence columns)."""
        sql = f"SELECT {select} FROM read_parquet(?, {HIVE_OPTIONS}{', union_by_name = true' if union else ''})"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += f" ORDER BY {order}"
        post = list(params)
        if limit is not None:
            sql += " LIMIT ?"
            post.append(int(limit))
        if len(files) > 64 and not self._bad and self._files is not None and len(files) == len(self._files) \
                and not self.in_blocks:
            # nothing pruned: a glob lets DuckDB list and read in parallel (faster than a long list);
            # never on Delta, whose folder also holds files no longer in the snapshot (until vacuum)
            import duckdb

            try:
                return run_sql(self.con, sql, [*pre, storage.join(self.uri, self._segments_table(), "**", "*.parquet"),
                                               *post])
            except duckdb.Error:
                pass  # a file vanished or is damaged: the list below finds and skips it

        def nothing_left() -> pa.Table:  # every file of this query is unreadable: no rows, same columns
            readable = self._any_file()
            if readable[0] in self._bad:
                raise SearchError(f"no readable segments file in {self.uri} ({len(self._bad)} unreadable)")
            return self._read(sql.replace(" WHERE ", " WHERE false AND ", 1) if clauses else
                              sql.replace(f" ORDER BY {order}", f" WHERE false ORDER BY {order}"), readable, pre, post)

        return self._read(sql, files, pre, post, empty=nothing_left)

    # ---- public API ----------------------------------------------------------------------------
    def search(self, query: Query | None = None, *, thumbnails: bool = False, evidence: bool = True,
               **filters: Any) -> pa.Table:
        """Segments matching the filters, best first (by score, or by similarity to `text`/`like`).

        Keyword filters: classes, min_score, max_score, since, until (ISO strings or datetimes),
        cameras, prefix, video_id, detector, text, like, limit. Returns a pyarrow.Table
        (`.to_pandas()` for a DataFrame). Results of a rescoring also carry `EVIDENCE_COLUMNS`
        (`evidence=False` leaves them out)."""
        q = make_query(query, **filters)
        table = self._search(q, thumbnails)
        return self.with_evidence(table) if evidence else table

    def _search(self, q: Query, thumbnails: bool) -> pa.Table:
        classes = self._canonical_classes(q.classes)
        cols = ", ".join(RESULT_COLUMNS) + (", thumbnail_jpeg" if thumbnails else "")
        clauses, params = self._where(q, classes)
        files = self._prune(q, classes, [q.video_id] if q.video_id else None)
        if (q.like or q.text) and not thumbnails and self.use_sidecar:
            from exvad_ray.search.vectors import load_sidecar

            sidecar = load_sidecar(self)
            if sidecar is not None:
                return self._search_sidecar(sidecar, q, classes)
        if q.like:
            vis = self._vector_column("visual_embedding")
            target = self.segment(q.like, columns=[vis])
            vec = [float(x) for x in (target[vis] or [])]
            if not vec:
                raise SearchError(f"segment {q.like!r} has no visual embedding to compare with")
            select = f"{cols}, list_cosine_similarity({vis}, ?::FLOAT[]) AS similarity"
            pre: list[Any] = [vec]
        elif q.text:
            qvec, aligned = self.embed_text(q.text)
            vis = self._vector_column("visual_embedding")
            has_text = "explanation_embedding" in self.columns
            if not has_text and not aligned:
                raise SearchError(f"{self.uri} holds no explanation embeddings (an older index): text search "
                                  "needs the index rebuilt by this version's `exvad process`")
            terms = (["coalesce(list_cosine_similarity(explanation_embedding, ?::FLOAT[]), 0)"] if has_text else []) + \
                ([f"{VISUAL_WEIGHT if has_text else 1.0} * coalesce(list_cosine_similarity({vis}, ?::FLOAT[]), 0)"]
                 if aligned else [])
            weight = (1.0 if has_text else 0.0) + ((VISUAL_WEIGHT if has_text else 1.0) if aligned else 0.0)
            select = f"{cols}, ({' + '.join(terms)}) / {weight} AS similarity"
            pre = [qvec] * len(terms)
        else:
            select, pre = cols, []
        if not files:
            return self._scan(self._any_file(), select, ["false"], [], "segment_id", 0, pre)
        if pre:
            return self._scan(files, select, clauses, params, "similarity DESC NULLS LAST, segment_id", q.limit, pre)
        if self.scoring == "process" or self._surprise_order == "none":
            return self._scan(files, select, clauses, params, "score DESC, segment_id", q.limit, pre)
        # a rescoring: segments whose float32 score rounds to 1.0 (beyond all normal footage) ordered by how far
        # beyond, when it stores their surprise; by name only when some files lack the column (written before
        # it), and plainly when none has it (a detector's scoring, an older one): tried once, then remembered
        import duckdb

        order = "score DESC, surprise DESC NULLS LAST, segment_id"
        for mode in ("union",) if self._surprise_order == "union" else ("direct", "union"):
            try:
                out = self._scan(files, select, clauses, params, order, q.limit, pre, union=mode == "union")
                self._surprise_order = mode
                return out
            except duckdb.Error:
                continue
        self._surprise_order = "none"
        return self._scan(files, select, clauses, params, "score DESC, segment_id", q.limit, pre)

    def with_evidence(self, table: pa.Table) -> pa.Table:
        """`table` (result rows) with the evidence columns appended, read for its segment ids from
        their videos' files only (a result has at most `limit` rows). A "process" scoring has no
        evidence: the table comes back unchanged. Columns a file lacks are null (union by name)."""
        if self.scoring == "process" or "segment_id" not in table.column_names:
            return table
        table = table.drop_columns([c for c in EVIDENCE_COLUMNS if c in table.column_names])
        ids = table.column("segment_id").to_pylist()
        found: dict[str, dict[str, Any]] = {}
        if ids:
            vids = {i.rsplit(":", 1)[0] for i in ids}
            files = [f for f, _ in self.files if self._may_hold(f, vids)]
            if files:
                found = self._evidence_rows(files, ids)
        for field in EVIDENCE:
            values = [found.get(i, {}).get(field.name) for i in ids]
            table = table.append_column(pa.field(field.name, field.type), pa.array(values, field.type))
        return table

    def _evidence_rows(self, files: list[str], ids: list[str]) -> dict[str, dict[str, Any]]:
        """segment_id -> its evidence values, from `files` (those without the columns give none)."""
        opts = f"{HIVE_OPTIONS}, union_by_name = true"
        empty = pa.table({"column_name": pa.array([], pa.string())})
        have = set(self._read(f"DESCRIBE SELECT * FROM read_parquet(?, {opts})", files, empty=empty)
                   .column(0).to_pylist())
        cols = [c for c in EVIDENCE_COLUMNS if c in have]
        if not cols:
            return {}
        rows = self._read(f"SELECT segment_id, {', '.join(cols)} FROM read_parquet(?, {opts}) "
                          "WHERE segment_id IN (SELECT unnest(?::VARCHAR[]))", files, post=[ids],
                          empty=pa.table({"segment_id": pa.array([], pa.string())})).to_pylist()
        return {r["segment_id"]: r for r in rows}

    def _search_sidecar(self, sidecar: Any, q: Query, classes: list[str]) -> pa.Table:
        """Similarity ranking through the vector sidecar (same filters, same result columns)."""
        if q.like:
            hit = np.flatnonzero(sidecar.segment_id == q.like)
            if not len(hit) or sidecar.video_id[hit[0]] in self.superseded:
                raise SearchError(f"unknown segment id {q.like!r}")
            queries = {"visual": sidecar.vector("visual", int(hit[0]))}
            weights = {"visual": 1.0}
        else:
            qvec, aligned = self.embed_text(q.text or "")
            v = np.asarray(qvec, np.float32)
            v = v / (np.linalg.norm(v) or 1.0)
            queries, weights = {}, {}
            if sidecar.has("text"):
                queries["text"], weights["text"] = v, 1.0
            if aligned:
                queries["visual"], weights["visual"] = v, VISUAL_WEIGHT if queries else 1.0
            if not queries:
                raise SearchError(f"{self.uri} holds no explanation embeddings: text search needs a newer index")
        ids = None
        if q.detector:
            ids = self.detector_video_ids(q.detector)
        rows, sims = sidecar.rank(sidecar.mask(q, classes, self.superseded, ids), queries, weights, q.limit)
        out = sidecar.catalog.take(pa.array(rows, pa.int64())).select(list(RESULT_COLUMNS))
        return out.append_column("similarity", pa.array(sims, pa.float64()))

    def update_vectors(self) -> dict[str, Any]:
        """Build or extend the vector sidecar (INDEX/search/) for fast --text/--like on big indexes."""
        from exvad_ray.search.vectors import update_sidecar

        return update_sidecar(self)

    def _any_file(self) -> list[str]:
        if not self.files:
            raise SearchError(f"the index at {self.uri} has no flagged segments yet")
        readable = [f for f, _ in self.files if f not in self._bad]
        return readable[:1] or [self.files[0][0]]

    def segment(self, segment_id: str, columns: Sequence[str] | None = None) -> dict[str, Any]:
        """One segment's row (all columns, or `columns`); unknown id -> SearchError."""
        video_id = segment_id.rsplit(":", 1)[0]
        files = self._prune(Query(), [], [video_id])
        select = ", ".join(columns) if columns else "*"
        if columns:
            assert all(re.fullmatch(r"[a-z_]+", c) for c in columns)  # fixed names from our code only
        clauses, params = ["segment_id = ?"], [segment_id]
        if self.superseded:
            clauses.append("video_id NOT IN (SELECT unnest(?::VARCHAR[]))")
            params.append(sorted(self.superseded))
        rescored = self.scoring != "process"  # its files may differ in the evidence columns: by name
        rows = self._scan(files, select, clauses, params, "segment_id", 1, union=rescored).to_pylist() if files else []
        if not rows:
            raise SearchError(f"unknown segment id {segment_id!r}")
        if rescored and not columns:  # every row of a rescoring has the evidence keys (null: none)
            return {**{c: None for c in EVIDENCE_COLUMNS}, **rows[0]}
        return rows[0]

    def snippet_thumbnail(self, video_id: str, snippet_index: int) -> bytes | None:
        """The stored thumbnail of one snippet of the index (the nearest normal moment a segment's
        evidence names), or None when the index has no such snippet or no thumbnail for it."""
        files = [f for f in self._list("snippets") if self._may_hold(f, {video_id})]
        if not files or video_id in self.superseded:
            return None
        import duckdb

        empty = pa.table({"thumbnail_jpeg": pa.array([], pa.binary())})
        try:
            rows = self._read("SELECT thumbnail_jpeg FROM read_parquet(?, hive_partitioning = true, union_by_name = "
                              "true, hive_types = {'date': 'VARCHAR', 'camera': 'VARCHAR'}) WHERE video_id = ? AND "
                              "snippet_index = ? LIMIT 1", files, post=[video_id, int(snippet_index)], empty=empty)
        except duckdb.BinderException:  # an index of schema v1: snippets without thumbnails
            return None
        if "thumbnail_jpeg" not in rows.column_names or not rows.num_rows:
            return None
        return rows.column("thumbnail_jpeg")[0].as_py() or None

    def video(self, video_id: str) -> dict[str, Any]:
        rows = self.video_rows([video_id]).to_pylist()
        if not rows:
            raise SearchError(f"unknown video id {video_id!r}")
        return rows[0]

    def snippets(self, video_id: str) -> pa.Table:
        """A video's per-snippet scores (start_s, anomaly_score, class_probs), in time order."""
        files = [f for f in self._list("snippets") if self._may_hold(f, {video_id})]
        if not files:
            return pa.table({"start_s": pa.array([], pa.float64())})
        return self._read("SELECT snippet_index, start_s, end_s, anomaly_score, class_probs FROM read_parquet(?, "
                          "hive_partitioning = true, union_by_name = true, hive_types = {'date': 'VARCHAR', "
                          "'camera': 'VARCHAR'}) WHERE video_id = ? ORDER BY snippet_index", files, post=[video_id],
                          empty=pa.table({"start_s": pa.array([], pa.float64())}))

    def video_segments(self, video_id: str) -> pa.Table:
        return self.search(video_id=video_id, limit=100000)

    # ---- text encoder ----------------------------------------------------------------------------
    def profile_name(self) -> str:
        """The model profile the index was built with (from its run manifests), unless given."""
        if self._profile:
            return self._profile
        from exvad_ray.index.runs import read_manifests  # JSON files and a Delta index's run_log

        try:
            docs = read_manifests(self.uri)
        except ExvadError:
            docs = []
        for doc in reversed(docs):  # the newest first start first
            name = (doc.get("args") or {}).get("profile")
            if name:
                return str(name)
        raise SearchError(f"cannot tell which model profile built {self.uri} (no run manifest); pass profile=")

    def embed_text(self, text: str) -> tuple[list[float], bool]:
        """The query's embedding with the profile's text encoder, and whether the profile's text and
        visual spaces are aligned (CLIP: same encoder family and dimension), so that the visual
        embeddings can be compared with it too."""
        if self._encoder is None:
            from exvad_ray.models.stages import TextEmbeddingStage

            self._encoder = TextEmbeddingStage(self.profile_name())
        out = self._encoder({"explanation": np.array([text], dtype=object)})
        if out.get("error") is not None and out["error"][0]:
            raise SearchError(f"cannot embed the text query: {out['error'][0]}")
        vec = np.asarray(out[self._encoder.output_column][0], np.float32)
        return vec.tolist(), self._aligned(len(vec))

    def _aligned(self, text_dim: int) -> bool:
        aligned = getattr(self._encoder.profile, "aligned", None)
        if aligned is None:  # the profile's encoders say whether text and image share a space (lite: no)
            aligned = getattr(self._encoder.model, "aligned", None)
        if aligned is not None:
            return bool(aligned)
        vis = self._vector_column("visual_embedding")
        sample = self._scan(self._any_file(), f"len({vis}) AS d", [], [], "d", 1).column("d").to_pylist()
        return bool(sample) and sample[0] == text_dim


def make_query(query: Query | None = None, **filters: Any) -> Query:
    """A Query from keyword filters (strings accepted where a CLI or a form gives strings)."""
    if query is not None and filters:
        query = dataclasses.replace(query, **filters)
    elif query is None:
        unknown = set(filters) - {f.name for f in dataclasses.fields(Query)}
        if unknown:
            raise SearchError(f"unknown search filter(s): {', '.join(sorted(unknown))}")
        query = Query(**filters)

    def tup(v: Any) -> tuple[str, ...]:
        if v is None:
            return ()
        return (v,) if isinstance(v, str) else tuple(str(x) for x in v)

    q = dataclasses.replace(
        query, classes=tup(query.classes), cameras=tup(query.cameras),
        since=parse_time(query.since, "--since"), until=parse_time(query.until, "--until"),
        text=(query.text or None), like=(query.like or None), prefix=(query.prefix or None),
        video_id=(query.video_id or None), detector=(query.detector or None))
    if q.text and q.like:
        raise SearchError("give either a text query or --like, not both")
    if not (1 <= int(q.limit) <= 100000):
        raise SearchError(f"limit must be between 1 and 100000, got {q.limit}")
    for name in ("min_score", "max_score"):
        v = getattr(q, name)
        if v is not None and not (0.0 <= float(v) <= 1.0):
            raise SearchError(f"{name} must be between 0 and 1, got {v}")
    return q
