"""Delta Lake (delta-rs, `deltalake`) facts for the index of issue 23, measured on this machine.

Each sub-command checks one thing docs/INDEX.md relies on and prints what it found (``FACT``
lines, plus a JSON summary at the end). Nothing in the package or the tests depends on this
script; rerun it after upgrading `deltalake` or the S3 server.

    python bench/delta_facts.py s3          # (a) local SeaweedFS: options, conditional put, concurrent commits
    python bench/delta_facts.py txn         # (b) idempotent application transactions
    python bench/delta_facts.py addfiles    # (c) committing Parquet files written by workers
    python bench/delta_facts.py ray         # (d) Ray Data read_delta / write_delta
    python bench/delta_facts.py duckdb      # (e) DuckDB over the snapshot's file list, after a delete
    python bench/delta_facts.py optimize    # (f) optimize (compact, z-order) and vacuum vs an old snapshot
    python bench/delta_facts.py log         # (g) reading the log: 1e5 commits, 1e5 and 1e6 files
    python bench/delta_facts.py checkpoint  # (g) delta-rs checkpoints by itself every 100 commits
    python bench/delta_facts.py all
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as dt
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

SUMMARY: dict[str, Any] = {}


def fact(key: str, value: Any, text: str) -> None:
    SUMMARY[key] = value
    print(f"FACT {key} = {value!r}: {text}", flush=True)


def rows(n: int, start: int = 0, date: str = "2026-01-01", camera: str = "cam-000") -> pa.Table:
    """Rows shaped like the index's videos table (the columns that matter here)."""
    return pa.table({
        "video_id": [f"v{start + i:07d}" for i in range(n)],
        "uri": [f"s3://archive/{camera}/{date}/v{start + i:07d}.mp4" for i in range(n)],
        "video_score": pa.array([0.1 * (i % 10) for i in range(n)], pa.float32()),
        "recorded_at": pa.array([dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=i)
                                 for i in range(n)], pa.timestamp("us", tz="UTC")),
        "date": [date] * n, "camera": [camera] * n,
    })


def s3_options(server: Any) -> dict[str, str]:
    """What delta-rs needs to reach the local SeaweedFS: endpoint, plain http allowed, credentials."""
    return {"AWS_ENDPOINT_URL": server.endpoint_url, "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": server.access_key, "AWS_SECRET_ACCESS_KEY": server.secret_key,
            "AWS_REGION": server.region}


# ------------------------------------------------------------------------------------- (a) S3


def _append_many(uri: str, opts: dict[str, str], who: int, n: int) -> None:
    from deltalake import write_deltalake

    for i in range(n):
        write_deltalake(uri, rows(1, start=who * 1000 + i), mode="append", partition_by=["date", "camera"],
                        storage_options=opts)


