"""The fused layout: the declared model stages chained in one process (`FusedModelStage`), and with
decoding in front of them (`DecodeAndModelStage`, the CPU-only layout of the archive job).

On a CPU machine every separate actor pool costs a process with its own torch and models (about
0.6 GB each) plus a serialisation hop per window, while buying no parallelism that more actors of
one kind do not give. So without GPUs the job runs the same stage classes, in the same order, in
one actor per core. With GPUs, stages keep their own pools so each gets its own GPU share.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from exvad_ray.pipeline.stages import Stage


class FusedModelStage:
    """The declared model stages (visual -> ... -> scoring), in order, in one actor; each stage's
    declared ``drops`` are popped right after it runs, as the per-stage layout drops them."""

    def __init__(self, stages: Sequence[Stage], torch_threads: int | None = None):
        self.names = [s.name for s in stages]
        self.drops = [tuple(s.drops) for s in stages]
        self.chain = [s.instance() for s in stages]
        self.torch_threads = torch_threads
        self._ready = False

    def setup(self) -> None:
        if self._ready:
            return
        if self.torch_threads:
            import torch

            torch.set_num_threads(self.torch_threads)
        for stage in self.chain:
            getattr(stage, "setup", lambda: None)()
        self._ready = True

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        self.setup()
        for stage, drops in zip(self.chain, self.drops):
            batch = stage(batch)
            for col in drops:
                batch.pop(col)
        return batch


class DecodeAndModelStage:
    """CPU-only clusters: decode and every model stage in one actor, one video per call.

    On CPU the models are a small part of the work next to decoding (tiny profile: 3%), while moving
    a window's frames (up to 38 MB) from a decode task to a model actor through the object store and
    Ray Data's ragged-tensor batches cost the model actor about as much CPU as decoding in the first
    place. So here frames never leave the process that decoded them: each actor (one per core) runs
    the decode stage and the model chain window by window, and only features, scores and
    thumbnails go on to the assembler. Errors are handled exactly as in the separate stages.
    """

    def __init__(self, stages: Sequence[Stage], torch_threads: int | None = None):
        if not stages or stages[0].name != "decode":
            raise ValueError("the fused chain starts with the decode stage")
        self.decode = stages[0].instance()
        self.models = FusedModelStage(stages[1:], torch_threads)

    def __call__(self, batch: dict[str, Any]) -> Iterator[dict[str, Any]]:
        for item in batch_rows(batch):
            yield from self.windows(item)

    def windows(self, item: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """One archive item -> its window batches, models applied (none for a bad video)."""
        self.models.setup()
        for row in self.decode(item):
            yield self.models(one_row_batch(row))


def batch_rows(batch: dict[str, Any]) -> list[dict[str, Any]]:
    """A numpy batch -> row dicts with plain Python values."""
    n = len(next(iter(batch.values()))) if batch else 0
    return [{k: (v[i].item() if hasattr(v[i], "item") and np.ndim(v[i]) == 0 else v[i]) for k, v in batch.items()}
            for i in range(n)]


def one_row_batch(row: dict[str, Any]) -> dict[str, np.ndarray]:
    """One row -> a numpy batch of one (arrays and bytes as object cells, scalars typed)."""
    out: dict[str, np.ndarray] = {}
    for key, value in row.items():
        if isinstance(value, (np.ndarray, bytes, list, dict)) or value is None:
            col = np.empty(1, dtype=object)
            col[0] = value
        else:
            col = np.asarray([value])
        out[key] = col
    return out
