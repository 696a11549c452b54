"""Search latency over generated indexes of 1e4..1e6 segments, and the vector-index choice.

    python bench/search.py [--sizes 10000,100000,1000000] [--dim 512] [--reps 20] [--work DIR]

For each size: a `segments` table in the archive job's layout (class=/date=/camera=, one file per
partition; clustered unit vectors as visual and explanation embeddings) and a small `videos` table.
Measured through `SegmentIndex` (the engine the CLI and page use), p50/p95 over `--reps` queries:
- filter-only: class + 3-day recording-time window + camera + min score, best 50 by score;
- text: similarity to a query vector (the text encoder's cost is measured apart) over all segments;
- like: nearest by visual embedding to an existing segment;
each also as "DuckDB full scan" (the same SQL over every file, no pruning, no sidecar) for the ratio.
At the largest size the vector-index candidates (faiss flat / HNSW, usearch HNSW, LanceDB IVF-PQ)
are compared on build time, p50/p95 and recall@10 against exact search.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

CLASSES = ["Fighting", "Fire", "CrowdRush", "FallingObject", "Arrest"]
CAMERAS = [f"cam{i:02d}" for i in range(8)]
DAYS = 30
START = dt.datetime(2026, 10, 1, tzinfo=dt.timezone.utc)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def vec_col(x: np.ndarray) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(x.ravel(), pa.float32()), x.shape[1]).cast(pa.list_(pa.float32()))


def generate(root: str, n: int, dim: int, seed: int = 0) -> dict[str, Any]:
    """Write the index; returns the centres used (for queries) and a sample of segment vectors."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((256, dim)))
    parts = [(c, d, cam) for c in CLASSES for d in range(DAYS) for cam in CAMERAS]
    per = np.full(len(parts), n // len(parts))
    per[: n - per.sum()] += 1
    sample_ids, sample_vecs, video_rows = [], [], []
    k = 0
    for (cls, day, cam), m in zip(parts, per):
        if m == 0:
            continue
        date = (START + dt.timedelta(days=day)).date().isoformat()
        vids = [f"{(k + i) // 4:08x}-0000-5000-8000-{day:04d}{CAMERAS.index(cam):08d}" for i in range(m)]
        ids = [f"{v}:{i}" for i, v in enumerate(vids)]
        which = rng.integers(0, len(centres), m)
        vis = unit(centres[which] + 0.35 * rng.standard_normal((m, dim)).astype(np.float32))
        txt = unit(centres[which] + 0.5 * rng.standard_normal((m, dim)).astype(np.float32))
        start_s = rng.uniform(0, 3000, m)
        start_at = [START + dt.timedelta(days=day, seconds=float(s)) for s in rng.uniform(0, 86000, m)]
        table = pa.table({
            "segment_id": ids, "video_id": vids, "uri": [f"s3://archive/{cam}/{date}/{v}.mp4" for v in vids],
            "label": [cls] * m, "score": pa.array(rng.uniform(0.5, 1.0, m), pa.float32()),
            "class_score": pa.array(rng.uniform(0.2, 0.9, m), pa.float32()),
            "start_s": start_s, "end_s": start_s + rng.uniform(0.6, 20, m), "first_snippet": pa.array(np.zeros(m, np.int32)),
            "last_snippet": pa.array(np.ones(m, np.int32)), "peak_s": start_s,
            "start_at": pa.array(start_at, pa.timestamp("us", tz="UTC")),
            "end_at": pa.array([t + dt.timedelta(seconds=10) for t in start_at], pa.timestamp("us", tz="UTC")),
            "explanation": [f"segment {i} of class {cls}" for i in range(m)],
            "thumbnail_jpeg": pa.array([None] * m, pa.binary()),
            "visual_embedding": vec_col(vis), "explanation_embedding": vec_col(txt),
        })
        folder = os.path.join(root, "segments", f"class={cls}", f"date={date}", f"camera={cam}")
        os.makedirs(folder, exist_ok=True)
        pq.write_table(table, os.path.join(folder, f"compact-{k:08d}.parquet"), compression="zstd", row_group_size=32768)
        if len(sample_ids) < 2000:
            sample_ids.extend(ids[:8])
            sample_vecs.append(vis[:8])
        video_rows.append({"video_id": vids[0], "uri": f"s3://archive/{cam}/{date}/{vids[0]}.mp4", "name": vids[0],
                           "class_names": ["Normal", *CLASSES], "detector": "zero-shot:bench", "fps": 25.0,
                           "camera": cam, "date": date})
        k += m
    os.makedirs(os.path.join(root, "videos", "date=2026-10-01", "camera=cam00"), exist_ok=True)
    vt = pa.Table.from_pylist([{k_: v for k_, v in r.items() if k_ not in ("camera", "date")} for r in video_rows])
    pq.write_table(vt, os.path.join(root, "videos", "date=2026-10-01", "camera=cam00", "compact-0.parquet"))
    return {"centres": centres, "sample_ids": sample_ids, "sample_vecs": np.concatenate(sample_vecs)}


def pct(xs: list[float]) -> tuple[float, float]:
    return float(np.percentile(xs, 50)), float(np.percentile(xs, 95))


def timed(fn: Any, reps: int) -> tuple[float, float]:
    fn(0)  # warm (file listing, DuckDB metadata cache)
    out = []
    for i in range(reps):
        t = time.perf_counter()
        fn(i + 1)
        out.append(time.perf_counter() - t)
    return pct(out)


def full_scan(ix: Any, select: str, where: str, params: list[Any], order: str, pre: list[Any]) -> Any:
    from exvad_ray.search.engine import run_sql

    glob = os.path.join(ix.uri, "segments", "**", "*.parquet")
    sql = (f"SELECT {select} FROM read_parquet(?, hive_partitioning = true, hive_types = {{'class': 'VARCHAR', "
           f"'date': 'VARCHAR', 'camera': 'VARCHAR'}}) {where} ORDER BY {order} LIMIT 50")
    return run_sql(ix.con, sql, [*pre, glob, *params])


def bench_size(root: str, n: int, meta: dict[str, Any], reps: int, rng: np.random.Generator,
               only: tuple[str, ...] = ("filter", "filter_full_scan", "text", "text_full_scan", "like", "sidecar")
               ) -> dict[str, float]:
    from exvad_ray.search.engine import RESULT_COLUMNS, SegmentIndex

    ix = SegmentIndex(root)
    ix._encoder = True  # text queries below come as vectors; the encoder is timed apart
    cols = ", ".join(RESULT_COLUMNS)
    out: dict[str, float] = {}

    def filt(i: int) -> Any:
        day = i % (DAYS - 3)
        since = START + dt.timedelta(days=day)
        return ix.search(classes=[CLASSES[i % 5]], cameras=[CAMERAS[i % 8]], since=since,
                         until=since + dt.timedelta(days=3), min_score=0.7, limit=50)

    def filt_full(i: int) -> Any:
        day = i % (DAYS - 3)
        since = START + dt.timedelta(days=day)
        return full_scan(ix, cols, "WHERE label = ? AND camera = ? AND start_at >= ? AND start_at < ? AND score >= ?",
                         [CLASSES[i % 5], CAMERAS[i % 8], since, since + dt.timedelta(days=3), 0.7], "score DESC", [])

    queries = unit(meta["centres"][rng.integers(0, len(meta["centres"]), reps + 1)]
                   + 0.3 * rng.standard_normal((reps + 1, meta["centres"].shape[1])))
    ix.embed_text = lambda text: (queries[int(text)].tolist(), False)  # type: ignore[method-assign]

    def text(i: int) -> Any:
        return ix.search(text=str(i), limit=50)

    def text_full(i: int) -> Any:
        return full_scan(ix, cols + ", list_cosine_similarity(explanation_embedding, ?::FLOAT[]) AS similarity", "", [],
                         "similarity DESC", [queries[i].tolist()])

    likes = meta["sample_ids"]

    def like(i: int) -> Any:
        return ix.search(like=likes[i % len(likes)], limit=50)

    slow = n > 100_000
    for name, fn in (("filter", filt), ("filter_full_scan", filt_full), ("text", text), ("text_full_scan", text_full),
                     ("like", like)):
        if name not in only:
            continue
        r = max(3, reps // 5) if slow and name in ("text", "text_full_scan", "like") else reps
        p50, p95 = timed(fn, r)
        out[f"{name}_p50_s"], out[f"{name}_p95_s"] = round(p50, 4), round(p95, 4)
        print(f"  n={n:>9,} {name:<18} p50 {p50:8.4f} s  p95 {p95:8.4f} s", flush=True)
    if "sidecar" not in only:
        return out
    # the vector sidecar: build, then the same text/like queries, recall@10 against the exact SQL path
    t = time.perf_counter()
    ix.update_vectors()
    out["sidecar_build_s"] = round(time.perf_counter() - t, 2)
    assert ix.use_sidecar
    for name, fn in (("text_sidecar", text), ("like_sidecar", like)):
        p50, p95 = timed(fn, reps)
        out[f"{name}_p50_s"], out[f"{name}_p95_s"] = round(p50, 4), round(p95, 4)
        print(f"  n={n:>9,} {name:<18} p50 {p50:8.4f} s  p95 {p95:8.4f} s", flush=True)
    checks = range(1, 1 + (3 if slow else reps))
    exact = SegmentIndex(root, use_sidecar=False)
    exact._encoder = True
    exact.embed_text = ix.embed_text  # type: ignore[method-assign]
    for name, kw in (("text", lambda i: {"text": str(i)}), ("like", lambda i: {"like": likes[i % len(likes)]})):
        rec = []
        for i in checks:
            a = exact.search(limit=10, **kw(i)).column("segment_id").to_pylist()
            b = ix.search(limit=10, **kw(i)).column("segment_id").to_pylist()
            rec.append(len(set(a) & set(b)) / max(1, len(a)))
        out[f"{name}_sidecar_recall_at_10"] = round(float(np.mean(rec)), 4)
        print(f"  n={n:>9,} {name}_sidecar recall@10 {np.mean(rec):.3f}", flush=True)
    return out


def recall_at(found: np.ndarray, exact: np.ndarray, k: int = 10) -> float:
    return float(np.mean([len(set(f[:k]) & set(e[:k])) / k for f, e in zip(found, exact)]))


def compare_vector_indexes(root: str, reps: int, rng: np.random.Generator, work: str) -> dict[str, dict[str, float]]:
    """faiss flat / HNSW, usearch HNSW, LanceDB IVF-PQ over the largest index's visual vectors."""
    import duckdb

    con = duckdb.connect()
    glob = os.path.join(root, "segments", "**", "*.parquet")
    t = con.sql("SELECT visual_embedding FROM read_parquet(?)", params=[glob]).to_arrow_table()
    vecs = np.asarray(t.column(0).combine_chunks().flatten(), np.float32).reshape(t.num_rows, -1)
    del t
    n, dim = vecs.shape
    q = unit(vecs[rng.integers(0, n, reps)] + 0.2 * rng.standard_normal((reps, dim)).astype(np.float32))
    exact = np.stack([np.argsort(-(vecs @ x))[:10] for x in q])
    out: dict[str, dict[str, float]] = {}

    def measure(name: str, build: Any, query: Any) -> None:
        t0 = time.perf_counter()
        index = build()
        build_s = time.perf_counter() - t0
        lat, found = [], []
        query(index, q[0])
        for x in q:
            t1 = time.perf_counter()
            found.append(np.asarray(query(index, x))[:10])
            lat.append(time.perf_counter() - t1)
        p50, p95 = pct(lat)
        out[name] = {"build_s": round(build_s, 2), "p50_s": round(p50, 5), "p95_s": round(p95, 5),
                     "recall_at_10": round(recall_at(np.stack(found), exact), 4)}
        print(f"  {name:<22} build {build_s:7.1f} s  p50 {p50 * 1e3:7.2f} ms  p95 {p95 * 1e3:7.2f} ms  "
              f"recall@10 {out[name]['recall_at_10']:.3f}", flush=True)

    import faiss

    faiss.omp_set_num_threads(2)

    def faiss_flat() -> Any:
        ix = faiss.IndexFlatIP(dim)
        ix.add(vecs)
        return ix

    measure("faiss_flat (exact)", faiss_flat, lambda ix, x: ix.search(x[None], 10)[1][0])

    def faiss_hnsw() -> Any:
        ix = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        ix.hnsw.efConstruction = 64
        ix.add(vecs)
        ix.hnsw.efSearch = 64
        return ix

    measure("faiss_hnsw (M32 ef64)", faiss_hnsw, lambda ix, x: ix.search(x[None], 10)[1][0])

    from usearch.index import Index

    def usearch_hnsw() -> Any:
        ix = Index(ndim=dim, metric="cos", dtype="f32", connectivity=16, expansion_add=64, expansion_search=64)
        ix.add(np.arange(n), vecs, threads=2)
        return ix

    measure("usearch_hnsw (M16 ef64)", usearch_hnsw, lambda ix, x: ix.search(x, 10).keys)

    def usearch_i8() -> Any:
        ix = Index(ndim=dim, metric="cos", dtype="i8", connectivity=16, expansion_add=64, expansion_search=128)
        ix.add(np.arange(n), vecs, threads=2)
        return ix

    measure("usearch_hnsw_i8 (ef128)", usearch_i8, lambda ix, x: ix.search(x, 10).keys)

    import lancedb

    def lance() -> Any:
        db = lancedb.connect(os.path.join(work, "lance"))
        tbl = db.create_table("v", pa.table({"id": np.arange(n), "vector": pa.FixedSizeListArray.from_arrays(
            pa.array(vecs.ravel()), dim)}), mode="overwrite")
        tbl.create_index(metric="cosine", num_partitions=max(16, int(np.sqrt(n))), num_sub_vectors=dim // 16)
        return tbl

    measure("lancedb_ivf_pq", lance,
            lambda tbl, x: tbl.search(x).metric("cosine").nprobes(20).refine_factor(10).limit(10).to_arrow().column("id").to_numpy())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--work", default=None, help="where the generated indexes go (default: a temp dir, removed)")
    ap.add_argument("--no-vectors", action="store_true", help="skip the vector-index comparison")
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument("--json-out", default=None, help="also write the raw figures here")
    ap.add_argument("--vector-size", type=int, default=None, help="index size for the vector-index comparison (default: the largest)")
    ap.add_argument("--reuse", action="store_true", help="reuse indexes already generated in --work")
    ap.add_argument("--only", default="filter,filter_full_scan,text,text_full_scan,like,sidecar",
                    help="which measurements (comma list)")
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="exvad-bench-search-")
    rng = np.random.default_rng(0)
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[str, Any] = {}
    load0 = os.getloadavg()[0]
    try:
        for n in sizes:
            root = os.path.join(work, f"idx-{n}")
            saved = os.path.join(work, f"meta-{n}-{args.dim}.npz")
            if args.reuse and os.path.exists(saved):
                z = np.load(saved)
                meta = {"centres": z["centres"], "sample_ids": list(z["sample_ids"]), "sample_vecs": z["sample_vecs"]}
                shutil.rmtree(os.path.join(root, "search"), ignore_errors=True)
            else:
                shutil.rmtree(root, ignore_errors=True)
                t = time.perf_counter()
                meta = generate(root, n, args.dim)
                np.savez(saved, centres=meta["centres"], sample_ids=np.array(meta["sample_ids"]),
                         sample_vecs=meta["sample_vecs"])
                print(f"generated {n:,} segments in {time.perf_counter() - t:.1f} s", flush=True)
            results[n] = bench_size(root, n, meta, args.reps, rng, tuple(args.only.split(",")))
        vsize = args.vector_size or sizes[-1]
        vectors = {} if args.no_vectors else compare_vector_indexes(os.path.join(work, f"idx-{vsize}"),
                                                                     args.reps * 5, rng, work)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    load1 = os.getloadavg()[0]
    print({"results": results, "vectors": vectors, "load": (load0, load1)})
    if args.json_out:
        import json

        with open(args.json_out, "w") as f:
            json.dump({"results": results, "vectors": vectors, "load": [load0, load1], "dim": args.dim}, f, indent=1)
    if not args.no_record:
        record(results, vectors, args, (load0, load1))


def record(results: dict[int, dict[str, float]], vectors: dict[str, dict[str, float]], args: Any,
           load: tuple[float, float]) -> None:
    from _results import machine_line, record as write, table

    def cell(r: dict[str, float], k: str) -> str:
        return f"{r[k + '_p50_s']:.3f} / {r[k + '_p95_s']:.3f}" if k + "_p50_s" in r else "-"

    keys = ("filter", "filter_full_scan", "text", "text_full_scan", "like", "text_sidecar", "like_sidecar")
    rows = [[f"{n:,}", *(cell(r, k) for k in keys),
             f"{r.get('text_sidecar_recall_at_10', float('nan')):.3f} / {r.get('like_sidecar_recall_at_10', float('nan')):.3f}",
             f"{r['filter_full_scan_p95_s'] / max(r['filter_p95_s'], 1e-9):.1f}x" if "filter_p95_s" in r else "-"]
            for n, r in results.items()]
    body = (f"Generated indexes ({args.dim}-d visual and explanation embeddings, {len(CLASSES)} classes x {DAYS} days x "
            f"{len(CAMERAS)} cameras = {len(CLASSES) * DAYS * len(CAMERAS)} partitions), through `SegmentIndex`; "
            f"p50 / p95 seconds. Load average {load[0]:.1f} at start, {load[1]:.1f} at end (other helpers' work on "
            "the same 2 cores).\n\n"
            + table(["segments", "filter", "filter, full scan", "text (exact SQL)", "text, full scan", "like (exact SQL)",
                     "text (sidecar)", "like (sidecar)", "sidecar recall@10 text / like", "filter: full scan / pruned"],
                    rows))
    if vectors:
        body += ("\n\nVector-index candidates over the largest index's visual vectors (recall@10 against exact "
                 "search, single-query latency):\n\n"
                 + table(["index", "build s", "p50 ms", "p95 ms", "recall@10"],
                         [[k, v["build_s"], f"{v['p50_s'] * 1e3:.2f}", f"{v['p95_s'] * 1e3:.2f}", v["recall_at_10"]]
                          for k, v in vectors.items()]))
    flat = {f"search.{n}.{k}": v for n, r in results.items() for k, v in r.items()}
    flat.update({f"search.vectors.{k}.{m}": v for k, r in vectors.items() for m, v in r.items()})
    write("Search latency (bench/search.py)", body, flat)


if __name__ == "__main__":
    main()
