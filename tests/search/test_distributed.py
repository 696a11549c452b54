"""`exvad search --ray`: the same queries as a Ray Data job give the same segments as the embedded engine."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from exvad_ray.search.distributed import search_ray
from exvad_ray.search.engine import SegmentIndex

pytestmark = pytest.mark.slow


def test_ray_job_gives_the_same_results(built_index):
    import ray

    index = built_index["index"]
    ix = SegmentIndex(index)
    rows = ix.search(limit=1000).to_pylist()
    ray.init(address="local", num_cpus=2, object_store_memory=200 * 1024**2, include_dashboard=False)
    try:
        cases = [{}, {"limit": 2}, {"cameras": [rows[0]["camera"]]}, {"min_score": rows[len(rows) // 2]["score"]},
                 {"since": dt.datetime(2026, 11, 24, 23, tzinfo=dt.timezone.utc)}, {"classes": [rows[0]["label"]]},
                 {"like": rows[-1]["segment_id"], "limit": 3}, {"text": "people fighting near the exit", "limit": 4},
                 {"like": rows[0]["segment_id"], "cameras": [rows[-1]["camera"]]}]
        for case in cases:
            a, b = ix.search(**case), search_ray(index, **case)
            assert b.column("segment_id").to_pylist() == a.column("segment_id").to_pylist(), case
            if "similarity" in a.column_names:
                assert np.allclose(b.column("similarity").to_numpy(), a.column("similarity").to_numpy(), atol=1e-5)
            assert b.drop([c for c in ("similarity",) if c in b.column_names]).to_pylist() == \
                a.drop([c for c in ("similarity",) if c in a.column_names]).to_pylist()
    finally:
        ray.shutdown()
