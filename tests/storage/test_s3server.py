import pyarrow as pa
import pyarrow.parquet as pq

from exvad_ray import storage


def test_s3_roundtrip_fsspec_and_pyarrow(s3_bucket):
    uri = storage.join(s3_bucket, "dir/a.bin")
    storage.write_bytes(uri, b"hello")
    assert storage.read_bytes(uri) == b"hello"
    assert storage.exists(uri)

    table = pa.table({"x": [1, 2, 3], "s": ["a", "b", "c"]})
    fs, path = storage.arrow_filesystem(storage.join(s3_bucket, "t/part-0.parquet"))
    pq.write_table(table, path, filesystem=fs)
    back = pq.read_table(path, filesystem=fs)
    assert back.equals(table)
    # and through fsspec too
    with storage.open_file(storage.join(s3_bucket, "t/part-0.parquet")) as f:
        assert pq.read_table(f).equals(table)


def test_server_binds_loopback_only(s3_server):
    import psutil

    proc = None
    for p in psutil.process_iter(["name", "cmdline"]):
        if p.info["cmdline"] and "mini" in p.info["cmdline"] and any(
            str(s3_server.port) in a for a in p.info["cmdline"]
        ):
            proc = p
            break
    assert proc is not None
    addrs = {c.laddr.ip for c in proc.net_connections(kind="inet") if c.status == "LISTEN"}
    assert addrs and addrs <= {"127.0.0.1"}, addrs