def fact_s3() -> None:
    import botocore.session
    from botocore.exceptions import ClientError
    from deltalake import DeltaTable, write_deltalake

    from exvad_ray.storage.s3server import LocalS3Server

    with LocalS3Server() as server:
        server.create_bucket("facts")
        opts = s3_options(server)
        uri = "s3://facts/videos"
        write_deltalake(uri, rows(10), partition_by=["date", "camera"], storage_options=opts)
        t = DeltaTable(uri, storage_options=opts)
        fact("s3_roundtrip_rows", t.to_pyarrow_table().num_rows,
             "write_deltalake + DeltaTable on SeaweedFS with AWS_ENDPOINT_URL, AWS_ALLOW_HTTP=true, keys, region")
        # the primitive delta-rs 1.x commits with: PUT If-None-Match: * of _delta_log/<version>.json
        s3 = botocore.session.get_session().create_client("s3", endpoint_url=server.endpoint_url, aws_access_key_id=server.access_key,
                          aws_secret_access_key=server.secret_key, region_name=server.region)
        s3.put_object(Bucket="facts", Key="probe/x", Body=b"1", IfNoneMatch="*")
        try:
            s3.put_object(Bucket="facts", Key="probe/x", Body=b"2", IfNoneMatch="*")
            second = "accepted (overwrote)"
        except ClientError as exc:
            second = f"refused: {exc.response['Error'].get('Code')} (HTTP {exc.response['ResponseMetadata']['HTTPStatusCode']})"
        body = s3.get_object(Bucket="facts", Key="probe/x")["Body"].read()
        fact("s3_if_none_match_second_put", second, f"object still holds {body!r}")
        # the commit itself: a second writer committing the same version must fail and retry
        before = DeltaTable(uri, storage_options=opts).version()
        writers, each = 4, 10
        t0 = time.perf_counter()
        # spawn, not fork: delta-rs's tokio runtime panics in a forked child of a process that used it
        with cf.ProcessPoolExecutor(writers, mp_context=multiprocessing.get_context("spawn")) as pool:
            list(pool.map(_append_many, [uri] * writers, [opts] * writers, range(writers), [each] * writers))
        t = DeltaTable(uri, storage_options=opts)
        got = t.to_pyarrow_table().num_rows
        fact("s3_concurrent_commits", {"writers": writers, "commits_each": each, "rows": got,
                                       "expected_rows": 10 + writers * each,
                                       "versions_added": t.version() - before,
                                       "s": round(time.perf_counter() - t0, 1)},
             "concurrent appends from separate processes, default options (no lock, no unsafe rename)")
        # with AWS_S3_ALLOW_UNSAFE_RENAME the same works through the old copy+rename path (not safe)
        opts_unsafe = {**opts, "AWS_S3_ALLOW_UNSAFE_RENAME": "true"}
        write_deltalake(uri, rows(1, start=99999), mode="append", partition_by=["date", "camera"],
                        storage_options=opts_unsafe)
        fact("s3_unsafe_rename_append_ok", DeltaTable(uri, storage_options=opts).to_pyarrow_table().num_rows,
             "AWS_S3_ALLOW_UNSAFE_RENAME=true also commits (no conditional put; one writer only)")


# ------------------------------------------------------------------------------------- (b) txn


def fact_txn(root: str) -> None:
    from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake

    uri = os.path.join(root, "txn")
    run_id = "run-3f2a"

    def commit(batch: int, data: pa.Table) -> str:
        """The driver's idempotent batch commit: skip a batch the log already holds."""
        t = DeltaTable(uri) if DeltaTable.is_deltatable(uri) else None
        done = t.transaction_version(run_id) if t is not None else None
        if done is not None and done >= batch:
            return "skipped"
        write_deltalake(uri, data, mode="append", partition_by=["date", "camera"],
                        commit_properties=CommitProperties(
                            app_transactions=[Transaction(app_id=run_id, version=batch)],
                            custom_metadata={"exvad.schema_version": "2", "exvad.version": "0.1.0",
                                             "exvad.run_id": run_id, "exvad.batch": str(batch)}))
        return "committed"

    out = [commit(0, rows(5, 0)), commit(1, rows(5, 5)), commit(1, rows(5, 5))]
    t = DeltaTable(uri)
    fact("txn_commit_results", out, "batch 0, batch 1, batch 1 again (the retry after a kill between commit "
         "and acknowledgement)")
    fact("txn_version_after", t.transaction_version(run_id), "DeltaTable.transaction_version(app_id)")
    fact("txn_rows", t.to_pyarrow_table().num_rows, "10 expected: the retried batch was not appended twice")
    meta = t.history(1)[0]
    fact("txn_commit_metadata", {k: meta.get(k) for k in ("exvad.schema_version", "exvad.version", "exvad.batch")},
         "custom_metadata lands in the commit's commitInfo (DeltaTable.history)")
    # does delta-rs itself refuse an app transaction version that does not move forward?
    try:
        write_deltalake(uri, rows(5, 5), mode="append", partition_by=["date", "camera"],
                        commit_properties=CommitProperties(app_transactions=[Transaction(app_id=run_id, version=1)]))
        unguarded = f"accepted: rows now {DeltaTable(uri).to_pyarrow_table().num_rows}"
    except Exception as exc:  # noqa: BLE001 - the fact is which
        unguarded = f"refused: {type(exc).__name__}: {str(exc)[:120]}"
    fact("txn_same_version_without_check", unguarded,
         "committing version 1 again without checking transaction_version first")


