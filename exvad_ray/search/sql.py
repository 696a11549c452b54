"""DuckDB helpers shared by the query engine and the vector sidecar: how the index's hive partition
columns are typed, and a parameterised statement's result as Arrow."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

#: the hive partition columns, read as text (a camera named 0042 stays "0042"), without naming them:
#: DuckDB refuses a `hive_types` entry for a column that is no folder of the files, and a Delta
#: `segments` created by date and camera keeps `class` in its files (an older one in its folders)
HIVE_OPTIONS = "hive_partitioning = true, hive_types_autocast = false"


def run_sql(con: Any, sql: str, params: list[Any]) -> pa.Table:
    """Run a parameterised statement, result as Arrow (DuckDB 2.x `to_arrow_table`, 1.x `arrow`)."""
    rel = con.sql(sql, params=params)
    if hasattr(rel, "to_arrow_table"):
        return rel.to_arrow_table()
    out = rel.arrow()
    return out.read_all() if hasattr(out, "read_all") else out
