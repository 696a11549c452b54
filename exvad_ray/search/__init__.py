"""Forensic search over an index's flagged segments: `SegmentIndex(uri).search(...) -> pyarrow.Table`
(docs/SEARCH.md). The CLI (`exvad search|export|serve`) and the page use the same engine."""

from exvad_ray.search.engine import Query, SearchError, SegmentIndex

__all__ = ["Query", "SearchError", "SegmentIndex"]
