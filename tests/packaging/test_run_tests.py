"""`make test` runs pytest through scripts/run_tests.py: its exit status is pytest's verdict, whatever
the interpreter's teardown does afterwards (a SIGSEGV there failed a green CI run at stop 19)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

RUNNER = Path(__file__).resolve().parents[2] / "scripts" / "run_tests.py"

# A test module that passes or fails, then crashes the interpreter's teardown the way a C extension
# can: an atexit handler that kills the process with SIGSEGV.
MODULE = """
import atexit, os, signal

atexit.register(lambda: os.kill(os.getpid(), signal.SIGSEGV))

def test_verdict():
    assert {ok}
"""


@pytest.mark.parametrize(("ok", "expected"), [(True, 0), (False, 1)])
def test_exit_status_is_pytests_verdict(tmp_path, ok, expected):
    test_file = tmp_path / "test_teardown_crash.py"
    test_file.write_text(MODULE.format(ok=ok))
    verdict = "1 passed" if ok else "1 failed"
    args = [str(test_file), "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path)]
    plain = subprocess.run([sys.executable, "-m", "pytest", *args], cwd=tmp_path, capture_output=True, text=True,
                           timeout=120)
    assert plain.returncode == -11  # the crash this guards against: plain pytest dies after its summary
    assert verdict in plain.stdout
    run = subprocess.run([sys.executable, "-X", "faulthandler", str(RUNNER), *args], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == expected, run.stdout[-2000:] + run.stderr[-2000:]
    assert verdict in run.stdout