# ------------------------------------------------------------------------------------- (c) add files


def _worker_write(uri: str, block: int, n: int) -> list[dict[str, Any]]:
    """A worker: write one Parquet file per partition of its block under the table, return the adds."""
    data = rows(n, start=block * n, camera=f"cam-{block % 3:03d}")
    out = []
    for (date, camera), part in _by_partition(data).items():
        rel = f"date={date}/camera={camera}/part-{block:05d}-{uuid.uuid4().hex}.zstd.parquet"
        path = os.path.join(uri, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        body = part.drop_columns(["date", "camera"])
        pq.write_table(body, path, compression="zstd")
        stats = {"numRecords": body.num_rows,
                 "minValues": {"video_id": min(body.column("video_id").to_pylist()),
                               "video_score": float(min(body.column("video_score").to_pylist()))},
                 "maxValues": {"video_id": max(body.column("video_id").to_pylist()),
                               "video_score": float(max(body.column("video_score").to_pylist()))},
                 "nullCount": {"video_id": 0, "video_score": 0}}
        out.append({"path": rel, "size": os.path.getsize(path), "partition_values": {"date": date, "camera": camera},
                    "modification_time": int(os.path.getmtime(path) * 1000), "data_change": True,
                    "stats": json.dumps(stats)})
    return out


def _by_partition(t: pa.Table) -> dict[tuple[str, str], pa.Table]:
    import pyarrow.compute as pc

    out = {}
    for date, camera in sorted(set(zip(t.column("date").to_pylist(), t.column("camera").to_pylist()))):
        mask = pc.and_(pc.equal(t.column("date"), date), pc.equal(t.column("camera"), camera))
        out[(date, camera)] = t.filter(mask)
    return out


def fact_addfiles(root: str) -> None:
    from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
    from deltalake.transaction import AddAction

    uri = os.path.join(root, "addfiles")
    schema = rows(1).schema
    # create the empty table (schema, partitioning) once
    write_deltalake(uri, schema.empty_table(), partition_by=["date", "camera"])
    with cf.ProcessPoolExecutor(2) as pool:
        results = list(pool.map(_worker_write, [uri] * 6, range(6), [50] * 6))
    adds = [AddAction(**a) for block in results for a in block]
    t = DeltaTable(uri)
    t0 = time.perf_counter()
    t.create_write_transaction(adds, mode="append", schema=schema, partition_by=["date", "camera"],
                               commit_properties=CommitProperties(
                                   app_transactions=[Transaction(app_id="run-x", version=0)]))
    commit_s = time.perf_counter() - t0
    t = DeltaTable(uri)
    data = t.to_pyarrow_table()
    fact("addfiles_rows", data.num_rows, f"6 worker blocks of 50 rows, {len(adds)} files added by one "
         f"create_write_transaction ({commit_s:.3f} s) with an app transaction (version {t.transaction_version('run-x')})")
    fact("addfiles_partition_columns_read_back", sorted(set(data.column("camera").to_pylist())),
         "partition values come from the AddAction, not the file")
    pruned = t.file_uris(file_pruning_predicate="video_id = 'v0000120'")
    fact("addfiles_stats_pruning", {"files": len(t.file_uris()), "files_for_one_id": len(pruned)},
         "file_uris(file_pruning_predicate=...) uses the min/max stats the worker put in the AddAction")


# ------------------------------------------------------------------------------------- (d) Ray


def fact_ray(root: str) -> None:
    import ray
    import ray.data

    uri = os.path.join(root, "ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ds = ray.data.from_arrow([rows(100, 0, camera="cam-000"), rows(100, 100, camera="cam-001")])
        ds.write_delta(uri, partition_by=["date", "camera"])
        from deltalake import DeltaTable

        t = DeltaTable(uri)
        fact("ray_write_delta", {"version": t.version(), "files": len(t.file_uris()),
                                 "rows": t.to_pyarrow_table().num_rows},
             "Dataset.write_delta: workers write Parquet, the driver commits all files in one transaction")
        info = t.history(1)[0]
        fact("ray_write_delta_commit", {"operation": info.get("operation"), "txn": t.transaction_version("ray")},
             "no application transaction: a rerun of the same write appends again")
        back = ray.data.read_delta(uri, columns=["video_id", "camera"])
        fact("ray_read_delta_rows", back.count(), "ray.data.read_delta: DeltaTable.to_pyarrow_dataset of the "
             "snapshot, read as Parquet by Ray Data (no deletion vectors)")
    finally:
        ray.shutdown()


# ------------------------------------------------------------------------------------- (e) DuckDB


def fact_duckdb(root: str) -> None:
    import duckdb
    from deltalake import DeltaTable, write_deltalake

    uri = os.path.join(root, "duckdb")
    write_deltalake(uri, rows(100), partition_by=["date", "camera"])
    write_deltalake(uri, rows(100, 100), mode="append", partition_by=["date", "camera"])
    t = DeltaTable(uri)
    # a replaced video: its old rows deleted, its new rows appended (one video, new content)
    t.delete("video_id = 'v0000007'")
    new = rows(1, 7)
    new = new.set_column(0, "video_id", pa.array(["v0000007-new"]))
    write_deltalake(uri, new, mode="append", partition_by=["date", "camera"])
    t = DeltaTable(uri)
    files = t.file_uris()
    con = duckdb.connect()
    q = "SELECT count(*), count(*) FILTER (WHERE video_id = 'v0000007') FROM read_parquet(?, hive_partitioning = true)"
    n, old = con.execute(q, [files]).fetchone()
    fact("duckdb_snapshot_files", {"rows": n, "old_rows_seen": old, "files": len(files)},
         "DuckDB read_parquet(DeltaTable.file_uris(), hive_partitioning=true): the current snapshot, no extension")
    glob = os.path.join(uri, "**", "*.parquet")
    n2, old2 = con.execute(q, [glob]).fetchone()
    fact("duckdb_glob_all_files", {"rows": n2, "old_rows_seen": old2},
         "a glob over the table folder (what readers do today) also reads the removed file: superseded rows "
         "reappear until vacuum")
    fact("delta_delete_deletion_vectors", "deletionVectors" in (t.protocol().writer_features or []),
         "delta-rs delete rewrites the file without the row (copy-on-write), no deletion vectors")
    part = con.execute("SELECT DISTINCT camera, date FROM read_parquet(?, hive_partitioning = true)",
                       [files]).fetchall()
    fact("duckdb_partition_values", part, "partition columns come back from the hive-style folder names")


# ------------------------------------------------------------------------------------- (f) optimize / vacuum


def fact_optimize(root: str) -> None:
    import duckdb
    from deltalake import DeltaTable, write_deltalake

    uri = os.path.join(root, "optimize")
    for i in range(20):  # 20 small commits, one file each
        write_deltalake(uri, rows(10, i * 10), mode="append", partition_by=["date", "camera"])
    old = DeltaTable(uri)
    old_version, old_files = old.version(), old.file_uris()
    t = DeltaTable(uri)
    m = t.optimize.compact()
    fact("optimize_compact", {"files_removed": m.get("numFilesRemoved"), "files_added": m.get("numFilesAdded")},
         "20 one-commit files of a partition merged")
    try:
        DeltaTable(uri).optimize.z_order(["camera", "recorded_at"])
        zc = "allowed"
    except Exception as exc:  # noqa: BLE001
        zc = f"refused: {str(exc)[:90]}"
    fact("optimize_z_order_partition_column", zc, "z-order on (camera, recorded_at) when camera is a partition column")
    z = DeltaTable(uri).optimize.z_order(["recorded_at", "video_score"])
    fact("optimize_z_order", {"files_removed": z.get("numFilesRemoved"), "files_added": z.get("numFilesAdded")},
         "z-order on (recorded_at, video_score) inside the date/camera partitions")
    t = DeltaTable(uri)
    kept = t.vacuum(dry_run=False)  # default retention: 7 days (delta.deletedFileRetentionDuration)
    con = duckdb.connect()
    n = con.execute("SELECT count(*) FROM read_parquet(?)", [old_files]).fetchone()[0]
    fact("vacuum_default_retention", {"deleted": len(kept), "old_snapshot_rows": n},
         "vacuum with the default 168 h retention deletes nothing young: a reader of the old snapshot still reads")
    try:
        t.vacuum(retention_hours=0, dry_run=False)
        too_short = "allowed"
    except Exception as exc:  # noqa: BLE001
        too_short = f"refused: {type(exc).__name__}"
    fact("vacuum_zero_retention_guard", too_short, "retention below the table's minimum without "
         "enforce_retention_duration=False")
    gone = t.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    try:
        con.execute("SELECT count(*) FROM read_parquet(?)", [old_files]).fetchone()
        after = "still readable"
    except Exception as exc:  # noqa: BLE001
        after = f"fails: {type(exc).__name__}"
    fact("vacuum_zero_retention_old_reader", {"deleted": len(gone), "old_snapshot_read": after},
         f"a reader holding version {old_version}'s file list after vacuum(retention_hours=0)")
    try:
        DeltaTable(uri, version=old_version).to_pyarrow_table()
        tt = "time travel still reads"
    except Exception as exc:  # noqa: BLE001
        tt = f"time travel fails: {type(exc).__name__}"
    fact("vacuum_time_travel", tt, "DeltaTable(uri, version=old) after the files were vacuumed")


# ------------------------------------------------------------------------------------- (g) log scale


def _fake_log(uri: str, commits: int, files_per_commit: int) -> None:
    """A table whose log holds `commits` commits of `files_per_commit` adds each, written directly in
    the Delta protocol's JSON (the data files need not exist to read the log)."""
    from deltalake import write_deltalake

    write_deltalake(uri, rows(1))  # version 0: protocol, metadata, one real file
    log = os.path.join(uri, "_delta_log")
    now = int(time.time() * 1000)
    stats = json.dumps({"numRecords": 100, "minValues": {"video_id": "v0000000", "video_score": 0.0},
                        "maxValues": {"video_id": "v0000099", "video_score": 0.9},
                        "nullCount": {"video_id": 0, "video_score": 0}})
    k = 0
    for v in range(1, commits + 1):
        lines = [json.dumps({"commitInfo": {"timestamp": now, "operation": "WRITE",
                                            "operationParameters": {"mode": "Append"}}})]
        for _ in range(files_per_commit):
            day = dt.date(2024, 1, 1) + dt.timedelta(days=k % 365)
            lines.append(json.dumps({"add": {
                "path": f"date={day}/camera=cam-{k % 97:03d}/part-{k:08d}.parquet", "size": 4096,
                "partitionValues": {"date": str(day), "camera": f"cam-{k % 97:03d}"},
                "modificationTime": now, "dataChange": True, "stats": stats}}))
            k += 1
        with open(os.path.join(log, f"{v:020d}.json"), "w") as f:
            f.write("\n".join(lines) + "\n")


def _load_child(uri: str) -> None:
    from deltalake import DeltaTable

    t0 = time.perf_counter()
    t = DeltaTable(uri)
    t1 = time.perf_counter()
    files = t.file_uris()
    t2 = time.perf_counter()
    with open("/proc/self/status") as f:  # this process's own peak (wait4's would include the parent's)
        hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    print(json.dumps({"load_s": round(t1 - t0, 3), "file_uris_s": round(t2 - t1, 3), "files": len(files),
                      "version": t.version(), "peak_rss_mb": round(hwm / 1024, 1)}))


def _measure_load(uri: str) -> dict[str, Any]:
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "_load", uri], stdout=subprocess.PIPE)
    out = proc.stdout.read()
    assert proc.wait() == 0
    return json.loads(out)


