"""`ray job submit --working-dir . -- python jobs/process_archive.py ...` against a real local
`ray start --head` (started here on free loopback ports with its own --temp-dir, stopped here
without touching any other Ray on the machine). The cluster/ files are checked in tests/cluster/."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- real job (slow)

def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def _ray_bin() -> str:
    cand = Path(sys.executable).parent / "ray"
    return str(cand) if cand.exists() else shutil.which("ray") or "ray"


class LocalRayHead:
    """`ray start --head --block` in its own session and temp dir; stop() ends only its processes."""

    def __init__(self, env: dict[str, str]):
        self.temp_dir = tempfile.mkdtemp(prefix="exvad-rj-", dir="/tmp")  # short: unix socket paths
        (gcs, dash, agent_http, agent_grpc, rt_agent, metrics, client, nm, om) = _free_ports(9)
        self.dashboard_url = f"http://127.0.0.1:{dash}"
        self.cmd = [
            _ray_bin(), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
            "--port", str(gcs), "--num-cpus", "2", "--num-gpus", "0",
            "--object-store-memory", str(300 * 1024**2), "--temp-dir", self.temp_dir,
            "--include-dashboard", "true", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
            "--dashboard-agent-listen-port", str(agent_http), "--dashboard-agent-grpc-port", str(agent_grpc),
            "--runtime-env-agent-port", str(rt_agent), "--metrics-export-port", str(metrics),
            "--ray-client-server-port", str(client), "--node-manager-port", str(nm),
            "--object-manager-port", str(om), "--disable-usage-stats",
        ]
        self.log = open(os.path.join(self.temp_dir, "ray-start.log"), "wb")
        self.proc = subprocess.Popen(self.cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self._pids: set[int] = set()

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            self._remember_pids()
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited with {self.proc.returncode}:\n{self.start_log()}")
            try:
                with urllib.request.urlopen(self.dashboard_url + "/api/version", timeout=3) as r:
                    if r.status == 200:
                        self._remember_pids()
                        return
            except OSError:
                pass
            time.sleep(1)
        raise TimeoutError(f"dashboard not up at {self.dashboard_url}:\n{self.start_log()}")

    def start_log(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-4000:]

    def _remember_pids(self) -> None:
        """Every process of this cluster: descendants of `ray start --block`, plus any process whose
        command line names this cluster's temp dir (daemonised helpers re-parented elsewhere)."""
        import psutil

        try:
            self._pids.update(p.pid for p in psutil.Process(self.proc.pid).children(recursive=True))
        except psutil.Error:
            pass
        for p in psutil.process_iter(["pid", "cmdline"]):
            try:
                if any(self.temp_dir in a for a in (p.info["cmdline"] or [])):
                    self._pids.add(p.info["pid"])
            except psutil.Error:
                pass
        self._pids.discard(os.getpid())

    def stop(self) -> None:
        """SIGTERM to `ray start --block` and every process of this cluster, SIGKILL to stragglers.
        (Not `ray stop`: that stops every Ray on the machine, other users' included.)"""
        import psutil

        self._remember_pids()
        procs = []
        for pid in {self.proc.pid, *self._pids}:
            try:
                procs.append(psutil.Process(pid))
            except psutil.Error:
                pass
        for p in procs:
            try:
                p.terminate()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(procs, timeout=15)
        for p in alive:
            try:
                p.kill()
            except psutil.Error:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.log.close()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _small_archive(root: Path) -> dict:
    """Two short videos in dated camera folders and one zero-byte file."""
    from exvad_ray.video import probe_video
    from exvad_ray.video.badfiles import encode_test_video

    archive = root / "footage"
    good = {}
    for i, cam in enumerate(("cam01", "cam02")):
        p = archive / cam / "2026-11-20" / f"clip{i}.mp4"
        p.parent.mkdir(parents=True)
        encode_test_video(str(p), 48 + 16 * i, seed=i)
        good[str(p)] = probe_video(str(p)).n_snippets
    bad = archive / "cam03" / "zero_bytes.mp4"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"")
    return {"archive": str(archive), "index": str(root / "index"), "good": good, "bad": {str(bad): "empty"}}


@pytest.fixture(scope="module")
def job_setup(tmp_path_factory):
    """A running local head (the inputs are built while it boots), the archive and tiny models."""
    from exvad_ray.models import ensure_tiny_models

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.pop("EXVAD_TINY_MODELS", None)  # must arrive through the job's runtime env
    env.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0",
               HF_HUB_OFFLINE="1", PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    head = LocalRayHead(env)
    try:
        root = tmp_path_factory.mktemp("jobsubmit")
        archive = _small_archive(root)
        models = ensure_tiny_models(root / "tiny-models")
        head.wait_ready()
        yield {"head": head, "models": models, **archive}
    finally:
        head.stop()


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_ray_job_submit_processes_archive(job_setup):
    from exvad_ray import storage
    from exvad_ray import index as idx

    ray_head, small_archive, index = job_setup["head"], job_setup, job_setup["index"]
    # EXVAD_TINY_MODELS reaches the driver and every worker only through the job's runtime env.
    runtime_env = {"env_vars": {"EXVAD_TINY_MODELS": str(job_setup["models"]), "HF_HUB_OFFLINE": "1",
                                "TOKENIZERS_PARALLELISM": "false"}}
    cmd = [
        _ray_bin(), "job", "submit", "--address", ray_head.dashboard_url, "--working-dir", str(ROOT),
        "--runtime-env-json", json.dumps(runtime_env), "--",
        "python", "jobs/process_archive.py", "--archive", small_archive["archive"], "--index", index,
        "--explainer", "none", "--json",
    ]
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    t0 = time.time()
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=360)
    out = res.stdout + res.stderr
    assert res.returncode == 0, f"ray job submit failed ({res.returncode}):\n{out[-6000:]}"
    m = re.search(r"Job '(raysubmit_\w+)' succeeded", out)
    assert m, out[-4000:]

    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(ray_head.dashboard_url)
    info = client.get_job_info(m.group(1))
    assert info.status == JobStatus.SUCCEEDED
    # the job ran from the uploaded copy of the working dir, not from this checkout
    assert info.runtime_env["working_dir"].startswith("gcs://_ray_pkg_")

    summary = json.loads(out[out.index("{\n"): out.rindex("\n}") + 2])
    assert summary["videos_processed"] == 2 and summary["videos_failed"] == 1
    assert summary["errors_by_reason"] == {"empty": 1}

    norm = {storage.normalize(k): v for k, v in small_archive["good"].items()}
    videos = idx.read_table(index, "videos").to_pylist()
    assert sorted(v["uri"] for v in videos) == sorted(norm)
    assert all(v["status"] == "ok" for v in videos)
    assert {v["camera"] for v in videos} == {"cam01", "cam02"}
    snippets = idx.read_table(index, "snippets", columns=["uri", "snippet_index"]).to_pylist()
    for uri, n in norm.items():
        assert sorted(r["snippet_index"] for r in snippets if r["uri"] == uri) == list(range(n))
    errors = idx.read_table(index, "errors").to_pylist()
    assert [(e["uri"], e["reason"], e["stage"]) for e in errors] == [
        (storage.normalize(k), v, "decode") for k, v in small_archive["bad"].items()]
    print(f"ray job submit: {time.time() - t0:.1f} s")
