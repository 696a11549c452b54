"""Search latency over generated indexes of 1e4..1e6 segments, and the vector-index choice.

    python bench/search.py [--sizes 10000,100000,1000000] [--reps 20] [--work DIR]

For each size: a `segments` table in the archive job's layout (class=/date=/camera=, one file per
partition) and a small `videos` table. Vectors are the lite profile's widths (1280-d visual, or
2560-d with `--dim 2560` as lite stores them since its motion half; 384-d explanation) from
`search_vectors.realistic_vectors`, a generator calibrated on the real encoders (see
bench/search_vectors.py; the earlier generator, centre + 0.35 N(0,1) per dimension, made nearly
uniformly random vectors, the worst case for any vector index).
Measured through `SegmentIndex` (the engine the CLI and page use), p50/p95 over `--reps` queries:
- filter-only: class + 3-day recording-time window + camera + min score, best 50 by score;
- text: similarity to a query vector (the text encoder's cost is measured apart) over all segments;
- like: nearest by visual embedding to an existing segment;
each also as "DuckDB full scan" (the same SQL over every file, no pruning, no sidecar) for the ratio.
Then the vector sidecar: build time, memory, and text / like queries plain, with a class filter (20%
of rows) and with class + camera + 3-day filters (0.25%), p50/p95 and recall@10 against exact
ranking. The choice of vector index itself is measured by bench/search_vectors.py.
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
    """Write the index; returns query vectors for text (`centres`) and a sample of segment ids/vectors."""
    from search_vectors import TEXT, VISUAL, realistic_vectors

    if dim not in (VISUAL["d"], 2 * VISUAL["d"]):
        raise SystemExit(f"--dim {dim}: the generator makes {VISUAL['d']}-d visual vectors, or {2 * VISUAL['d']}-d")
    rng = np.random.default_rng(seed)
    gen_vis, gen_txt = realistic_vectors(**VISUAL, seed=2), realistic_vectors(**TEXT, seed=1)
    # lite with motion: [appearance | motion], each half unit before the segment mean; the second half is a
    # second draw of the same calibrated model (motion vectors' own statistics were not measured)
    gen_motion = realistic_vectors(**VISUAL, seed=3) if dim == 2 * VISUAL["d"] else None
    centres = gen_txt.chunk(10**7, 256)  # text queries: unseen draws of the same model
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
        vis, txt = gen_vis.chunk(k, m), gen_txt.chunk(k, m)
        if gen_motion is not None:
            vis = unit(np.concatenate([vis, gen_motion.chunk(k, m)], axis=1))
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
    from exvad_ray.search.sql import run_sql

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

    queries = meta["centres"][np.arange(reps + 1) % len(meta["centres"])]
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
    # the vector sidecar: build, then text/like queries plain and filtered, recall@10 against exact ranking
    from exvad_ray.search import vectors
    from exvad_ray.search.engine import make_query

    t = time.perf_counter()
    ix.update_vectors()
    out["sidecar_build_s"] = round(time.perf_counter() - t, 2)
    rss0 = _rss_gib()
    sc = vectors.load_sidecar(ix)
    assert sc is not None
    out["sidecar_rss_gib"] = round(_rss_gib() - rss0, 2)
    print(f"  n={n:>9,} sidecar build {out['sidecar_build_s']} s, loaded in memory +{out['sidecar_rss_gib']} GiB", flush=True)

    def filters(kind: str, i: int) -> dict[str, Any]:
        if kind == "class":  # 1 class of 5: 20% of the rows
            return {"classes": [CLASSES[i % 5]]}
        if kind == "narrow":  # class + camera + 3 of 30 days: 0.25%
            since = START + dt.timedelta(days=i % (DAYS - 3))
            return {"classes": [CLASSES[i % 5]], "cameras": [CAMERAS[i % 8]], "since": since,
                    "until": since + dt.timedelta(days=3)}
        return {}

    def exact_top(kw: dict[str, Any], k: int = 10) -> list[str]:
        """Exact ranking over the sidecar's full float32 vectors, chunk by chunk (bounded memory)."""
        q = make_query(**kw)
        if q.like:
            name, v = "visual", sc.vector("visual", int(np.flatnonzero(sc.segment_id == q.like)[0]))
        else:
            name, v = "text", unit(np.asarray([queries[int(q.text)]], np.float32))[0]
        mask = sc.mask(q, list(q.classes), set(), None)
        sims = np.concatenate([np.asarray(m, np.float32) @ v for m in sc.full[name]])
        sims[~mask] = -np.inf
        top = np.argpartition(-sims, k)[:k]
        return sc.segment_id[top[np.argsort(-sims[top])]].tolist()

    checks = range(1, 1 + (5 if slow else reps))
    for base in ("text", "like"):
        for kind in ("none", "class", "narrow"):
            def call(i: int, base: str = base, kind: str = kind, limit: int = 50) -> Any:
                kw = {"text": str(i)} if base == "text" else {"like": likes[i % len(likes)]}
                return ix.search(limit=limit, **kw, **filters(kind, i))

            key = f"{base}_sidecar" + ("" if kind == "none" else f"_{kind}")
            p50, p95 = timed(call, reps)
            out[f"{key}_p50_s"], out[f"{key}_p95_s"] = round(p50, 4), round(p95, 4)
            rec = []
            for i in checks:
                kw = {"text": str(i)} if base == "text" else {"like": likes[i % len(likes)]}
                a = exact_top({**kw, **filters(kind, i)})
                b = call(i, limit=10).column("segment_id").to_pylist()
                rec.append(len(set(a) & set(b)) / max(1, len(a)))
            out[f"{key}_recall_at_10"] = round(float(np.mean(rec)), 4)
            print(f"  n={n:>9,} {key:<22} p50 {p50:8.4f} s  p95 {p95:8.4f} s  recall@10 {np.mean(rec):.3f}  "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
    return out


def _rss_gib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--dim", type=int, default=1280, help="visual width: 1280 (appearance) or 2560 (lite with motion: "
                    "[appearance | motion]); explanation vectors are 384-d")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--work", default=None, help="where the generated indexes go (default: a temp dir, removed)")
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument("--json-out", default=None, help="also write the raw figures here")
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
        vectors: dict[str, Any] = {}  # the vector-index comparison is bench/search_vectors.py
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
    from _results import record as write, table

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