def fact_log(root: str, sizes: tuple[tuple[int, int], ...] = ((100_000, 1), (1, 100_000), (10, 100_000))) -> None:
    from deltalake import DeltaTable

    base = _measure_load_empty(root)
    fact("log_baseline_rss_mb", base, "peak RSS of a child that imports deltalake and opens a 1-file table")
    for commits, per in sizes:
        uri = os.path.join(root, f"log-{commits}x{per}")
        shutil.rmtree(uri, ignore_errors=True)
        t0 = time.perf_counter()
        _fake_log(uri, commits, per)
        build = time.perf_counter() - t0
        key = f"log_{commits}commits_x{per}"
        fact(key + "_json", _measure_load(uri), f"load of {commits} JSON commits x {per} adds (no checkpoint; "
             f"log written in {build:.0f} s)")
        if commits > 10_000 and not os.environ.get("EXVAD_FACTS_CHECKPOINT_ALL"):
            # a checkpoint of 1e5 small commits took 772 s here (the first run); its snapshot is the
            # same as that of one commit of 1e5 files, measured next
            shutil.rmtree(uri, ignore_errors=True)
            continue
        t0 = time.perf_counter()
        DeltaTable(uri).create_checkpoint()
        cp = time.perf_counter() - t0
        size = sum(os.path.getsize(os.path.join(uri, "_delta_log", f)) for f in os.listdir(os.path.join(uri, "_delta_log"))
                   if "checkpoint" in f)
        fact(key + "_checkpoint", {**_measure_load(uri), "checkpoint_s": round(cp, 1), "checkpoint_mb": round(size / 1e6, 1)},
             "the same after create_checkpoint()")
        shutil.rmtree(uri, ignore_errors=True)


