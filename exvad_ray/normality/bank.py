"""The bank of normal snippets: built with bounded memory, searched by cosine k-NN per half.

Why a coreset of real snippets rather than k-means centres: the evidence for a flagged segment is
"the nearest normal moment" - a video, a time, a similarity the analyst can open and look at. A
k-means centre is an average of many moments and has no video or time; a coreset entry *is* a
snippet. Greedy k-center (PatchCore's coreset) keeps the bank's coverage of normal footage: every
candidate lies close to some kept entry, so reducing the bank moves k-NN distances little, while
frequent moments (many near-duplicates) are thinned, which is what bounds the size.

Memory is bounded by `cap` (the reservoir of candidate snippets) whatever the archive's size: the
builder sees every snippet once and keeps a uniform sample (reservoir sampling). Snippets an
analyst marked as false alarms are *pinned*: always kept, never trimmed, never excluded when their
own video is scored (so that segment stops being unusual).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from exvad_ray.errors import ExvadError
from exvad_ray.normality.halves import Layout

PROJECTION_DIM = 128  # random projection for trimming and the coreset (distances kept, JL)


@dataclasses.dataclass
class Bank:
    """Normal snippets of one camera (or the global bank): vectors (m, D) with each half
    L2-normalised, and per entry the video (index into `videos`), snippet index, start time,
    camera (index into `cameras`) and whether an analyst pinned it (a false-alarm verdict)."""

    layout: Layout
    vectors: np.ndarray
    video: np.ndarray
    snippet: np.ndarray
    start_s: np.ndarray
    camera: np.ndarray
    pinned: np.ndarray
    videos: list[str]
    cameras: list[str]
    k: int = 5
    sources: dict = dataclasses.field(default_factory=dict)  # candidates seen/kept/trimmed, for the card

    def __post_init__(self) -> None:
        self._indexes: list | None = None
        self._video_pos = {v: i for i, v in enumerate(self.videos)}

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    def _faiss(self) -> list:
        if self._indexes is None:
            import faiss

            self._indexes = []
            for a, b in self.layout.bounds:
                ix = faiss.IndexFlatIP(b - a)
                ix.add(np.ascontiguousarray(self.vectors[:, a:b]))
                self._indexes.append(ix)
        return self._indexes

    def search(self, vectors: np.ndarray, exclude_video: str | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """k-NN of each row per half. Returns raw (n, H): mean cosine distance to the k nearest
        entries of each half; nearest (n,): the entry most similar over both halves together among
        those neighbours (-1 when none); similarity (n,): its mean cosine over the halves.
        `exclude_video`: leave that video's own entries out (leave-one-video-out), pinned ones kept."""
        halves = self.layout.split(vectors)
        n, m = len(halves[0]), len(self)
        if m == 0:
            raise ExvadError("the normality bank is empty")
        own = np.zeros(m, bool)
        pos = self._video_pos.get(exclude_video) if exclude_video is not None else None
        if pos is not None:
            own = (self.video == pos) & ~self.pinned
        usable = m - int(own.sum())
        if usable <= 0:
            raise ExvadError(f"the bank holds only video {exclude_video}: nothing to compare it with")
        kk = min(self.k, usable)
        want = min(m, kk + int(own.sum()))
        raw = np.empty((n, len(halves)), np.float32)
        cand = []
        for h, (ix, q) in enumerate(zip(self._faiss(), halves)):
            sims, ids = ix.search(q, want)
            keep = (ids >= 0) & ~own[np.maximum(ids, 0)]
            # the first kk usable neighbours of each row (rows keep their order: faiss sorts by similarity)
            order = np.argsort(~keep, axis=1, kind="stable")[:, :kk]
            top_s = np.take_along_axis(sims, order, 1)
            raw[:, h] = (1.0 - top_s).mean(1)
            cand.append(np.take_along_axis(ids, order, 1))
        cands = np.concatenate(cand, 1)  # (n, H*kk)
        q_cat = np.concatenate(halves, 1)
        sim = np.einsum("nd,ncd->nc", q_cat, self.vectors[cands]) / len(halves)
        best = sim.argmax(1)
        return raw, cands[np.arange(n), best], sim[np.arange(n), best].astype(np.float32)

    def entry(self, i: int) -> dict:
        """The normal moment entry `i` stands for (evidence)."""
        return {"video_id": self.videos[int(self.video[i])], "snippet_index": int(self.snippet[i]),
                "start_s": float(self.start_s[i]), "camera": self.cameras[int(self.camera[i])]}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"vectors": self.vectors, "video": self.video, "snippet": self.snippet, "start_s": self.start_s,
                "camera": self.camera, "pinned": self.pinned}


