"""The vector sidecar: similarity search for indexes too large to scan with SQL per query (~1e5 and up).

Lives in ``INDEX/search/`` (``INDEX/search/scoring-<id>/`` for a rescoring), beside the tables, never
inside them: a catalog of the segments' small columns (what filters and results need, no
thumbnails) and their unit-normalised visual and explanation vectors as float32 ``.npy`` chunks.
Vector columns wider than REDUCE_ABOVE (the lite profile's visual features: 1280-d, 2560-d with
motion) also get a PCA-reduced copy (REDUCED_DIM, float32) that is what a query scans; the full
vectors stay on disk, memory-mapped, and only the candidates' rows are read for the exact re-rank.

From IVF_MIN_ROWS on, a faiss IVF index per vector column (1024 lists, int8 codes) gives candidates.

Chosen by measurement (bench/search_vectors.py, bench/RESULTS.md "Search latency"; 2 shared cores,
1e6 segments, lite widths): float32 BLAS scans meet p95 < 0.3 s for the 384-d text vectors but the
1280-d visual ones would need 5 GB; PCA + re-rank loses recall on near-duplicate visual neighbours
unless it re-ranks many rows; faiss SQ8 flat scans were slower than BLAS; IVF + exact re-rank
answers in milliseconds with recall 1.0 unfiltered and under broad filters but not under narrow
pre-filters; HNSW (usearch) was as accurate at 6e4 (its 1e6 build was not timed) and needs the
same fallback for narrow filters; LanceDB's IVF-PQ build did not finish in the time given. So the planner in `Sidecar.rank`: few masked rows -> exact; a mask of
>= IVF_MIN_FRACTION with an IVF index -> IVF candidates (mask inside the scan, nprobe scaled by the
mask's fraction) + exact re-rank; otherwise an exact / PCA scan + exact re-rank.

Filters are a pre-filter: the catalog is masked with vectorised numpy (class and camera as
dictionary codes), and only masked rows are ranked, so filters and ranking always agree.

`update_sidecar` is incremental and bounded in memory: segment files not yet covered are streamed
(BATCH_ROWS at a time) into new chunks; the PCA basis is fitted on a sample and refitted (all
chunks re-projected) only when the sidecar has more than doubled since the fit, up to PCA_SAMPLE
rows; new chunks are added to the IVF index, retrained once the sidecar has grown 4x. It catches up
with the table as the log moves on: a covered file that left the snapshot (a Delta delete of a
replaced video rewrites its file; a rerun's replacement in the per-video layout) has its rows
retired (the catalog's `file` column says whose rows they are; `retired` in state.json; the query
mask hides them) and the file that replaced it is read as a new one; only when retired rows
outnumber the live ones (after a compaction, which rewrites every file) is it rebuilt. state.json
records the Delta table version it covers (`table_version`). The commands `exvad process` and
`exvad rescore` (and the demo) call `refresh_after_run` once the run or scoring is committed: the
pipeline writes the index and knows nothing of search.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import tempfile
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from exvad_ray import storage
from exvad_ray.search.sql import HIVE_OPTIONS

log = logging.getLogger(__name__)

SIDECAR_DIR = "search"
FORMAT = 3  # state.json "format"; other values are rebuilt (1: usearch; 2: no `file` column in the catalog)
CATALOG_COLUMNS = ("segment_id", "video_id", "uri", "label", "score", "class_score", "start_s", "end_s", "peak_s",
                   "start_at", "end_at", "explanation", "camera", "date")
VECTORS = ("visual", "text")
REDUCE_ABOVE = 512  # vector columns wider than this are scanned through a PCA-reduced copy
REDUCED_DIM = 256
CANDIDATES = 400  # rows re-ranked exactly after a reduced scan or an IVF search (at least)
CANDIDATES_PER_RESULT = 20  # ... and at least this many per result asked for
GATHER_MAX = 20_000  # masked rows up to this are ranked exactly from the full vectors
PCA_SAMPLE = 50_000  # rows the PCA basis is fitted on (at most)
BATCH_ROWS = 65_536  # rows per chunk while building
AUTO_BUILD_MIN = 10_000  # refresh_after_run creates a sidecar from this many segments on (updates any)
IVF_MIN_ROWS = 200_000  # from this size an IVF index (faiss IVF1024, int8 codes) per vector column is kept
IVF_LISTS = 1024
IVF_NPROBE = 128  # lists probed for an unfiltered query; divided by the mask's fraction (capped) when filtered.
# 32 was enough for 1280-d vectors (recall@10 1.0 at 1e6); lite's 2560-d [appearance | motion] vectors got 0.907
# at 32, 0.968 at 64, 0.997 at 128 (p95 0.015 / 0.023 / 0.037 s in Sidecar.rank; bench/RESULTS.md, Search latency)
RETIRED_MAX_FRACTION = 0.5  # past this fraction of retired rows (e.g. after a compaction) the sidecar is rebuilt
IVF_MIN_FRACTION = 0.05  # masks passing fewer rows than this use the scans (IVF recall drops under narrow filters)


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    n[n == 0] = 1
    return (x / n).astype(np.float32)


def _matrix(col: pa.ChunkedArray | pa.Array, dim: int | None) -> np.ndarray:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    lengths = np.asarray(arr.value_lengths().fill_null(0))
    d = dim or (int(lengths.max()) if len(lengths) else 0)
    out = np.zeros((len(arr), d), np.float32)
    ok = lengths == d
    if d and ok.any():
        flat = np.asarray(arr.filter(pa.array(ok)).flatten(), np.float32)
        out[ok] = flat.reshape(-1, d)
    return _unit(out) if d else out


def sidecar_dir(index_uri: str) -> str:
    return storage.join(storage.normalize(index_uri).rstrip("/"), SIDECAR_DIR)


def local_root(ix: Any) -> str:
    """Local folder of `ix`'s sidecar (per scoring); remote indexes keep it in a local cache folder."""
    sub = "" if ix.scoring == "process" else f"scoring-{ix.scoring}"
    if not storage.is_remote(ix.uri):
        return os.path.join(storage.normalize(sidecar_dir(ix.uri)), sub)
    import hashlib

    key = hashlib.sha1(ix.uri.encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"exvad-sidecar-{key}", sub)