def fact_checkpoint(root: str) -> None:
    """Does delta-rs checkpoint by itself as commits accumulate?"""
    from deltalake import DeltaTable, write_deltalake

    uri = os.path.join(root, "checkpoint")
    for i in range(205):
        write_deltalake(uri, rows(1, i), mode="append")
    names = sorted(f for f in os.listdir(os.path.join(uri, "_delta_log")) if "checkpoint" in f)
    fact("log_auto_checkpoints", {"commits": DeltaTable(uri).version() + 1, "checkpoints": names},
         "205 commits by write_deltalake with the default post-commit hook (delta.checkpointInterval)")


def _measure_load_empty(root: str) -> float:
    from deltalake import write_deltalake

    uri = os.path.join(root, "log-empty")
    shutil.rmtree(uri, ignore_errors=True)
    write_deltalake(uri, rows(1))
    return _measure_load(uri)["peak_rss_mb"]


# ------------------------------------------------------------------------------------- CLI


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("s3", "txn", "addfiles", "ray", "duckdb", "optimize", "log", "checkpoint", "all",
                                     "_load"))
    ap.add_argument("uri", nargs="?")
    args = ap.parse_args()
    if args.what == "_load":
        _load_child(args.uri)
        return
    import deltalake

    print(f"deltalake {deltalake.__version__}", flush=True)
    root = tempfile.mkdtemp(prefix="exvad-delta-facts-")
    try:
        for name in (("s3", "txn", "addfiles", "ray", "duckdb", "optimize", "checkpoint", "log") if args.what == "all"
                     else (args.what,)):
            fn = globals()[f"fact_{name}"]
            fn() if name == "s3" else fn(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps({"deltalake": deltalake.__version__, **SUMMARY}, default=str, indent=1))


if __name__ == "__main__":
    main()
