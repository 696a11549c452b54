"""Finding 6: every option and named resource is checked on the driver before Ray starts; a bad
one costs one line on stderr and exit status 2. A storage outage is one line naming the endpoint."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from exvad_ray.cli import main

BAD = {
    "--window-snippets 0": "--window-snippets must be at least 1",
    "--keyframe-interval 0": "--keyframe-interval must be greater than 0",
    "--keyframe-interval nan": "--keyframe-interval must be a finite number",
    "--threshold nan": "--threshold must be a finite number",
    "--threshold 1.5": "--threshold must be at most 1",
    "--limit -1": "--limit must be at least 0",
    "--decode-tasks 0": "--decode-tasks must be at least 1",
    "--date-pattern (unclosed": "--date-pattern is not a valid regular expression",
    "--date-pattern (?P<year>\\d{4})": "--date-pattern needs the named group(s)",
    "--camera-pattern cam\\d+": "--camera-pattern needs the named group(s) (?P<camera>)",
    "--profile nosuch": "unknown profile 'nosuch'",
    "--label-set nosuch": "unknown label 'nosuch'",
    "--detector /nonexistent/det": "--detector: no checkpoint at /nonexistent/det",
}


@pytest.fixture()
def archive(tmp_path):
    (tmp_path / "archive").mkdir()
    return tmp_path


@pytest.mark.parametrize("option", sorted(BAD))
def test_bad_option_is_one_line_exit_2_before_ray(option, archive, capsys):
    import ray

    flag, value = option.split(" ", 1)
    index = archive / "index"
    rc = main(["process", "--archive", str(archive / "archive"), "--index", str(index), flag, value])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("exvad process: error: ") and BAD[option] in err, err
    assert "Traceback" not in err
    assert not ray.is_initialized() and not index.exists()  # nothing started, no run file written


def test_index_inside_archive_is_refused(archive, capsys):
    rc = main(["process", "--archive", str(archive / "archive"), "--index", str(archive / "archive" / "idx")])
    assert rc == 2 and "must not live inside the archive" in capsys.readouterr().err


def test_storage_outage_is_one_line_naming_the_endpoint(tmp_path):
    """A dead S3 endpoint (closed port): one line that names it and says what to do, exit 2."""
    env = dict(os.environ, AWS_ENDPOINT_URL="http://127.0.0.1:9", AWS_ACCESS_KEY_ID="AKIAEXAMPLEKEY0000000",
               AWS_SECRET_ACCESS_KEY="example-secret-do-not-print", AWS_REGION="us-east-1")
    env.pop("AWS_ENDPOINT_URL_S3", None)
    proc = subprocess.run([sys.executable, "-m", "exvad_ray.cli", "process", "--archive", "s3://arch/x",
                           "--index", "s3://idx/i"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "http://127.0.0.1:9" in lines[0] and "rerun" in lines[0]
    assert "example-secret" not in proc.stderr + proc.stdout and "AKIAEXAMPLE" not in proc.stderr + proc.stdout
