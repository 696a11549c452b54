"""Batch writes on a Delta index: finished videos gathered into batches of K videos or T seconds,
written by a worker as one file per table and partition, committed by the driver (`index.batches`).

The assembler's summary rows carry each finished video's rows (`PAYLOAD`) to the driver. The
driver's `BatchCommitter` keeps them until `every` videos are there or the oldest has waited
`seconds`, then hands the batch to a Ray task that writes the files, and commits each written batch
in order. The time bound is why the batching is the driver's and not Ray Data's: map_batches
bundles a fixed count and has no end-of-stream hook, so on slow footage (a long video per minute) a
batch of 16 could wait a quarter of an hour, all of it lost to a kill. Now a kill loses at most the
batch being gathered and the batches being written, never a committed one, and never more than about
T seconds of finished videos. A rescoring's tasks write their own files per block (small, quick
blocks): their rows carry the written batch's add actions (`ADDS`) and are committed as they come.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from collections.abc import Sequence
from typing import Any

from exvad_ray.index import batches, idmap
from exvad_ray.pipeline.assemble import PAYLOAD

ADDS = "batch_adds"  # JSON {"adds": {table: [add action]}, "video_ids": [...]} of a block a task wrote
CACHE_EVERY = 256  # batches between refreshes of the id cache (a few thousand videos: ~1 s of reads)
COMMIT_SECONDS = 60.0  # default T: a finished video waits at most this long for its batch's commit
TICK_S = 1.0  # how often the driver looks at the age of the batch being gathered


def write_payloads(index: str, payloads: list[bytes]) -> dict[str, list[dict[str, Any]]]:
    """The Ray task: a batch of finished videos' rows written as one file per table and partition;
    returns the add actions by table."""
    return batches.write_batch(index, payloads)


class BatchCommitter:
    """The driver's side: gathers finished videos (`__call__` on each summary row), has each batch
    written by a task, and commits the batches in order as the run's next batch numbers (app id =
    run id, or a scoring id; numbers go on counting across reruns), to `tables` in order, the last
    one (its row marks a video done) last. `every`: videos per batch (K); `seconds`: the longest a
    finished video waits before its batch is written (T; None: no bound). `prefix`: the tables' path
    under the index when the writers name them by their short names (a rescoring's
    ``scorings/<id>/``). Use as a context manager, or call `close` at the end of the stream."""

    def __init__(self, index: str, app_id: str, tables: Sequence[str] = batches.BATCH_TABLES, prefix: str = "",
                 cached: Sequence[str] = idmap.WARM_TABLES, every: int = 16, seconds: float | None = None):
        self.index, self.app_id, self.tables, self.prefix = index, app_id, tuple(tables), prefix
        self.cached = [t for t in self.tables if t.rsplit("/", 1)[-1] in cached]
        self.every, self.seconds = max(1, int(every)), seconds
        self.batch = batches.next_batch(index, app_id, self.tables)
        self.committed = 0  # videos
        self.batches = 0
        self.timed = 0  # batches written because their oldest video had waited `seconds`
        self._lock = threading.RLock()
        self._gathered: list[tuple[str, bytes]] = []
        self._since = 0.0  # when the oldest gathered video arrived
        self._writing: collections.deque[tuple[Any, list[str]]] = collections.deque()
        self._failed: BaseException | None = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        if seconds is not None:
            self._ticker = threading.Thread(target=self._tick, name="exvad-commit-timer", daemon=True)
            self._ticker.start()

    def __enter__(self) -> BatchCommitter:
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        if kind is None:
            self.close()
        else:  # the job failed: commit nothing more (a rerun redoes the uncommitted videos)
            self._stop.set()

    def __call__(self, row: dict[str, Any]) -> None:
        """One summary row from the stream: its payload (a finished video's rows) gathered, or the
        add actions of a block a task wrote committed. Both keys are removed from the row."""
        payload = row.pop(PAYLOAD, None)
        doc = row.pop(ADDS, "")
        with self._lock:
            self._raise_failure()
            if payload is not None and len(payload):
                if not self._gathered:
                    self._since = time.monotonic()
                self._gathered.append((str(row["video_id"]), bytes(payload)))
                if len(self._gathered) >= self.every:
                    self._write()
            if doc:
                block = json.loads(doc)
                self._commit(block["adds"], block["video_ids"])
            self._collect(wait=False)

    def close(self) -> None:
        """The end of the stream: the last batch written and every batch committed, then the id cache
        recorded (`finish`)."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        with self._lock:
            self._raise_failure()
            self._write()
            self._collect(wait=True)
        self.finish()

    def finish(self) -> None:
        """Record the committed files' video ids in the index's id cache (`index.idmap`): every
        `CACHE_EVERY` batches and at the end, so that the next rerun, rescoring or delete of
        replaced videos does not open every file (`cached`: a rescoring's own `videos`, its done
        set)."""
        idmap.warm(self.index, self.cached)

    def _tick(self) -> None:
        """The timer: writes the gathered batch once its oldest video has waited `seconds`, and
        commits what the tasks have written, even while no row arrives (a long video decoding)."""
        assert self.seconds is not None
        while not self._stop.wait(min(TICK_S, self.seconds)):
            with self._lock:
                if self._failed is not None:
                    return
                try:
                    if self._gathered and time.monotonic() - self._since >= self.seconds:
                        self.timed += 1
                        self._write()
                    self._collect(wait=False)
                except BaseException as exc:  # noqa: BLE001 - raised on the driver's thread at its next call
                    self._failed = exc
                    return

    def _raise_failure(self) -> None:
        if self._failed is not None:
            raise self._failed

    def _write(self) -> None:
        """Hand the gathered batch to a writing task (none when nothing is gathered)."""
        if not self._gathered:
            return
        ids = [v for v, _ in self._gathered]
        ref = _remote_writer().remote(self.index, [p for _, p in self._gathered])
        self._writing.append((ref, ids))
        self._gathered = []

    def _collect(self, wait: bool) -> None:
        """Commit the written batches in the order they were handed out (batch numbers rise by one),
        stopping at the first still being written unless `wait`. A task that failed raises here."""
        if not self._writing:
            return
        import ray

        while self._writing:
            ref, ids = self._writing[0]
            if not wait and not ray.wait([ref], timeout=0)[0]:
                return
            adds = ray.get(ref)
            self._writing.popleft()
            self._commit(adds, ids)

    def _commit(self, adds: dict[str, list[dict[str, Any]]], video_ids: list[str]) -> None:
        batches.commit_batch(self.index, self.app_id, self.batch, {self.prefix + t: a for t, a in adds.items()},
                             video_ids, self.tables)
        self.batch += 1
        self.batches += 1
        self.committed += len(video_ids)
        if self.batches % CACHE_EVERY == 0:
            self.finish()


_writer: Any = None


def _remote_writer() -> Any:
    """`write_payloads` as a Ray task, made once per process. No CPU reserved: the decode actors hold
    the cores for the whole job, and a task asking for one could wait behind them for ever; a
    batch's Parquet encoding is a few milliseconds per video. Retried when its worker dies: a retry
    writes new files, and the first attempt's are in no commit (vacuum removes them)."""
    global _writer
    if _writer is None:
        import ray

        _writer = ray.remote(num_cpus=0, max_retries=3)(write_payloads)
    return _writer