class BankBuilder:
    """Streams snippets in (`add`, one video's rows at a time, any order) and keeps at most `cap`
    candidates (uniform reservoir sample) plus the pinned ones (at most `cap` as well); `build`
    trims and reduces them to a bank of at most `bank_size` entries."""

    def __init__(self, layout: Layout, cap: int = 20000, seed: int = 0):
        if cap < 1:
            raise ExvadError("the candidate cap must be at least 1")
        self.layout, self.cap = layout, cap
        self.rng = np.random.default_rng(seed)
        self.seen = 0
        self.n = 0
        self.vectors = np.zeros((0, layout.dim), np.float32)
        self.meta = np.zeros((0, 4), np.float64)  # video, snippet, start_s, camera
        self.pinned_vectors: list[np.ndarray] = []
        self.pinned_meta: list[np.ndarray] = []
        self.n_pinned = 0
        self.videos: dict[str, int] = {}
        self.cameras: dict[str, int] = {}

    def _ids(self, video_id: str, camera: str) -> tuple[int, int]:
        v = self.videos.setdefault(video_id, len(self.videos))
        c = self.cameras.setdefault(camera, len(self.cameras))
        return v, c

    def add(self, video_id: str, camera: str, vectors: np.ndarray, snippet_index: np.ndarray,
            start_s: np.ndarray, pinned: np.ndarray | None = None) -> None:
        x = np.concatenate(self.layout.split(vectors), 1)
        if len(x) == 0:
            return
        v, c = self._ids(video_id, camera)
        meta = np.stack([np.full(len(x), v), np.asarray(snippet_index, np.float64),
                         np.asarray(start_s, np.float64), np.full(len(x), c)], 1)
        pin = np.zeros(len(x), bool) if pinned is None else np.asarray(pinned, bool)
        if pin.any():
            take = np.flatnonzero(pin)[: max(0, self.cap - self.n_pinned)]
            self.pinned_vectors.append(x[take])
            self.pinned_meta.append(meta[take])
            self.n_pinned += len(take)
            x, meta = x[~pin], meta[~pin]
        self._reservoir(x, meta)

    def _reservoir(self, x: np.ndarray, meta: np.ndarray) -> None:
        free = min(self.cap - self.n, len(x))
        if free > 0:
            if self.n + free > len(self.vectors):  # grow by doubling, never past cap
                size = min(self.cap, max(2 * len(self.vectors), self.n + free, 256))
                self.vectors = np.resize(self.vectors, (size, self.layout.dim))
                self.meta = np.resize(self.meta, (size, 4))
            self.vectors[self.n:self.n + free] = x[:free]
            self.meta[self.n:self.n + free] = meta[:free]
            self.n += free
            self.seen += free
            x, meta = x[free:], meta[free:]
        if len(x):
            # algorithm R, vectorised: row t (0-based count seen) replaces slot r ~ U[0, t] if r < cap
            t = self.seen + np.arange(len(x))
            r = (self.rng.random(len(x)) * (t + 1)).astype(np.int64)
            hit = np.flatnonzero(r < self.cap)
            self.vectors[r[hit]] = x[hit]  # repeated slots: the later row wins, as sequentially
            self.meta[r[hit]] = meta[hit]
            self.seen += len(x)

    def build(self, bank_size: int = 8000, trim_fraction: float = 0.01, k: int = 5, seed: int = 0) -> Bank:
        """Trim the most isolated `trim_fraction` of candidates (mean distance to the k nearest
        snippets of *other* videos; pinned never trimmed), then reduce to `bank_size` entries by
        greedy k-center (pinned always kept)."""
        x = self.vectors[: self.n]
        meta = self.meta[: self.n]
        n_pin = self.n_pinned
        if n_pin:
            x = np.concatenate([np.concatenate(self.pinned_vectors), x])
            meta = np.concatenate([np.concatenate(self.pinned_meta), meta])
        pinned = np.arange(len(x)) < n_pin
        if len(x) == 0:
            raise ExvadError("the normality bank is empty: no snippet of the selected footage was read")
        rng = np.random.default_rng(seed)
        proj = _project(x, rng)
        keep = np.ones(len(x), bool)
        n_trim = int(np.floor(trim_fraction * (len(x) - n_pin)))
        if n_trim > 0:
            iso = isolation(proj, meta[:, 0].astype(np.int64), k)
            iso[pinned] = -np.inf
            keep[np.argsort(-iso, kind="stable")[:n_trim]] = False
        idx = np.flatnonzero(keep)
        if len(idx) > bank_size:
            chosen = k_center(proj[idx], bank_size, first=np.flatnonzero(pinned[idx]), rng=rng)
            idx = idx[np.sort(chosen)]
        videos = list(self.videos)
        cams = list(self.cameras)
        m = meta[idx]
        return Bank(self.layout, np.ascontiguousarray(x[idx]), m[:, 0].astype(np.int32), m[:, 1].astype(np.int32),
                    m[:, 2].astype(np.float64), m[:, 3].astype(np.int32), pinned[idx].copy(), videos, cams, k,
                    sources={"snippets_seen": int(self.seen + n_pin), "candidates": int(len(x)),
                             "pinned": int(n_pin), "trimmed": int(n_trim), "entries": int(len(idx)),
                             "videos": len(videos)})


