"""Which videos each data file of a Delta table holds: a derived cache beside the index.

A rerun's planning needs the ids of every finished video; a rescoring's planning needs which
snippets file holds which videos. On a Delta table those ids are inside the data files (blocks of
videos under names that say nothing), so reading them means opening every file of the snapshot.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa


def iter_video_ids(index: str, table: str) -> Iterator[pa.Array]:
    """The `video_id` column of the table's current snapshot, a chunk at a time."""
    from exvad_ray.index import delta

    yield from delta.iter_video_ids(index, table)
