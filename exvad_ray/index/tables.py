"""One typed reader and writer per index table (the labels table lives in `exvad_ray.index.labels`).

An `IndexTable` binds a table name to its schema (``schemas/<name>.json``) and partition columns:
``write`` stores one video's rows (columns checked against the schema), ``read`` returns the table
under today's column names. `read_snippet_embeddings` is the typed read that training and
evaluation use: the snippet vectors of each video, in snippet order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from exvad_ray.errors import ExvadError
from exvad_ray.index import store
from exvad_ray.index.schemas import arrow_schema, conform, partition_cols
from exvad_ray.index.supersede import read_table


@dataclasses.dataclass(frozen=True)
class IndexTable:
    """A per-video Parquet table of the index."""

    name: str

    @property
    def schema(self) -> pa.Schema:
        return arrow_schema(self.name)

    @property
    def partition_cols(self) -> list[str]:
        return partition_cols(self.name)

    def write(self, index: str, video_id: str, partition: dict[str, str], columns: dict[str, Any] | pa.Table) -> None:
        """Write (or replace) one video's rows of this table."""
        missing = [c for c in self.partition_cols if c not in partition]
        if missing:
            raise ExvadError(f"{self.name}: partition value(s) {missing} missing")
        store.write_table_file(store.file_uri(index, self.name, partition, video_id), conform(self.name, columns))

    def read(self, index: str, columns: list[str] | None = None) -> pa.Table:
        return read_table(index, self.name, columns)


VIDEOS = IndexTable("videos")
SNIPPETS = IndexTable("snippets")
SEGMENTS = IndexTable("segments")
CAPTIONS = IndexTable("captions")
ERRORS = IndexTable("errors")


def embeddings_matrix(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """list<float32> column -> (N, D) float32 (all rows must have the same D)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    flat = pc.list_flatten(arr).to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    n = len(arr)
    if n == 0:
        return np.zeros((0, 0), np.float32)
    if flat.size % n:
        raise ExvadError("embedding column has rows of different lengths")
    return flat.reshape(n, flat.size // n)


def snippet_columns_by_video(table: pa.Table, columns: Sequence[str],
                             video_ids: Sequence[str] | None = None) -> dict[str, list[np.ndarray]]:
    """{video_id: one array per column, rows in snippet order} of a per-snippet table (`video_id`,
    `snippet_index` and `columns`); list columns become (n, D) float32 matrices, others 1-d arrays.
    With `video_ids`, only those videos are kept (filtered before anything is converted)."""
    if video_ids is not None:
        table = table.filter(pc.is_in(table.column("video_id"), pa.array(list(video_ids), pa.string())))
    table = table.sort_by([("video_id", "ascending"), ("snippet_index", "ascending")])
    ids = table.column("video_id").to_numpy(zero_copy_only=False)
    lists = (pa.types.is_list, pa.types.is_large_list, pa.types.is_fixed_size_list)
    cols = [embeddings_matrix(table.column(c)) if any(is_(table.schema.field(c).type) for is_ in lists)
            else table.column(c).to_numpy(zero_copy_only=False) for c in columns]
    bounds = np.flatnonzero(ids[1:] != ids[:-1]) + 1 if len(ids) else np.zeros(0, np.int64)
    return {str(ids[s]): [np.ascontiguousarray(c[s:e]) for c in cols]
            for s, e in zip(np.r_[0, bounds], np.r_[bounds, len(ids)]) if e > s}


def read_snippet_embeddings(index: str, video_ids: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """{video_id: (n_snippets, D) float32 visual embeddings in snippet order}. With `video_ids`, only
    those videos' rows are read (a page of files at a time): training on the labelled videos of an
    archive never holds every snippet's vector."""
    cols = ["video_id", "snippet_index", "visual_embedding"]
    if video_ids is not None:
        from exvad_ray.index.store import read_video_rows
        from exvad_ray.index.supersede import current_rows

        table = current_rows(index, "snippets", read_video_rows(index, "snippets", video_ids, cols))
        return {vid: c[0] for vid, c in snippet_columns_by_video(table, ["visual_embedding"], video_ids).items()}
    table = SNIPPETS.read(index, cols)
    return {vid: cols[0] for vid, cols in snippet_columns_by_video(table, ["visual_embedding"], video_ids).items()}