def _project(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if x.shape[1] <= PROJECTION_DIM:
        return np.ascontiguousarray(x, np.float32)
    r = rng.standard_normal((x.shape[1], PROJECTION_DIM)).astype(np.float32) / np.sqrt(PROJECTION_DIM)
    out = np.empty((len(x), PROJECTION_DIM), np.float32)
    for s in range(0, len(x), 8192):  # bounded temporaries
        out[s:s + 8192] = x[s:s + 8192] @ r
    return out


def isolation(x: np.ndarray, video: np.ndarray, k: int = 5) -> np.ndarray:
    """Mean Euclidean distance of each row to its k nearest rows of other videos (a row whose video
    is the only one: its k nearest other rows). Large = isolated."""
    import faiss

    n = len(x)
    if n < 2:
        return np.zeros(n, np.float32)
    ix = faiss.IndexFlatL2(x.shape[1])
    ix.add(np.ascontiguousarray(x, np.float32))
    one_video = len(np.unique(video)) < 2
    max_own = 1 if one_video else int(np.bincount(video - video.min()).max())
    want = min(n, k + max_own)
    out = np.empty(n, np.float32)
    for s in range(0, n, 4096):
        d, ids = ix.search(np.ascontiguousarray(x[s:s + 4096]), want)
        rows = np.arange(s, min(n, s + 4096))
        other = (ids >= 0) & ((ids != rows[:, None]) if one_video else (video[np.maximum(ids, 0)] != video[rows, None]))
        order = np.argsort(~other, axis=1, kind="stable")[:, :k]
        dd = np.sqrt(np.maximum(np.take_along_axis(d, order, 1), 0))
        ok = np.take_along_axis(other, order, 1)
        out[rows] = np.where(ok.any(1), (dd * ok).sum(1) / np.maximum(ok.sum(1), 1), 0)
    return out


def k_center(x: np.ndarray, size: int, first: Sequence[int] = (), rng: np.random.Generator | None = None) -> np.ndarray:
    """Greedy k-center (farthest-point) selection of `size` rows of x, starting from `first` (kept)
    or one random row: each step adds the row farthest from everything chosen."""
    n = len(x)
    if size >= n:
        return np.arange(n)
    rng = rng or np.random.default_rng(0)
    chosen = list(dict.fromkeys(int(i) for i in first))[:size]
    x = np.ascontiguousarray(x, np.float32)
    sq = (x * x).sum(1)
    dist = np.full(n, np.inf, np.float32)
    buf = np.empty(n, np.float32)

    def update(i: int) -> None:  # squared distances to row i, in place (this loop is the cost)
        np.dot(x, x[i], out=buf)
        np.multiply(buf, -2.0, out=buf)
        np.add(buf, sq, out=buf)
        np.add(buf, sq[i], out=buf)
        np.minimum(dist, buf, out=dist)

    if not chosen:
        chosen = [int(rng.integers(n))]
    for i in chosen:
        update(i)
    while len(chosen) < size:
        i = int(dist.argmax())
        chosen.append(i)
        update(i)
    return np.asarray(chosen, np.int64)
