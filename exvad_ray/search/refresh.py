"""After a run or a rescoring is committed: bring the search sidecar up to date (the commands call
this; the pipeline that wrote the index knows nothing of search)."""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Callable

from exvad_ray import storage
from exvad_ray.search import vectors
from exvad_ray.search.engine import SegmentIndex
from exvad_ray.search.sql import run_sql

log = logging.getLogger(__name__)


def refresh_after_run(index: str, echo: Callable[[str], Any] = print, scoring: str = "process") -> dict[str, Any] | None:
    """Called once a run's data is committed (the archive job: scoring "process"; `exvad rescore`: its
    scoring id): bring that scoring's sidecar up to date (only the new files are read). Creates one
    only for a local index of `vectors.AUTO_BUILD_MIN` segments or more. Never raises: a failure is a warning
    (the run's data is already safe; `exvad search --update-vectors` retries) and returns None."""
    try:
        if storage.is_remote(index):
            return None  # a remote index's sidecar is a cache on the machine that searches it
        ix = SegmentIndex(index, scoring=scoring)
        root = vectors.local_root(ix)
        if not os.path.exists(os.path.join(root, "state.json")):
            files = [f for f, _ in ix.files] if ix._list(ix._segments_table()) else []
            if not files:
                return None
            n = run_sql(ix.con, "SELECT coalesce(sum(num_rows), 0) AS n FROM parquet_file_metadata(?)", [files])
            if int(n.column("n")[0].as_py()) < vectors.AUTO_BUILD_MIN:
                return None
        t0 = time.time()
        before = json.load(open(os.path.join(root, "state.json"))).get("rows", 0) \
            if os.path.exists(os.path.join(root, "state.json")) else 0
        state = vectors.update_sidecar(ix)
        out = {"rows": state["rows"], "chunks": state["chunks"], "seconds": round(time.time() - t0, 2), "root": root}
        echo(f"[exvad] search sidecar ({scoring}): {state['rows']} segments ({state['rows'] - before:+d}) "
             f"in {out['seconds']:.1f} s")
        return out
    except Exception as exc:  # noqa: BLE001 - the run's data is committed; the sidecar is a derived cache
        log.warning("search sidecar not updated for %s: %s", index, exc)
        echo(f"[exvad] warning: the search sidecar of {index} was not updated ({type(exc).__name__}: {exc}); "
             "the run's data is safe; `exvad search --index ... --update-vectors` retries")
        return None
