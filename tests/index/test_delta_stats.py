"""A Delta index table records min/max statistics only for the columns a reader may prune on
(`schemas/<table>.json` "stats_cols"), in the job's files and in the files delta-rs itself writes
when it compacts them: the statistics are in every add action of the log and every checkpoint, and
every reader loads them all to get a snapshot."""

from __future__ import annotations

import pytest

from exvad_ray.index import batches, compact, delta
from exvad_ray.index.schemas import stats_cols
from test_batches import ids, video

pytest.importorskip("deltalake")


def _stat_columns(index: str, table: str) -> set[str]:
    aa = delta.open_table(index, table, create=False).get_add_actions(flatten=True)
    assert aa.num_rows
    return {n.split(".", 1)[1] for n in aa.schema.names if n.startswith("min.")}


def test_only_the_listed_columns_have_statistics_before_and_after_compaction(tmp_path):
    index = str(tmp_path / "idx")
    batches.create_tables(index)
    for b in range(3):
        vids = ids(3)
        batches.commit_batch(index, "run1", b, batches.write_batch(index, [video(v) for v in vids]), vids)
    for table in batches.BATCH_TABLES:
        want = set(stats_cols(table))
        got = _stat_columns(index, table)
        assert got and got <= want, (table, got - want)
        assert delta.open_table(index, table, create=False).metadata().configuration[
            "delta.dataSkippingStatsColumns"].split(",") == [c for c in stats_cols(table)
                                                             if c not in delta.table_partition_cols(index, table)]
    before = {t: _stat_columns(index, t) for t in batches.BATCH_TABLES}
    compact(index, retention_hours=0)  # delta-rs's optimize writes the files: the same statistics
    assert {t: _stat_columns(index, t) for t in batches.BATCH_TABLES} == before
    assert "class" in before["segments"] and "uri" not in before["videos"]