def _empty_state() -> dict[str, Any]:
    return {"format": FORMAT, "files": {}, "chunks": 0, "rows": 0, "pca_fit_rows": {}, "retired": [], "retired_rows": 0}


def _table_version(ix: Any) -> int | None:
    """The Delta version of the segments table the sidecar is built from (None: per-video layout)."""
    from exvad_ray.index import delta

    try:
        if delta.is_delta(ix.uri, ix._segments_table()):
            return delta.log_version(ix.uri, ix._segments_table())
    except Exception:  # noqa: BLE001 - a record, not a requirement
        return None
    return None


def _rows_of(root: str, state: dict[str, Any], files: set[str]) -> int:
    """Catalog rows that came from `files` (the small `file` column of each chunk read)."""
    if not files:
        return 0
    value_set = pa.array(sorted(files), pa.string())
    return sum(int(pc.sum(pc.is_in(pq.read_table(os.path.join(root, f"catalog-{i:05d}.parquet"),
                                                 columns=["file"]).column("file"), value_set=value_set)).as_py() or 0)
               for i in range(state["chunks"]))


def _wipe(root: str) -> None:
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if os.path.isfile(path):  # sub-folders are other scorings' sidecars
            os.remove(path)


def _batches(ix: Any, files: list[str], cols: str) -> Any:
    """The new files' rows as Arrow record batches (streamed: memory stays bounded at any size)."""
    sql = f"SELECT {cols} FROM read_parquet(?, {HIVE_OPTIONS}, filename = true)"
    rel = ix.con.sql(sql, params=[files])  # superseded videos stay in: the query mask hides them
    reader = rel.to_arrow_reader(BATCH_ROWS) if hasattr(rel, "to_arrow_reader") else rel.fetch_arrow_reader(BATCH_ROWS)
    buf: list[pa.RecordBatch] = []
    for batch in reader:  # DuckDB hands smaller batches: one chunk per BATCH_ROWS rows
        buf.append(batch)
        if sum(b.num_rows for b in buf) >= BATCH_ROWS:
            yield pa.Table.from_batches(buf)
            buf = []
    if buf:
        yield pa.Table.from_batches(buf)


