"""The halves of a snippet's visual embedding, scored separately.

`lite` stores [appearance | motion] (2 x 1280, each half L2-normalised; docs/CONTRACTS.md "visual
embedding"); tiny/paper store one CLIP vector, i.e. one half. Scoring the halves separately matters
twice: an event can be unusual in motion only (a fall in a familiar place) or in appearance only (a
fire where people walk as usual), and a joint cosine lets the ordinary half dilute the unusual one;
and the evidence can say *which* half is unusual. The layout is read from the vectors themselves
(each half unit-norm), so this package needs no profile: a profile's `visual_offset` is the same cut.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from exvad_ray.errors import ExvadError

APPEARANCE, MOTION, WHOLE = "appearance", "motion", "visual"


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where each half lies in the stored vector: `bounds[i] = (start, end)`, named `names[i]`."""

    dim: int
    names: tuple[str, ...]
    bounds: tuple[tuple[int, int], ...]

    def split(self, vectors: np.ndarray) -> list[np.ndarray]:
        """One (n, d_i) float32 array per half, each row L2-normalised (cosine by inner product)."""
        x = np.asarray(vectors, np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ExvadError(f"embeddings have shape {x.shape}; this model scores {self.dim}-d vectors")
        return [normalise(x[:, a:b]) for a, b in self.bounds]

    def to_dict(self) -> dict:
        return {"dim": self.dim, "names": list(self.names), "bounds": [list(b) for b in self.bounds]}

    @classmethod
    def from_dict(cls, d: dict) -> Layout:
        return cls(int(d["dim"]), tuple(d["names"]), tuple((int(a), int(b)) for a, b in d["bounds"]))


def normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12), np.float32)


def detect_layout(sample: np.ndarray, tol: float = 1e-2) -> Layout:
    """Two halves when the vector's halves are each unit-norm (lite with motion: norm sqrt(2)),
    else one whole vector. `sample`: a few rows (n, D)."""
    x = np.asarray(sample, np.float32)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ExvadError("no embeddings to read the layout from (is the visual_embedding column empty?)")
    dim = int(x.shape[1])
    if dim % 2 == 0:
        h = dim // 2
        n1, n2 = np.linalg.norm(x[:, :h], axis=1), np.linalg.norm(x[:, h:], axis=1)
        if np.all(np.abs(n1 - 1) < tol) and np.all(np.abs(n2 - 1) < tol):
            return Layout(dim, (APPEARANCE, MOTION), ((0, h), (h, dim)))
    return Layout(dim, (WHOLE,), ((0, dim),))
