"""Batch writes on a Delta index: the worker that writes K finished videos' rows as one file per
table and partition, and the driver's side that commits each batch (`index.batches`).

Ray Data hands the writer K summary rows at a time (map_batches' batch size: the assembler's
one-row outputs are bundled until K are there, the rest at the end of the stream). The writer
returns the same summary rows without their payloads, the batch's add actions riding on the
first row; the driver commits them when that row arrives, so what a kill loses is the batches in
flight and never a committed one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from exvad_ray.index import batches, idmap
from exvad_ray.pipeline.assemble import PAYLOAD

ADDS = "batch_adds"  # JSON {table: [add action]} of a batch, on its first row ("" on the others)
CACHE_EVERY = 256  # batches between refreshes of the id cache (a few thousand videos: ~1 s of reads)


class BatchWriter:
    """Writes a batch of finished videos (one Parquet file per table and partition)."""

    def __init__(self, index: str):
        self.index = index

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        payloads = batch.pop(PAYLOAD)
        ok = [i for i, p in enumerate(payloads) if p is not None and len(p)]
        adds = batches.write_batch(self.index, [bytes(payloads[i]) for i in ok]) if ok else {}
        n = len(payloads)
        col = [""] * n
        if ok:
            col[0] = json.dumps({"adds": adds, "video_ids": [str(batch["video_id"][i]) for i in ok]})
        batch[ADDS] = np.array(col, dtype=object)
        return batch


class BatchCommitter:
    """The driver's side: commits each batch as the run's next batch number (app id = run id, or
    a scoring id; numbers go on counting across reruns), to `tables` in order, the last one (its
    row marks a video done) last. `prefix`: the tables' path under the index when the writers name
    them by their short names (a rescoring's ``scorings/<id>/``)."""

    def __init__(self, index: str, app_id: str, tables: Sequence[str] = batches.BATCH_TABLES, prefix: str = "",
                 cached: Sequence[str] = idmap.PLANNED_TABLES):
        self.index, self.app_id, self.tables, self.prefix = index, app_id, tuple(tables), prefix
        self.cached = [t for t in self.tables if t.rsplit("/", 1)[-1] in cached]
        self.batch = batches.next_batch(index, app_id, self.tables)
        self.committed = 0  # videos
        self.batches = 0

    def __call__(self, row: dict[str, Any]) -> None:
        doc = row.pop(ADDS, "")
        if not doc:
            return
        batch = json.loads(doc)
        adds = {self.prefix + t: a for t, a in batch["adds"].items()}
        batches.commit_batch(self.index, self.app_id, self.batch, adds, batch["video_ids"], self.tables)
        self.batch += 1
        self.batches += 1
        self.committed += len(batch["video_ids"])
        if self.batches % CACHE_EVERY == 0:
            self.finish()

    def finish(self) -> None:
        """Record the committed files' video ids in the index's id cache (`index.idmap`) for the
        tables a planning reads (the done set, the snippets files' ids): every `CACHE_EVERY`
        batches and at the end, so that the next rerun or rescoring does not open every file
        (`cached`: a rescoring's own `videos`, its done set)."""
        idmap.warm(self.index, self.cached)
