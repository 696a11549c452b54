"""Which vector search for the sidecar, measured at 1e6 segments (issue 12): exact scans, quantised
scans with exact re-rank, PCA-reduced scans with exact re-rank, IVF, HNSW, LanceDB.

    python bench/search_vectors.py [--n 1000000] [--queries 30] [--work DIR] [--only a,b] [--json-out F]

Vectors come from `realistic_vectors` (below), a generator calibrated on the lite profile's real
encoders: MiniLM (384-d) on 4000 tag-caption-like sentences had mean pairwise cosine 0.21, top-1
neighbour cosine 0.68, 59% of the variance in 32 principal components and 91% in 128;
EfficientNet-Lite0 (1280-d, non-negative) on 945 frames: 0.49, 0.94, 81%, 93%. The generator
(power-law spectrum of rank 256 in a random basis, a shared mean direction, 1024 clusters) gives
0.25 / 0.70 / 65% / 89% (text) and 0.49 / 0.97 / 84% / 99% (visual). The generator the search
bench used before (cluster centre + 0.35 N(0, 1) per dimension) made vectors that are close to
uniformly random (mean cosine ~0, flat spectrum): the worst case for every index, and why HNSW
reached only recall@10 0.12-0.54 there.

Ground truth is exact float32 cosine computed while generating (the visual vectors are then kept
as float32 on disk, memory-mapped: only the rows being re-ranked are read). Queries: `text` = a fresh vector from the text
generator against the 384-d explanation vectors; `like` = a stored segment's visual vector against
the 1280-d visual vectors. Filters: `class` (1 of 5 classes: 20% of rows) and `narrow` (class +
camera (1 of 8) + 3 of 30 days: 0.25%), applied as a pre-filter mask (exact scans: only masked
rows count; faiss: an IDSelectorBitmap during the scan; HNSW: a predicate during the graph walk)
or as a post-filter with over-fetch (ask for more, keep those passing; HNSW/IVF/LanceDB).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any, Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TEXT = dict(d=384, a=0.5, mnorm=0.8, w=1.0, ncl=1024)
VISUAL = dict(d=1280, a=0.5, mnorm=1.0, w=0.3, ncl=1024)
RANK = 256


class realistic_vectors:
    """Unit vectors with a calibrated spectrum (see the module doc); `chunk(i, n)` is deterministic."""

    def __init__(self, d: int, a: float, mnorm: float, w: float, ncl: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.d, self.w = d, w
        self.basis = np.linalg.qr(rng.standard_normal((d, RANK)))[0].T.astype(np.float32)
        sig = np.arange(1, RANK + 1) ** (-a)
        self.sig = (sig / np.linalg.norm(sig)).astype(np.float32)
        mean = rng.standard_normal(d)
        self.mean = (mean * mnorm / np.linalg.norm(mean)).astype(np.float32)
        self.centres = (rng.standard_normal((ncl, RANK)) * self.sig).astype(np.float32)
        self.seed = seed

    def chunk(self, i: int, n: int) -> np.ndarray:
        rng = np.random.default_rng((self.seed, i))
        z = self.centres[rng.integers(0, len(self.centres), n)] + self.w * rng.standard_normal((n, RANK), np.float32) * self.sig
        x = self.mean + z @ self.basis + (0.02 / np.sqrt(self.d)) * rng.standard_normal((n, self.d), np.float32)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def build_data(work: str, n: int, nq: int, chunk: int = 50_000) -> dict[str, Any]:
    """text.npy (f32), visual.npy (f16), metadata, queries and exact similarities (float32 truth)."""
    os.makedirs(work, exist_ok=True)
    done = os.path.join(work, f"data-{n}.json")
    if os.path.exists(done):
        return json.load(open(done))
    gt, gv = realistic_vectors(**TEXT, seed=1), realistic_vectors(**VISUAL, seed=2)
    qtext = realistic_vectors(**TEXT, seed=1).chunk(10**6, nq)  # same model, unseen draws
    rng = np.random.default_rng(3)
    like_rows = np.sort(rng.choice(min(n, chunk), nq, replace=False))
    text = np.lib.format.open_memmap(os.path.join(work, "text.npy"), "w+", np.float32, (n, TEXT["d"]))
    vis = np.lib.format.open_memmap(os.path.join(work, "visual.npy"), "w+", np.float32, (n, VISUAL["d"]))
    sims_t = np.lib.format.open_memmap(os.path.join(work, "sims_text.npy"), "w+", np.float32, (nq, n))
    sims_v = np.lib.format.open_memmap(os.path.join(work, "sims_like.npy"), "w+", np.float32, (nq, n))
    qlike = None
    for k, s in enumerate(range(0, n, chunk)):
        m = min(chunk, n - s)
        t, v = gt.chunk(k, m), gv.chunk(k, m)
        if qlike is None:
            qlike = v[like_rows].copy()
        text[s:s + m], vis[s:s + m] = t, v
        sims_t[:, s:s + m], sims_v[:, s:s + m] = qtext @ t.T, qlike @ v.T
    meta = {"cls": rng.integers(0, 5, n).astype(np.int8), "cam": rng.integers(0, 8, n).astype(np.int8),
            "day": rng.integers(0, 30, n).astype(np.int8)}
    np.savez(os.path.join(work, "meta.npz"), qtext=qtext, qlike=qlike, like_rows=like_rows, **meta)
    for a in (text, vis, sims_t, sims_v):
        a.flush()
    info = {"n": n, "nq": nq}
    json.dump(info, open(done, "w"))
    return info


def masks(meta: Any, i: int) -> dict[str, np.ndarray | None]:
    cls = meta["cls"] == i % 5
    narrow = cls & (meta["cam"] == i % 8) & (meta["day"] >= i % 27) & (meta["day"] < i % 27 + 3)
    return {"none": None, "class": cls, "narrow": narrow}


def truth(sims: np.ndarray, mask: np.ndarray | None, k: int = 10) -> np.ndarray:
    s = np.array(sims, np.float32)
    if mask is not None:
        s[~mask] = -np.inf
    top = np.argpartition(-s, k)[:k]
    return top[np.argsort(-s[top])]


def latency_recall(lat: list[float], rec: list[float]) -> dict[str, float]:
    """p50/p95 seconds and mean recall@10 of a query series whose first (warm-up) query is dropped."""
    lat, rec = lat[1:], rec[1:]
    return {"p50_s": round(float(np.percentile(lat, 50)), 4), "p95_s": round(float(np.percentile(lat, 95)), 4),
            "recall_at_10": round(float(np.mean(rec)), 3)}


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    return len(set(np.asarray(found)[:10].tolist()) & set(exact[:10].tolist())) / 10


def topk(sims: np.ndarray, rows: np.ndarray | None, k: int) -> np.ndarray:
    k = min(k, len(sims))
    top = np.argpartition(-sims, k - 1)[:k]
    top = top[np.argsort(-sims[top])]
    return top if rows is None else rows[top]


def rerank(full: np.ndarray, cand: np.ndarray, q: np.ndarray, k: int = 10) -> np.ndarray:
    cand = np.sort(cand)  # sorted gathers from the memory map read pages in order
    s = np.asarray(full[cand], np.float32) @ q
    return cand[np.argsort(-s)[:k]]


def scan(mat: np.ndarray, q: np.ndarray, mask: np.ndarray | None, k: int) -> np.ndarray:
    """Exact ranking of `mat` rows under `mask` (pre-filter): gather when few pass, else one product."""
    if mask is None:
        return topk(mat @ q, None, k)
    rows = np.flatnonzero(mask)
    if len(rows) < len(mat) // 8:
        return topk(np.asarray(mat[rows], np.float32) @ q, rows, k)
    s = mat @ q
    return topk(s[rows], rows, k)


def shipped_sidecar(work: str, n: int, meta: dict[str, np.ndarray], qs: dict[str, np.ndarray],
                    exact: dict[Any, list[np.ndarray]], nq: int) -> dict[str, Any]:
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    from exvad_ray.search import vectors
    from exvad_ray.search.engine import make_query

    classes = ["Fighting", "Fire", "CrowdRush", "FallingObject", "Arrest"]
    start = dt.datetime(2026, 10, 1, tzinfo=dt.timezone.utc)
    root = os.path.join(work, "sidecar")
    rss_start = _rss_gib()
    if os.path.exists(os.path.join(root, "state.json")):  # built by an earlier run: measure a fresh process
        return _query_sidecar(root, meta, qs, exact, nq, 0.0, rss_start, classes, start, make_query, vectors)
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    t = time.perf_counter()
    ids = pa.array([f"s{i}" for i in range(n)])
    cat = pa.table({"segment_id": ids, "video_id": pa.array([f"v{i // 4}" for i in range(n)]),
                    "uri": pa.array([f"s3://a/{i // 4}.mp4" for i in range(n)]),
                    "label": pa.array(np.array(classes, object)[meta["cls"]]),
                    "camera": pa.array(np.array([f"cam{i:02d}" for i in range(8)], object)[meta["cam"]]),
                    "score": pa.array(np.full(n, 0.9)),
                    "start_at": pa.array((np.datetime64("2026-10-01T00:00:00", "us")
                                          + meta["day"].astype("timedelta64[D]")).astype("datetime64[us]"))
                    .cast(pa.timestamp("us", tz="UTC")), "row": pa.array(np.arange(n))})
    pq.write_table(cat, os.path.join(root, "catalog-00000.parquet"))
    os.symlink(os.path.join(work, "text.npy"), os.path.join(root, "text-00000.npy"))
    os.symlink(os.path.join(work, "visual.npy"), os.path.join(root, "visual-00000.npy"))
    state = {"format": vectors.FORMAT, "files": {}, "chunks": 1, "rows": n, "pca_fit_rows": {},
             "dim_text": TEXT["d"], "dim_visual": VISUAL["d"]}
    vectors._update_reduced(root, "visual", state, 0)
    t_pca = time.perf_counter() - t
    for name in ("text", "visual"):
        vectors._update_ivf(root, name, state, 0)
    build_s = time.perf_counter() - t
    with open(os.path.join(root, "state.json"), "w") as f:
        json.dump(state, f)
    print(f"  shipped sidecar: catalog+PCA {t_pca:.0f} s, +IVF text/visual {build_s - t_pca:.0f} s", flush=True)
    return _query_sidecar(root, meta, qs, exact, nq, build_s, rss_start, classes, start, make_query, vectors)


def _rss_gib() -> float:
    return [int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmRSS")][0] / 2**20


def _query_sidecar(root: str, meta: Any, qs: Any, exact: Any, nq: int, build_s: float, rss_start: float,
                   classes: list[str], start: Any, make_query: Any, vectors: Any) -> dict[str, Any]:
    import datetime as dt

    sc = vectors.Sidecar(root)

    def query(i: int, f: str) -> Any:
        day = i % 27
        kw: dict[str, Any] = {}
        if f in ("class", "narrow"):
            kw["classes"] = [classes[i % 5]]
        if f == "narrow":
            kw.update(cameras=[f"cam{i % 8:02d}"], since=start + dt.timedelta(days=day),
                      until=start + dt.timedelta(days=day + 3))
        return make_query(**kw)

    out: dict[str, Any] = {}
    for kind in ("text", "like"):
        row: dict[str, Any] = {"build_s": round(build_s, 1)}
        for f in ("none", "class", "narrow"):
            lat, rec = [], []
            for i in [0, *range(nq)]:
                t = time.perf_counter()
                q = query(i, f)
                mask = sc.mask(q, list(q.classes), set(), None)
                if kind == "text":
                    v = {"text": qs["text"][i]}
                else:
                    v = {"visual": sc.vector("visual", int(z_like_rows[i]))}
                rows, _ = sc.rank(mask, v, {k: 1.0 for k in v}, 50)
                lat.append(time.perf_counter() - t)
                rec.append(recall(rows, exact[(kind, f)][i]))
            row[f] = latency_recall(lat, rec)
            print(f"  {kind:<5} {'sidecar (shipped)':<40} {f:<7} p50 {row[f]['p50_s']:.4f}  p95 {row[f]['p95_s']:.4f}  "
                  f"recall@10 {row[f]['recall_at_10']:.3f}  load {os.getloadavg()[0]:.1f}", flush=True)
        out[f"{kind}: sidecar (shipped)"] = row
    rss = _rss_gib()
    out["sidecar_rss_gib"] = round(rss - rss_start, 2)
    print(f"  process RSS after the sidecar queries: {rss:.2f} GiB ({rss - rss_start:+.2f} GiB since the sidecar "
          "part started; includes memory-mapped pages the queries touched)", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=30)
    ap.add_argument("--work", default=None)
    ap.add_argument("--only", default=None)
    ap.add_argument("--json-out", default=None)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="exvad-bench-vectors-")
    t0 = time.perf_counter()
    build_data(work, args.n, args.queries)
    print(f"data ready in {time.perf_counter() - t0:.0f} s ({args.n:,} rows) load {os.getloadavg()[0]:.1f}", flush=True)
    z = np.load(os.path.join(work, "meta.npz"))
    meta = {k: z[k] for k in ("cls", "cam", "day")}
    qs = {"text": z["qtext"], "like": z["qlike"]}
    global z_like_rows
    z_like_rows = z["like_rows"]
    full = {"text": np.load(os.path.join(work, "text.npy"), mmap_mode="r"),
            "like": np.load(os.path.join(work, "visual.npy"), mmap_mode="r")}
    sims = {"text": np.load(os.path.join(work, "sims_text.npy"), mmap_mode="r"),
            "like": np.load(os.path.join(work, "sims_like.npy"), mmap_mode="r")}
    nq = len(qs["text"])
    exact = {(kind, f): [truth(sims[kind][i], masks(meta, i)[f]) for i in range(nq)]
             for kind in qs for f in ("none", "class", "narrow")}
    results: dict[str, Any] = {}
    only = set(args.only.split(",")) if args.only else None

    def measure(name: str, kind: str, build: Callable[[], Any], query: Callable[[Any, np.ndarray, Any], np.ndarray],
                filters: tuple[str, ...] = ("none", "class", "narrow")) -> None:
        if only and name.split(" ")[0] not in only:
            return
        t = time.perf_counter()
        try:
            index = build()
        except MemoryError as exc:
            print(f"  {kind:<5} {name:<40} build failed: {exc}", flush=True)
            return
        build_s = time.perf_counter() - t
        row: dict[str, Any] = {"build_s": round(build_s, 1)}
        for f in filters:
            lat, rec = [], []
            for i in [0, *range(nq)]:  # query 0 once more first: warm
                mk = masks(meta, i)[f]
                t = time.perf_counter()
                found = query(index, qs[kind][i], mk)
                el = time.perf_counter() - t
                lat.append(el)
                rec.append(recall(found, exact[(kind, f)][i]))
            row[f] = latency_recall(lat, rec)
            print(f"  {kind:<5} {name:<40} {f:<7} build {build_s:6.1f} s  p50 {row[f]['p50_s']:.4f}  p95 "
                  f"{row[f]['p95_s']:.4f}  recall@10 {row[f]['recall_at_10']:.3f}  load {os.getloadavg()[0]:.1f}", flush=True)
        results[f"{kind}: {name}"] = row
        del index

    import faiss

    faiss.omp_set_num_threads(args.threads)

    # 1. exact float32 scan (text only: 1e6 x 1280 float32 would be 5.1 GB)
    measure("exact-f32", "text", lambda: np.ascontiguousarray(full["text"]),
            lambda m, q, mk: scan(m, q, mk, 10))

    # 2. float16 exact scan (1e6 x 1280 float16 = 2.6 GB) (numpy has no fp16 BLAS: converted by blocks)
    def f16_scan(m: np.ndarray, q: np.ndarray, mk: Any) -> np.ndarray:
        s = np.concatenate([np.asarray(m[i:i + 65536], np.float32) @ q for i in range(0, len(m), 65536)])
        return topk(s if mk is None else np.where(mk, s, -np.inf), None, 10)

    measure("exact-f16-blocks", "like", lambda: np.ascontiguousarray(full["like"]), f16_scan, ("none",))

    # 3. PCA reduction + exact re-rank from the full-precision (f16 memory-mapped) vectors
    for kind, dims in (("like", (128, 256)), ("text", (128,))):
        for d in dims:
            def pca_build(kind: str = kind, d: int = d) -> Any:
                sample = np.asarray(full[kind][:: max(1, args.n // 20_000)], np.float32)
                mu = sample.mean(0)
                c = sample - mu
                w, v = np.linalg.eigh(c.T @ c)  # covariance eigenvectors: much cheaper than an SVD of the sample
                p = np.ascontiguousarray(v[:, ::-1][:, :d]).astype(np.float32)
                red = np.concatenate([(np.asarray(full[kind][i:i + 65536], np.float32) - mu) @ p
                                      for i in range(0, args.n, 65536)])
                return red, p, mu

            for c in (100, 400):
                def pca_query(ix: Any, q: np.ndarray, mk: Any, c: int = c, kind: str = kind) -> np.ndarray:
                    red, p, mu = ix
                    cand = scan(red, (q - mu) @ p, mk, c)  # q.mu is the same for every row: ranking unchanged
                    return rerank(full[kind], cand, q)

                measure(f"pca{d}-f32+rerank{c}", kind, pca_build, pca_query)

    # 4. int8 scalar quantisation (faiss SQ8, SIMD scan) + exact re-rank; filter = IDSelectorBitmap
    for kind in ("text", "like"):
        def sq_build(kind: str = kind) -> Any:
            d = full[kind].shape[1]
            ix = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
            ix.train(np.asarray(full[kind][:: max(1, args.n // 50_000)], np.float32))
            for i in range(0, args.n, 65536):
                ix.add(np.asarray(full[kind][i:i + 65536], np.float32))
            return ix

        def sq_query(ix: Any, q: np.ndarray, mk: Any, kind: str = kind) -> np.ndarray:
            params = None
            if mk is not None:
                params = faiss.SearchParameters(sel=faiss.IDSelectorBitmap(np.packbits(mk, bitorder="little")))
            _, cand = ix.search(q[None], 100, params=params)
            cand = cand[0][cand[0] >= 0]
            return rerank(full[kind], cand, q)

        measure("faiss-sq8+rerank100", kind, sq_build, sq_query)

    # 5. IVF (faiss IVF-SQ8, nprobe tuned) + exact re-rank; filter = IDSelectorBitmap (pre-filter)
    for kind in ("text", "like"):
        def ivf_build(kind: str = kind) -> Any:
            d = full[kind].shape[1]
            quant = faiss.IndexFlatIP(d)
            ix = faiss.IndexIVFScalarQuantizer(quant, d, 1024, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
            ix.train(np.asarray(full[kind][:: max(1, args.n // 60_000)], np.float32))
            for i in range(0, args.n, 65536):
                ix.add(np.asarray(full[kind][i:i + 65536], np.float32))
            return ix

        for nprobe in (16, 64):
            def ivf_query(ix: Any, q: np.ndarray, mk: Any, kind: str = kind, nprobe: int = nprobe) -> np.ndarray:
                sel = faiss.IDSelectorBitmap(np.packbits(mk, bitorder="little")) if mk is not None else None
                _, cand = ix.search(q[None], 100, params=faiss.SearchParametersIVF(nprobe=nprobe, sel=sel))
                cand = cand[0][cand[0] >= 0]
                return rerank(full[kind], cand, q)

            measure(f"faiss-ivf1024-sq8-nprobe{nprobe}+rerank100", kind, ivf_build, ivf_query)

    # 6. HNSW (usearch, int8 storage, cosine), ef tuned; filters as post-filter with over-fetch
    for kind in ("text",):
        def hnsw_build(kind: str = kind) -> Any:
            from usearch.index import Index

            ix = Index(ndim=full[kind].shape[1], metric="ip", dtype="i8", connectivity=16, expansion_add=128)
            for i in range(0, args.n, 65536):
                ix.add(np.arange(i, min(i + 65536, args.n)), np.asarray(full[kind][i:i + 65536], np.float32),
                       threads=args.threads)
            return ix

        for ef in (64, 256):
            def hnsw_query(ix: Any, q: np.ndarray, mk: Any, kind: str = kind, ef: int = ef) -> np.ndarray:
                ix.expansion_search = ef
                k = 100
                while True:  # post-filter with over-fetch: widen until 10 pass (exact scan past n/8)
                    keys = np.asarray(ix.search(q, k).keys, np.int64)
                    if mk is not None:
                        keys = keys[mk[keys]]
                    if len(keys) >= 10 or k >= args.n // 8:
                        break
                    k *= 4
                if len(keys) < 10:
                    return scan(full[kind], q, mk, 10)
                return rerank(full[kind], keys[:100], q)

            measure(f"usearch-hnsw-i8-M16-ef{ef}+rerank", kind, hnsw_build, hnsw_query)

    # 7. LanceDB IVF-PQ (prefilter) with refine
    for kind in ("text",):
        def lance_build(kind: str = kind) -> Any:
            import lancedb
            import pyarrow as pa

            db = lancedb.connect(os.path.join(work, "lance"))
            d = full[kind].shape[1]

            def batches() -> Any:
                for i in range(0, args.n, 65536):
                    v = np.asarray(full[kind][i:i + 65536], np.float32)
                    yield pa.record_batch({"id": pa.array(np.arange(i, i + len(v))), "cls": pa.array(meta["cls"][i:i + len(v)]),
                                           "vector": pa.FixedSizeListArray.from_arrays(pa.array(v.ravel()), d)})

            schema = pa.schema([("id", pa.int64()), ("cls", pa.int8()), ("vector", pa.list_(pa.float32(), d))])
            tbl = db.create_table(f"v{kind}", pa.RecordBatchReader.from_batches(schema, batches()), mode="overwrite")
            tbl.create_index(metric="cosine", num_partitions=1024, num_sub_vectors=d // 8)
            return tbl

        def lance_query(tbl: Any, q: np.ndarray, mk: Any) -> np.ndarray:
            s = tbl.search(q).metric("cosine").nprobes(32).refine_factor(10).limit(10)
            if mk is not None:  # only the class filter travels as SQL here: the recall of `narrow` is not comparable
                return np.zeros(0, np.int64)
            return s.to_arrow().column("id").to_numpy()

        measure("lancedb-ivf1024-pq48-nprobe32-refine10", kind, lance_build, lance_query, ("none",))

    # 8. the sidecar as shipped (exvad_ray.search.vectors.Sidecar): its own PCA and IVF builders, its
    # planner, the filters through Sidecar.mask (a Query), the results' exact re-rank
    if not only or "sidecar" in only:
        results.update(shipped_sidecar(work, args.n, meta, qs, exact, nq))

    out = {"n": args.n, "queries": nq, "threads": args.threads, "results": results, "load_end": os.getloadavg()}
    print(json.dumps(out))
    if args.json_out:
        json.dump(out, open(args.json_out, "w"), indent=1)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
