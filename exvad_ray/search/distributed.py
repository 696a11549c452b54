"""`exvad search --ray`: the same query as a Ray Data job, for scans no single machine should do.

The driver does what is cheap (prune the file list by partition, resolve classes, embed the text or
fetch the `--like` vector); Ray Data reads the files in parallel tasks, each filtering its rows and
keeping its best `limit` (by score or by similarity); the driver merges those with the same order as
the embedded engine (value descending, then segment id), so both give the same segments.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from exvad_ray.search.engine import RESULT_COLUMNS, VISUAL_WEIGHT, Query, SegmentIndex, _hive_values, make_query


def _cos(col: pa.ChunkedArray | pa.Array, v: np.ndarray) -> np.ndarray:
    """Cosine of each row's vector with `v` (0 where the row has none)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    lengths = np.asarray(arr.value_lengths().fill_null(0))
    out = np.zeros(len(arr))
    ok = lengths == len(v)
    if ok.any():
        m = np.asarray(arr.filter(pa.array(ok)).flatten(), np.float64).reshape(-1, len(v))
        norms = np.linalg.norm(m, axis=1) * (np.linalg.norm(v) or 1.0)
        out[ok] = (m @ v) / np.where(norms == 0, 1.0, norms)
    return out


def _mask(t: pa.Table, q: Query, classes: list[str], gone: list[str], video_ids: list[str] | None) -> pa.Array:
    m = pa.array(np.ones(t.num_rows, bool))
    conds = []
    if classes:
        conds.append(pc.is_in(t["label"], value_set=pa.array(classes)))
    if q.min_score is not None:
        conds.append(pc.greater_equal(t["score"], pa.scalar(float(q.min_score), pa.float32())))
    if q.max_score is not None:
        conds.append(pc.less_equal(t["score"], pa.scalar(float(q.max_score), pa.float32())))
    if q.since is not None:
        conds.append(pc.greater_equal(t["start_at"], pa.scalar(q.since, t["start_at"].type)))
    if q.until is not None:
        conds.append(pc.less(t["start_at"], pa.scalar(q.until, t["start_at"].type)))
    if q.cameras:
        conds.append(pc.is_in(t["camera"], value_set=pa.array(list(q.cameras))))
    if q.prefix:
        conds.append(pc.starts_with(t["uri"], q.prefix))
    if q.video_id:
        conds.append(pc.equal(t["video_id"], q.video_id))
    if video_ids is not None:
        conds.append(pc.is_in(t["video_id"], value_set=pa.array(video_ids, pa.string())))
    if gone:
        conds.append(pc.invert(pc.is_in(t["video_id"], value_set=pa.array(gone, pa.string()))))
    for c in conds:
        m = pc.and_(m, pc.fill_null(c, False))
    return m


def _top(t: pa.Table, key: str, limit: int) -> pa.Table:
    if t.num_rows == 0:
        return t
    order = np.lexsort((np.asarray(t["segment_id"].to_pylist(), object).astype(str), -t[key].to_numpy().astype(np.float64)))
    return t.take(pa.array(order[:limit]))


def search_ray(index: str, query: Query | None = None, profile: str | None = None, **filters: Any) -> pa.Table:
    """The query run as a Ray Data job over the index's (pruned) segment files; same result as
    `SegmentIndex(index).search(...)`. Uses the running Ray cluster or starts a local one."""
    import ray

    ix = SegmentIndex(index, profile=profile, use_sidecar=False)
    q = make_query(query, **filters)
    classes = ix._canonical_classes(q.classes)
    files = ix._prune(q, classes, [q.video_id] if q.video_id else None)
    vectors: dict[str, np.ndarray] = {}
    weights: dict[str, float] = {}
    vis = ix._vector_column("visual_embedding") if files else "visual_embedding"
    if q.like:
        vectors["visual"] = np.asarray(ix.segment(q.like, columns=[vis])[vis], np.float64)
        weights["visual"] = 1.0
    elif q.text:
        qvec, aligned = ix.embed_text(q.text)
        if "explanation_embedding" in ix.columns:
            vectors["text"], weights["text"] = np.asarray(qvec, np.float64), 1.0
        if aligned:
            vectors["visual"], weights["visual"] = np.asarray(qvec, np.float64), VISUAL_WEIGHT if vectors else 1.0
    video_ids = None
    if q.detector:
        video_ids = ix.detector_video_ids(q.detector)
    gone = sorted(ix.superseded)
    key = "similarity" if vectors else "score"
    empty = _result_schema(key == "similarity").empty_table()
    if not files:
        return empty
    limit = int(q.limit)
    base = ix.uri  # the task closure must not capture `ix` (its DuckDB connection does not pickle)

    def per_file(row: dict[str, Any]) -> list[dict[str, Any]]:
        import pyarrow.parquet as pq

        from exvad_ray import storage

        uri = row["file"]
        parts = _hive_values(uri[len(base):].split("/segments/", 1)[-1])
        with storage.open_file(uri) as f:
            t = pq.read_table(f)
        n = t.num_rows
        for name in ("class", "date", "camera"):
            if name not in t.column_names:
                t = t.append_column(name, pa.array([parts.get(name)] * n, pa.string()))
        t = t.filter(_mask(t, q, classes, gone, video_ids))
        if vectors:
            sims = sum(w * _cos(t[vis if name == "visual" else "explanation_embedding"], vectors[name])
                       for name, w in weights.items()) / sum(weights.values())
            t = t.append_column("similarity", pa.array(np.asarray(sims, np.float64)))
        t = _top(t.select(list(RESULT_COLUMNS) + (["similarity"] if vectors else [])), key, limit)
        return t.to_pylist()

    if not ray.is_initialized():
        ray.init()
    ds = ray.data.from_items([{"file": f} for f in files]).flat_map(per_file)
    rows = ds.take_all()
    if not rows:
        return empty
    table = pa.Table.from_pylist(rows).cast(_result_schema(key == "similarity"))
    return _top(table, key, limit)


def _result_schema(with_similarity: bool) -> pa.Schema:
    from exvad_ray.index.schemas import arrow_schema

    seg = arrow_schema("segments")
    fields = [seg.field(c) if c in seg.names else pa.field(c, pa.string()) for c in RESULT_COLUMNS]
    fields = [pa.field(f.name, f.type) for f in fields]
    return pa.schema(fields + ([pa.field("similarity", pa.float64())] if with_similarity else []))

