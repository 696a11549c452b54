"""The archive index: every table's schema, reader and writer, partitions and compaction.

Tables (``schemas/*.json``): videos, snippets, segments, captions, errors (per-video Parquet files)
and runs (one JSON manifest per run). The labels table is `exvad_ray.index.labels`. Nothing else in
the package reads or writes index files directly.
"""

from exvad_ray.index.compaction import compact
from exvad_ray.index.partitions import DEFAULT_DATE_PATTERN, PartitionRules, sanitize
from exvad_ray.index.runs import manifest_uri, read_manifest, read_manifests, read_runs, write_manifest
from exvad_ray.index.schemas import SCHEMA_VERSION, TABLES, VIDEO_TABLES, arrow_schema, conform, partition_cols
from exvad_ray.index.store import (
    IdSet, check_writable, done_ids, done_set, done_video_ids, index_version, is_delta_index, iter_table_files, list_files, read_files, read_stored,
    read_video_rows,
    write_table_file,
    write_video_tables,
)
from exvad_ray.index.supersede import read_table
from exvad_ray.index.tables import (
    CAPTIONS, ERRORS, SEGMENTS, SNIPPETS, VIDEOS, IndexTable, embeddings_matrix, read_snippet_embeddings,
    snippet_columns_by_video,
)

__all__ = [
    "CAPTIONS", "DEFAULT_DATE_PATTERN", "ERRORS", "SCHEMA_VERSION", "SEGMENTS", "SNIPPETS", "TABLES", "VIDEOS",
    "VIDEO_TABLES", "IdSet", "IndexTable", "PartitionRules", "arrow_schema", "check_writable", "compact", "conform",
    "done_ids", "done_set", "done_video_ids", "embeddings_matrix", "index_version", "is_delta_index", "iter_table_files", "list_files", "manifest_uri", "partition_cols",
    "read_files", "read_manifest", "read_manifests", "read_runs", "read_snippet_embeddings", "read_stored", "read_table", "read_video_rows", "sanitize",
    "snippet_columns_by_video",
    "write_manifest", "write_table_file", "write_video_tables",
]
