"""The wheel is the product: built from the checkout, installed into a fresh virtualenv outside it,
and run from a directory that is not the repository - `schemas/` and `configs/` must come from the
installed package, not from the source tree."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{cmd} failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A fresh venv holding only the built wheel; the test environment's packages (torch, ray, ...)
    are reused through a path entry, so nothing is downloaded. Returns (venv bin dir, env)."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"  # build from a copy: the build leaves build/ and *.egg-info behind
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", ".venv*", "build", "dist", "*.egg-info",
                                                             "__pycache__", ".pytest_cache", "demo-output"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "EXVAD_CONFIGS", "EXVAD_SCHEMAS_DIR",
                                                               "RAY_ADDRESS", "VIRTUAL_ENV")}
    _run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q",
          "-w", str(work / "dist")], work, env)
    wheels = list((work / "dist").glob("exvad_ray-*.whl"))
    assert len(wheels) == 1
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], work, env)
    purelib = Path(subprocess.check_output([str(venv / "bin" / "python"), "-c",
                                            "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                           text=True).strip())
    # The dependencies come from this interpreter's site-packages, after the venv's own (so the
    # wheel's exvad_ray wins over an editable install, whose finder hook a plain path does not run).
    deps = [p for p in {sysconfig.get_paths()["purelib"], *site.getsitepackages()} if os.path.isdir(p)]
    (purelib / "_exvad_test_deps.pth").write_text("\n".join(deps) + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps",
          "--no-index", "-q", str(wheels[0])], work, env)
    shutil.rmtree(src)
    return venv / "bin", env


def test_installed_wheel_runs_outside_the_checkout(installed, tmp_path, tiny_dir, real_clips_dir):
    bin_dir, env = installed
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = {**env, "EXVAD_TINY_MODELS": str(tiny_dir)}
    where = _run([str(bin_dir / "python"), "-c", "import exvad_ray.resources as r; print(r.__file__); "
                  "print(r.data_dir('schemas')); print(r.data_dir('configs'))"], cwd, env).stdout.split()
    assert all(str(REPO) not in w for w in where), where
    assert all("/_data/" in w for w in where[1:]), where

    shown = _run([str(bin_dir / "exvad"), "models", "show-profile", "tiny"], cwd, env)
    assert json.loads(shown.stdout)["name"] == "tiny"

    archive = tmp_path / "archive" / "cam1"
    archive.mkdir(parents=True)
    shutil.copy(real_clips_dir / "carphone_pristine.mp4", archive / "clip.mp4")
    out = _run([str(bin_dir / "exvad"), "process", "--archive", str(tmp_path / "archive"), "--index",
                str(tmp_path / "index"), "--label-set", "synthetic", "--explainer", "none", "--json"], cwd, env)
    summary = json.loads(out.stdout[out.stdout.index("{"):])
    assert summary["videos_processed"] == 1 and summary["videos_failed"] == 0 and summary["snippets"] > 0
    videos = _run([str(bin_dir / "python"), "-c", "import sys, exvad_ray.index as i; "
                   "t = i.read_table(sys.argv[1], 'videos'); print(t.num_rows, t.column('visual_model')[0])",
                   str(tmp_path / "index")], cwd, env).stdout.split()
    assert videos[0] == "1"
