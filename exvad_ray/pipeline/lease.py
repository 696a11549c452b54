"""An index lease: one job at a time writes an index.

Two jobs on one index would both do all the work and both report it. The job holds
``INDEX/lease.json`` ({owner, host, pid, expires_at}) and renews it from a thread every third of
its time to live. A second job refuses with one line naming the holder, or with ``--wait`` waits
for the lease to be free. A lease left by a killed job expires: at once when its holder ran on
this host and the process is gone, otherwise when `expires_at` passes (default 60 s).

Taking the lease is write-then-read-back: on local disk the write is an atomic rename, on S3 a
PUT; two jobs starting within the same instant could both read their own write back only if the
store reordered them, which neither does for a single key written from one process each.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from typing import Any

from exvad_ray import storage
from exvad_ray.errors import ExvadError

LEASE_FILE = "lease.json"


class LeaseHeld(ExvadError):
    """Another job holds the index."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class IndexLease:
    """Context manager: hold the index's lease for the duration of a job."""

    def __init__(self, index: str, ttl_s: float = 60.0, wait: bool = False, wait_timeout_s: float | None = None,
                 poll_s: float = 2.0):
        self.uri = storage.join(index, LEASE_FILE)
        self.ttl_s, self.wait, self.wait_timeout_s, self.poll_s = ttl_s, wait, wait_timeout_s, poll_s
        self.owner = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _doc(self) -> dict[str, Any]:
        return {"owner": self.owner, "host": socket.gethostname(), "pid": os.getpid(),
                "expires_at": time.time() + self.ttl_s}

    def _write(self) -> None:
        storage.write_bytes(self.uri, json.dumps(self._doc()).encode())  # atomic (rename / PUT)

    def holder(self) -> dict[str, Any] | None:
        """The live lease of another job, or None when the index is free."""
        try:
            doc = json.loads(storage.read_bytes(self.uri))
        except storage_errors():
            return None
        except ValueError:  # half-written by a crashed writer on a store without atomic writes
            return None
        if doc.get("owner") == self.owner:
            return None
        if doc.get("host") == socket.gethostname() and not _alive(int(doc.get("pid") or 0)):
            return None
        if float(doc.get("expires_at") or 0) < time.time():
            return None
        return doc

    def acquire(self) -> None:
        started = time.time()
        while True:
            held = self.holder()
            if held is None:
                self._write()
                time.sleep(0.05)
                check = json.loads(storage.read_bytes(self.uri))
                if check.get("owner") == self.owner:
                    break
                held = check
            if not self.wait or (self.wait_timeout_s is not None and time.time() - started > self.wait_timeout_s):
                raise LeaseHeld(
                    f"another job (pid {held.get('pid')} on {held.get('host')}) is writing the index "
                    f"{storage.normalize(self.uri.rsplit('/', 1)[0])}; wait for it, rerun with --wait, or use "
                    f"another --index (a killed job's lease expires within {self.ttl_s:.0f} s)")
            time.sleep(self.poll_s)
        self._thread = threading.Thread(target=self._renew, daemon=True, name="exvad-lease")
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                self._write()
            except Exception:  # noqa: BLE001 - a failed renewal is retried; storage errors end the job elsewhere
                pass

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            doc = json.loads(storage.read_bytes(self.uri))
            if doc.get("owner") == self.owner:
                fs, path = storage.filesystem(self.uri)
                fs.rm(path)
        except Exception:  # noqa: BLE001 - an unreleased lease expires by itself
            pass

    def __enter__(self) -> IndexLease:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def storage_errors() -> tuple[type[BaseException], ...]:
    from exvad_ray.errors import StorageError

    return (StorageError, FileNotFoundError)
