"""Node failure on a real multi-node Ray (`ray.cluster_utils.Cluster`: a head and two worker
nodes): a worker node is removed in the middle of an archive job, and the job completes with every
video in the index exactly once; a Ray Train run loses a worker node and resumes from its last
checkpoint."""

from __future__ import annotations

import os
import threading
import time

import pytest

os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")

from exvad_ray import index as idx
from exvad_ray.pipeline.job import ProcessConfig, run_process
from exvad_ray.video.badfiles import encode_test_video

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                      "object_store_memory": 200 * 1024**2})
    workers = [c.add_node(num_cpus=2, object_store_memory=200 * 1024**2) for _ in range(2)]
    c.wait_for_nodes()
    ray.init(address=c.address)
    yield c, workers
    ray.shutdown()
    c.shutdown()


def _node_of_busiest(workers) -> object:
    """The worker node with the least free CPU (the one running the decode actor)."""
    from ray._private import state

    free = state.available_resources_per_node()
    return min(workers, key=lambda n: free.get(n.node_id, {}).get("CPU", 0.0))


def test_worker_node_removed_mid_job(tiny_dir, cluster, tmp_path):
    c, workers = cluster
    archive = tmp_path / "archive" / "cam"
    archive.mkdir(parents=True)
    for i in range(6):
        encode_test_video(str(archive / f"v{i}.mp4"), 40, seed=i)
    cfg = ProcessConfig(archive=str(tmp_path / "archive"), index=str(tmp_path / "index"), label_set="synthetic",
                        profile="tiny",
                        explainer="none", decode_tasks=1, progress_interval_s=30)
    removed: list[str] = []

    def remove_when_started() -> None:
        deadline = time.time() + 300
        while time.time() < deadline and not idx.done_video_ids(cfg.index, ("videos",)):
            time.sleep(0.2)
        victim = _node_of_busiest(workers)
        removed.append(victim.node_id)
        c.remove_node(victim, allow_graceful=False)

    killer = threading.Thread(target=remove_when_started, daemon=True)
    killer.start()
    summary = run_process(cfg)
    killer.join(timeout=60)
    assert removed, "the node was not removed"
    done = len(idx.done_video_ids(cfg.index, ("videos",)))
    assert summary["videos_failed"] == 0 and done == 6
    videos = idx.read_table(cfg.index, "videos", columns=["uri"], current=False).column("uri").to_pylist()
    assert sorted(os.path.basename(u) for u in videos) == [f"v{i}.mp4" for i in range(6)]  # exactly once
    snippets = idx.read_table(cfg.index, "snippets", columns=["uri", "snippet_index"], current=False).to_pylist()
    assert len(snippets) == len({(r["uri"], r["snippet_index"]) for r in snippets}) == 6 * 3  # 40 frames: 3 snippets


def test_training_resumes_from_checkpoint_after_node_loss(cluster, tmp_path):
    """Ray Train on the cluster: in epoch 2 the node running a training worker is removed; the
    run restarts on the remaining nodes from its last checkpoint (not from epoch 0) and finishes."""
    from exvad_ray.detector import DetectorConfig
    from exvad_ray.train.loop import TrainConfig
    from exvad_ray.train.ray_job import RayTrainSettings, run_ray_training
    from exvad_ray.train.synthetic import synthetic_feature_set

    c, workers = cluster
    # The cluster's own list: ray.nodes() can still call a node removed by the previous test alive.
    alive = [w for w in workers if w in c.worker_nodes]
    spare = c.add_node(num_cpus=2, object_store_memory=200 * 1024**2)
    c.wait_for_nodes()
    names = ["Normal", "Fight", "Fire", "Theft"]
    tr, emb = synthetic_feature_set(names, n_per_class=10, n_normal=30, dim=32, seed=0)
    va, _ = synthetic_feature_set(names, n_per_class=4, n_normal=8, dim=32, seed=1, split="val")
    log_path = tmp_path / "epochs.log"
    removed: list[str] = []
    log_file = str(log_path)

    def log_epoch(epoch: int, rank: int) -> None:  # runs in the workers (a closure: pickled by value)
        if rank == 0:
            with open(log_file, "a") as f:
                f.write(f"{epoch} {os.getpid()}\n")

    def remove_after_epoch_1() -> None:
        deadline = time.time() + 300
        runs = tmp_path / "runs" / "nodes"
        while time.time() < deadline and (not log_path.exists() or len(log_path.read_text().splitlines()) < 3
                                          or not list(runs.glob("checkpoint_*/state.pt"))):
            time.sleep(0.2)  # epoch 2 under way: epochs 0 and 1 reported with their checkpoints
        time.sleep(2.0)  # the controller registers reported checkpoints asynchronously
        victim = _node_of_busiest(alive + [spare])
        removed.append(victim.node_id)
        c.remove_node(victim, allow_graceful=False)

    killer = threading.Thread(target=remove_after_epoch_1, daemon=True)
    killer.start()
    out = run_ray_training(tr, va, names, emb, DetectorConfig(embed_dim=32, num_classes=4, visual_length=128, layers=1),
                           TrainConfig(epochs=6, batch_size=16, lr=3e-3),
                           RayTrainSettings(num_workers=2, storage_path=str(tmp_path / "runs"), name="nodes",
                                            max_failures=2),
                           on_epoch_start=log_epoch, torch_threads=1)
    killer.join(timeout=60)
    assert removed
    log = [line.split() for line in log_path.read_text().splitlines()]
    epochs, pids = [int(e) for e, _ in log], [p for _, p in log]
    restart = next((i for i in range(1, len(pids)) if pids[i] != pids[0]), None)
    assert restart is not None, log  # the rank-0 worker changed: the run restarted
    assert epochs[restart] >= 1 and epochs[restart:] == list(range(epochs[restart], 6)), epochs  # resumed
    assert [h["epoch"] for h in out.history] == list(range(6))