def update_sidecar(ix: Any, local_dir: str | None = None) -> dict[str, Any]:
    """Bring the sidecar of `ix` (a SegmentIndex) up to date; returns its state. Remote indexes keep
    the sidecar in `local_dir` (a cache folder; default beside the temp dir)."""
    root = local_dir or local_root(ix)
    os.makedirs(root, exist_ok=True)
    state_path = os.path.join(root, "state.json")
    state = json.load(open(state_path)) if os.path.exists(state_path) else _empty_state()
    current = [f for f, _ in ix.files]
    if state.get("format") != FORMAT:
        _wipe(root)
        state = _empty_state()
    gone = set(state["files"]) - set(current)
    if gone:  # files that left the snapshot: their rows retired, unless most rows would then be
        retired = state["retired_rows"] + _rows_of(root, state, gone)
        if retired > RETIRED_MAX_FRACTION * state["rows"]:
            _wipe(root)
            state = _empty_state()
        else:
            state["retired"] = sorted(set(state["retired"]) | gone)
            state["retired_rows"] = retired
            for f in gone:
                del state["files"][f]
    new = [f for f in current if f not in state["files"]]
    version = _table_version(ix)
    if not new:
        if gone or state.get("table_version") != version:
            state["table_version"] = version
            _save(state_path, state)
        return state
    vis = ix._vector_column("visual_embedding")
    has_text = "explanation_embedding" in ix.columns
    cols = ", ".join(CATALOG_COLUMNS) + ", filename AS file" + f", {vis} AS visual" + \
        (", explanation_embedding AS text" if has_text else "")
    k0 = k = state["chunks"]
    rows = state["rows"]
    for table in _batches(ix, new, cols):
        if not table.num_rows:
            continue
        mats = {"visual": _matrix(table.column("visual"), state.get("dim_visual")),
                "text": _matrix(table.column("text"), state.get("dim_text")) if has_text
                else np.zeros((table.num_rows, 0), np.float32)}
        catalog = table.select([*CATALOG_COLUMNS, "file"]).append_column(
            "row", pa.array(np.arange(rows, rows + table.num_rows)))
        pq.write_table(catalog, os.path.join(root, f"catalog-{k:05d}.parquet"))
        for name, m in mats.items():
            np.save(os.path.join(root, f"{name}-{k:05d}.npy"), m)
            state[f"dim_{name}"] = int(m.shape[1])
        k, rows = k + 1, rows + table.num_rows
    state["chunks"], state["rows"] = k, rows
    for name in VECTORS:
        if state.get(f"dim_{name}", 0) > REDUCE_ABOVE:
            _update_reduced(root, name, state, k0)
        if state.get(f"dim_{name}", 0) and state["rows"] >= IVF_MIN_ROWS:
            _update_ivf(root, name, state, k0)
    for f in new:
        state["files"][f] = k0
    state["table_version"] = version
    _save(state_path, state)
    return state


def _save(state_path: str, state: dict[str, Any]) -> None:
    with open(state_path + ".tmp", "w") as fh:
        json.dump(state, fh)
    os.replace(state_path + ".tmp", state_path)


