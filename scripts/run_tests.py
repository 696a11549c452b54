"""Run pytest and exit with its status, skipping the interpreter's teardown (`make test` uses this).

pytest's verdict is final once `pytest.main` returns: every test has run and been reported, every
fixture has been torn down (tests/conftest.py also shuts down a Ray session an in-process CLI call
left behind). What remains is CPython finalising the C extensions one long test process has loaded:
Ray's gRPC core, Arrow's AWS SDK, torch's thread pools, decord, DuckDB, Playwright. Stop 19's CI
printed "346 passed" and then died of SIGSEGV after that summary (pytest's unconfigure or this
teardown; the cause was not found, docs/ENVIRONMENT.md), so `make` failed a green suite.
The tests do not test that teardown; every CLI they run in a subprocess is still checked for a
clean exit of its own. So this process flushes its output and ends with `os._exit(status)`.

Usage: python scripts/run_tests.py [pytest arguments]   (plain `python -m pytest` works as well)
"""

from __future__ import annotations

import os
import sys

import pytest

if __name__ == "__main__":
    status = int(pytest.main(sys.argv[1:]))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
