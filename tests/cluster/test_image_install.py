"""What cluster/Dockerfile's pip steps install, resolved in a clean virtualenv (no system site
packages) against the package index; opt-in (EXVAD_TEST_IMAGE_RESOLVE=1) because it is network-bound:
the wheel built from the repo with `-c cluster/constraints.txt` resolves to exactly the lock -
every package pinned, Ray stays at the image's version, the CPU image gets no vLLM.

`pip install --dry-run --report` reads the index's metadata only, so no torch/vLLM wheels are
downloaded. The actual install of the wheel outside the checkout and a short `exvad process` with
it are the packaging test's (structure work); the images themselves need a Docker daemon and the
Ray base images, which this machine does not have (docs/CLUSTER.md, "The images").
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
DOCKERFILE = (CLUSTER / "Dockerfile").read_text()
RAY_VERSION = re.search(r"^ARG RAY_VERSION=(\S+)$", DOCKERFILE, re.M).group(1)
VLLM_VERSION = re.search(r"^ARG VLLM_VERSION=(\S+)$", DOCKERFILE, re.M).group(1)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _lock() -> dict[str, str]:
    lines = (CLUSTER / "constraints.txt").read_text().splitlines()
    return {_norm(n): v for n, v in (ln.split("==") for ln in lines if "==" in ln)}


def _index_reachable() -> bool:
    try:
        with urllib.request.urlopen("https://pypi.org/simple/pip/", timeout=10) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def clean_env(tmp_path_factory):
    if os.environ.get("EXVAD_TEST_IMAGE_RESOLVE") != "1":
        pytest.skip("network-bound (6.5 min here, 387 s): set EXVAD_TEST_IMAGE_RESOLVE=1 to run")
    if not _index_reachable():
        pytest.skip("package index not reachable")
    tmp = tmp_path_factory.mktemp("image-install")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv*", "build", "dist", "__pycache__",
                                                             "*.egg-info", "demo-output", ".whl", ".gl"))
    # The wheel the Dockerfile copies (`pip wheel --no-deps . -w dist`), built from a copy of the repo.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(src),
                    "-w", str(tmp / "dist")], check=True, cwd=tmp)
    (wheel,) = (tmp / "dist").glob("exvad_ray-*.whl")
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(tmp / "venv")
    return tmp / "venv" / "bin" / "python", wheel, tmp


def _resolve(python: Path, tmp: Path, name: str, *reqs: str) -> dict[str, str]:
    report = tmp / f"{name}.json"
    env = dict(os.environ, PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("PIP_CONSTRAINT", None)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--dry-run", "--ignore-installed", "--report",
                    str(report), "-c", str(CLUSTER / "constraints.txt"), *reqs], check=True, env=env, cwd=tmp)
    return {_norm(i["metadata"]["name"]): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}


@pytest.mark.slow
def test_gpu_image_install_resolves_to_the_lock(clean_env):
    python, wheel, tmp = clean_env
    reqs = (f"ray[data,train,default]=={RAY_VERSION}", f"vllm=={VLLM_VERSION}", f"{wheel}[vllm]")
    for r in reqs[:2]:
        assert f'"{r.replace(RAY_VERSION, "${RAY_VERSION}").replace(VLLM_VERSION, "${VLLM_VERSION}")}"' in DOCKERFILE
    got = _resolve(python, tmp, "gpu", *reqs)
    lock = _lock()
    assert got.pop("exvad-ray") == "0.1.0"
    assert got["ray"] == RAY_VERSION and got["vllm"] == VLLM_VERSION
    assert {k: v for k, v in got.items() if lock.get(k) != v} == {}  # every package pinned, at the lock's version
    assert set(got) == set(lock)  # and the lock holds nothing else
    # The CPU image installs the wheel without the extra: vLLM comes only with `[vllm]`.
    meta = zipfile.ZipFile(wheel).read("exvad_ray-0.1.0.dist-info/METADATA").decode()
    vllm_lines = [ln for ln in meta.splitlines() if ln.startswith("Requires-Dist: vllm")]
    assert vllm_lines and all('extra == "vllm"' in ln for ln in vllm_lines)