def _update_reduced(root: str, name: str, state: dict[str, Any], first_new: int) -> None:
    """PCA-reduced scan copies of chunks `first_new`.. (or of all chunks, when the basis is refitted)."""
    fit_rows = int(state["pca_fit_rows"].get(name, 0))
    chunks = [np.load(os.path.join(root, f"{name}-{i:05d}.npy"), mmap_mode="r") for i in range(state["chunks"])]
    basis_path = os.path.join(root, f"{name}-pca.npz")
    if not fit_rows or (state["rows"] > 2 * fit_rows and fit_rows < PCA_SAMPLE):
        step = max(1, state["rows"] // PCA_SAMPLE)
        sample = np.concatenate([np.asarray(c[::step], np.float32) for c in chunks])
        mean = sample.mean(0)
        centred = sample - mean
        _, vecs = np.linalg.eigh(centred.T @ centred)  # covariance eigenvectors, largest last
        basis = np.ascontiguousarray(vecs[:, ::-1][:, :REDUCED_DIM], np.float32)
        np.savez(basis_path, mean=mean.astype(np.float32), basis=basis)
        state["pca_fit_rows"][name] = state["rows"]
        first_new = 0
    z = np.load(basis_path)
    mean, basis = z["mean"], z["basis"]
    for i in range(first_new, len(chunks)):
        out = np.lib.format.open_memmap(os.path.join(root, f"{name}-pca-{i:05d}.npy"), "w+", np.float32,
                                        (len(chunks[i]), basis.shape[1]))
        for s in range(0, len(chunks[i]), BATCH_ROWS):  # by blocks: memory stays bounded whatever the chunk
            out[s:s + BATCH_ROWS] = (np.asarray(chunks[i][s:s + BATCH_ROWS], np.float32) - mean) @ basis
        out.flush()
        del out


def _update_ivf(root: str, name: str, state: dict[str, Any], first_new: int) -> None:
    """Add chunks `first_new`.. to the IVF index of `name` (all chunks when it is (re)trained: first
    time, or once the sidecar has grown 4x since training). Writes go to a temp file, then rename."""
    import faiss

    path = os.path.join(root, f"{name}.ivf")
    trained = int(state.setdefault("ivf_trained_rows", {}).get(name, 0))
    chunks = [np.load(os.path.join(root, f"{name}-{i:05d}.npy"), mmap_mode="r") for i in range(state["chunks"])]
    if not trained or not os.path.exists(path) or state["rows"] > 4 * trained:
        step = max(1, state["rows"] // (64 * IVF_LISTS))
        sample = np.concatenate([np.asarray(c[::step], np.float32) for c in chunks])
        d = sample.shape[1]
        index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(d), d, IVF_LISTS, faiss.ScalarQuantizer.QT_8bit,
                                              faiss.METRIC_INNER_PRODUCT)
        index.train(sample)
        state["ivf_trained_rows"][name] = state["rows"]
        first_new = 0
    else:
        index = faiss.read_index(path)
    offsets = np.cumsum([0, *(len(c) for c in chunks)])
    for i in range(first_new, len(chunks)):
        for s in range(0, len(chunks[i]), BATCH_ROWS):
            block = np.asarray(chunks[i][s:s + BATCH_ROWS], np.float32)
            index.add_with_ids(block, np.arange(offsets[i] + s, offsets[i] + s + len(block), dtype=np.int64))
    faiss.write_index(index, path + ".tmp")
    os.replace(path + ".tmp", path)


class Sidecar:
    """A loaded sidecar: the catalog in memory, the scan matrices in memory (full vectors up to
    REDUCE_ABOVE wide, else the PCA-reduced copy), the full wide vectors memory-mapped."""

    def __init__(self, root: str):
        self.root = root
        with open(os.path.join(root, "state.json")) as f:
            self.state = json.load(f)
        k = self.state["chunks"]
        self.catalog = pa.concat_tables([pq.read_table(os.path.join(root, f"catalog-{i:05d}.parquet")) for i in range(k)])
        self.full: dict[str, list[np.ndarray]] = {}
        self._scan: dict[str, np.ndarray] = {}  # loaded on first use (an IVF-only workload never needs them)
        self.reduced: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # name -> (mean, basis)
        self.ivf: dict[str, Any] = {}
        for name in VECTORS:
            d = self.state.get(f"dim_{name}", 0)
            if not d:
                continue
            self.full[name] = [np.load(os.path.join(root, f"{name}-{i:05d}.npy"), mmap_mode="r") for i in range(k)]
            if d > REDUCE_ABOVE:
                z = np.load(os.path.join(root, f"{name}-pca.npz"))
                self.reduced[name] = (z["mean"], z["basis"])
            if os.path.exists(os.path.join(root, f"{name}.ivf")) and name in self.state.get("ivf_trained_rows", {}):
                import faiss

                self.ivf[name] = faiss.read_index(os.path.join(root, f"{name}.ivf"))
        self.offsets = np.cumsum([0, *(len(m) for m in self.full[VECTORS[0]])]) if self.full else np.zeros(1, int)
        c = self.catalog
        # class and camera as dictionary codes: a filter is then a lookup in a tiny table, not a
        # string comparison per row (np.isin over 1e6 Python strings took ~0.1 s per column)
        self.label = _codes(c.column("label"))
        self.camera = _codes(c.column("camera"))
        self.video_id = np.asarray(c.column("video_id").to_numpy(zero_copy_only=False), object)
        self.uri = np.asarray(c.column("uri").to_numpy(zero_copy_only=False), object)
        self.segment_id = np.asarray(c.column("segment_id").to_numpy(zero_copy_only=False), object)
        self.score = c.column("score").to_numpy().astype(np.float64)
        start = c.column("start_at").cast(pa.int64()).combine_chunks()
        self.start_at = np.asarray(start.fill_null(np.iinfo(np.int64).min))
        self.has_time = np.asarray(start.is_valid())
        retired = self.state.get("retired") or []  # rows of files that left the table's snapshot
        self.live = ~pc.is_in(c.column("file"), value_set=pa.array(retired, pa.string())).to_numpy(zero_copy_only=False) \
            if retired else np.ones(c.num_rows, bool)

    def has(self, name: str) -> bool:
        return name in self.full

    def scan(self, name: str) -> np.ndarray:
        """The in-memory matrix a scan multiplies: the full vectors, or their PCA copy when wide."""
        if name not in self._scan:
            k = self.state["chunks"]
            if name in self.reduced:
                parts = [np.load(os.path.join(self.root, f"{name}-pca-{i:05d}.npy")) for i in range(k)]
            else:
                parts = [np.asarray(m) for m in self.full[name]]
            self._scan[name] = np.concatenate(parts)
        return self._scan[name]

    def vector(self, name: str, row: int) -> np.ndarray:
        return self._gather(name, np.array([row]))[0]

    def _gather(self, name: str, rows: np.ndarray) -> np.ndarray:
        """Full-precision vectors of catalog rows `rows` (sorted or not) from the memory-mapped chunks."""
        if name in self._scan and name not in self.reduced:
            return self._scan[name][rows]
        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        chunk = np.searchsorted(self.offsets, srt, side="right") - 1
        out = np.empty((len(rows), self.state[f"dim_{name}"]), np.float32)
        for c in np.unique(chunk):
            sel = np.flatnonzero(chunk == c)
            out[order[sel]] = self.full[name][c][srt[sel] - self.offsets[c]]
        return out

    def mask(self, q: Any, classes: list[str], superseded: set[str], detector_ids: list[str] | None) -> np.ndarray:
        m = self.live.copy()
        if classes:
            m &= _in(self.label, classes)
        if q.min_score is not None:
            m &= self.score >= float(q.min_score)
        if q.max_score is not None:
            m &= self.score <= float(q.max_score)
        for bound, op in ((q.since, np.greater_equal), (q.until, np.less)):
            if bound is not None:
                micros = int((bound - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) / dt.timedelta(microseconds=1))
                m &= self.has_time & op(self.start_at, micros)
        if q.cameras:
            m &= _in(self.camera, list(q.cameras))
        if q.prefix:
            m &= np.char.startswith(self.uri.astype(str), q.prefix)
        if q.video_id:
            m &= self.video_id == q.video_id
        if detector_ids is not None:
            m &= np.isin(self.video_id, detector_ids)
        if superseded:
            m &= ~np.isin(self.video_id, list(superseded))
        return m

    def rank(self, mask: np.ndarray, queries: dict[str, np.ndarray], weights: dict[str, float], limit: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows (catalog positions) and similarities of the best `limit` rows under `mask`."""
        rows = np.flatnonzero(mask)
        if len(rows) == 0:
            return rows, np.zeros(0)
        c = max(CANDIDATES, CANDIDATES_PER_RESULT * limit)
        fraction = len(rows) / len(mask)
        if len(rows) > max(GATHER_MAX, c) and fraction >= IVF_MIN_FRACTION and all(n in self.ivf for n in queries):
            rows = self._ivf_candidates(mask, fraction, queries, c)
        elif len(rows) > GATHER_MAX and any(name in self.reduced for name in queries):
            approx = self._similarity(rows, queries, weights, reduced=True)
            if len(rows) > c:
                rows = rows[np.argpartition(-approx, c - 1)[:c]]
        sims = self._similarity(rows, queries, weights)
        if len(rows) > limit:  # keep the best `limit` and anything tied with the last (ties by id below)
            cut = np.partition(sims, len(sims) - limit)[len(sims) - limit]
            keep = np.flatnonzero(sims >= cut)
            rows, sims = rows[keep], sims[keep]
        order = np.lexsort((self.segment_id[rows].astype(str), -sims))[:limit]
        return rows[order], sims[order]

    def _ivf_candidates(self, mask: np.ndarray, fraction: float, queries: dict[str, np.ndarray], c: int) -> np.ndarray:
        """Candidates from each query vector's IVF index, the mask applied during the scan of the
        probed lists (faiss IDSelectorBitmap: a pre-filter); more lists probed the narrower the mask."""
        import faiss

        sel = None if fraction >= 1 else faiss.IDSelectorBitmap(np.packbits(mask, bitorder="little"))
        nprobe = min(IVF_LISTS, int(np.ceil(IVF_NPROBE / max(fraction, 1e-9))))
        found = []
        for name, v in queries.items():
            params = faiss.SearchParametersIVF(nprobe=nprobe, sel=sel)
            _, ids = self.ivf[name].search(np.asarray(v, np.float32)[None], c, params=params)
            found.append(ids[0][ids[0] >= 0])
        return np.unique(np.concatenate(found))

    def _similarity(self, rows: np.ndarray, queries: dict[str, np.ndarray], weights: dict[str, float],
                    reduced: bool = False) -> np.ndarray:
        """Weighted cosine over `rows`: exact, or (reduced=True) through the PCA copies, where
        x.q ~ mean.q + (P'(x - mean)).(P'q) and the constant mean.q is left out (same for all rows)."""
        total = np.zeros(len(rows))
        for name, v in queries.items():
            if (name in self.reduced and not reduced) or (name not in self._scan and len(rows) <= GATHER_MAX):
                part = self._gather(name, rows) @ v
            else:
                m = self.scan(name)
                qv = v @ self.reduced[name][1] if name in self.reduced else v
                # one matrix-vector product over all rows beats gathering the rows first unless few are left
                part = (m @ qv)[rows] if len(rows) > len(m) // 8 else m[rows] @ qv
            total += weights[name] * part
        return total / sum(weights.values())


def _codes(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(dictionary values, per-row codes; -1 for null) of a string column."""
    enc = col.combine_chunks().dictionary_encode()
    return (np.asarray(enc.dictionary.to_pylist(), object),
            np.asarray(enc.indices.fill_null(-1).to_numpy(zero_copy_only=False), np.int64))


def _in(coded: tuple[np.ndarray, np.ndarray], wanted: list[str]) -> np.ndarray:
    values, codes = coded
    hit = np.append(np.isin(values, wanted), False)  # code -1 (null) -> the trailing False
    return hit[codes]


def load_sidecar(ix: Any) -> Sidecar | None:
    """The index's sidecar if it exists and covers exactly the current segment files, else None."""
    root = local_root(ix)
    state_path = os.path.join(root, "state.json")
    if not os.path.exists(state_path):
        return None
    cached = getattr(ix, "_sidecar", None)
    with open(state_path) as f:
        state = json.load(f)
    files = set(state["files"])
    if state.get("format") != FORMAT or files != {f for f, _ in ix.files}:
        return None
    if cached is None or cached.root != root or set(cached.state["files"]) != files:
        ix._sidecar = Sidecar(root)
    return ix._sidecar

