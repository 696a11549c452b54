"""Recording time: from the path's date and time, else the container's creation_time, else the path's
date alone, else unknown - never the processing time."""

from __future__ import annotations

import datetime as dt

import pytest

from exvad_ray.pipeline.decode import recorded_time
from exvad_ray.index.partitions import PartitionRules, parse_creation_time, recorded_at

UTC = dt.timezone.utc
RULES = PartitionRules("s3://b/archive", fallback_date="2026-12-01")


@pytest.mark.parametrize("uri,expected", [
    ("s3://b/archive/cam3/20261124_223015.mp4", (dt.datetime(2026, 11, 24, 22, 30, 15, tzinfo=UTC), True)),
    ("s3://b/archive/cam3/2026-11-24T22-30.mp4", (dt.datetime(2026, 11, 24, 22, 30, tzinfo=UTC), True)),
    ("s3://b/archive/cam3/2026-11-24/clip.mp4", (dt.datetime(2026, 11, 24, tzinfo=UTC), False)),
    ("s3://b/archive/cam1/2026-11-05-001.mp4", (dt.datetime(2026, 11, 5, tzinfo=UTC), False)),
    ("s3://b/archive/cam1/2026-13-45/x.mp4", None),
    ("s3://b/archive/x.mp4", None),
])
def test_path_time(uri, expected):
    assert RULES.path_time(uri) == expected
    assert RULES.date(uri) == (expected[0].date().isoformat() if expected else "2026-12-01")


def test_precedence():
    path_dt = (dt.datetime(2026, 11, 24, 22, 30, tzinfo=UTC), True)
    path_day = (dt.datetime(2026, 11, 24, tzinfo=UTC), False)
    tag = "2026-11-23T08:00:01.000000Z"
    assert recorded_at(path_dt, tag) == (path_dt[0], "path")
    assert recorded_at(path_day, tag) == (dt.datetime(2026, 11, 23, 8, 0, 1, tzinfo=UTC), "container")
    assert recorded_at(path_day, None) == (path_day[0], "path-date")
    assert recorded_at(None, None) == (None, "")
    assert recorded_at(None, "1970-01-01T00:00:00.000000Z") == (None, "")  # muxer placeholder
    assert parse_creation_time("garbage") is None
    assert parse_creation_time("2026-11-23 09:00:00+01:00") == dt.datetime(2026, 11, 23, 8, tzinfo=UTC)


def test_decode_item_round_trip():
    """The driver sends the path parse as strings (Ray rows); decode turns it back."""
    found = RULES.path_time("s3://b/archive/cam3/20261124_223015.mp4")
    item = {"path_time": found[0].isoformat(), "path_has_time": found[1]}
    assert recorded_time(item, None) == (found[0], "path")
    assert recorded_time({"path_time": "", "path_has_time": False}, "2026-01-02T03:04:05Z") == \
        (dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "container")
    assert recorded_time({}, None) == (None, "")
