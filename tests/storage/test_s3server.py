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


def test_server_starts_when_another_process_takes_its_port(tmp_path, monkeypatch):
    """The port is chosen free, then taken by someone else before SeaweedFS binds it (a demo run right
    after another lost its S3 port this way): the server starts again on fresh ports."""
    import socket

    from exvad_ray.storage import s3server

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    real, calls = s3server._free_port_with_grpc, []

    def first_taken() -> int:
        calls.append(1)
        return port if len(calls) == 1 else real()

    monkeypatch.setattr(s3server, "_free_port_with_grpc", first_taken)
    try:
        with s3server.LocalS3Server(str(tmp_path)) as server:
            assert server.port != port
            server.create_bucket("bucket")
            fs = server.filesystem()
            fs.pipe_file("bucket/x", b"ok")
            assert fs.cat_file("bucket/x") == b"ok"
    finally:
        taken.close()
    assert len(calls) == 10  # five ports per start, two starts


def test_server_in_a_relative_folder(tmp_path, monkeypatch):
    """A folder named relative to the working directory: SeaweedFS runs inside it, so the server
    must hand it absolute paths (it exited reading 'dev1/s3/s3.json' from inside dev1/s3)."""
    from exvad_ray.storage.s3server import LocalS3Server

    monkeypatch.chdir(tmp_path)
    with LocalS3Server("rel/s3") as server:
        assert server.data_dir == str(tmp_path / "rel" / "s3")
        server.create_bucket("bucket")
        fs = server.filesystem()
        fs.pipe_file("bucket/x", b"ok")
        assert fs.cat_file("bucket/x") == b"ok"
    assert (tmp_path / "rel" / "s3" / "weed.log").exists()
