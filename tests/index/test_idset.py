"""The done set (exvad_ray.index.store.IdSet): exact membership for uuid ids (held as sorted
16-byte keys), other ids, chunks, an excluded set, and lookups by raw 16-byte keys."""

from __future__ import annotations

import uuid

import numpy as np
import pyarrow as pa

from exvad_ray.index.store import IdSet


def test_membership_is_exact():
    rng = np.random.default_rng(0)
    ids = [str(uuid.UUID(bytes=rng.bytes(16))) for _ in range(150_000)]
    ids += ["not-a-uuid", "00000000-0000-0000-0000-000000000000", "00000000-0000-0000-0000-000000000100"]
    s = IdSet.from_chunks([pa.array(ids[:70_000]), pa.array(ids[70_000:])])
    assert len(s) == len(ids)
    probe = ids[::7] + [str(uuid.uuid4()) for _ in range(500)] + ["other", "00000000-0000-0000-0000-000000000001",
                                                                   "00000000-0000-0000-0000-000000000100"]
    known = set(ids)
    assert s.contains(pa.array(probe)).tolist() == [p in known for p in probe]
    raw = np.frombuffer(b"".join(uuid.UUID(i).bytes for i in ids[:50] + [str(uuid.uuid4())]), np.uint8).reshape(-1, 16)
    assert s.contains_keys(raw).tolist() == [True] * 50 + [False]


def test_exclude_and_empty():
    ids = [str(uuid.uuid4()) for _ in range(1000)] + ["odd-one"]
    failed = IdSet(pa.array(ids[:100] + ["odd-one"]))
    s = IdSet.from_chunks([pa.array(ids)], exclude=failed)
    assert len(s) == 900
    assert not s.contains(pa.array(ids[:100] + ["odd-one"])).any() and s.contains(pa.array(ids[100:-1])).all()
    empty = IdSet()
    assert len(empty) == 0 and not empty.contains(pa.array(ids[:3])).any()
