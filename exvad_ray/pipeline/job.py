"""The archive job: list -> skip done -> decode -> CLIP -> captions -> cleaning -> explanation ->
text features -> scoring -> per-video assembly and Parquet writes. See docs/PIPELINE.md."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import math
import os
import sys
import threading
import time
from collections import Counter
from typing import Any

from exvad_ray import __version__, storage
from exvad_ray import index as idx
from exvad_ray.index import idmap
from exvad_ray.index.partitions import DEFAULT_DATE_PATTERN
from exvad_ray.pipeline import stages as st
from exvad_ray.detector.localize import LocalizationConfig
from exvad_ray.pipeline.commits import COMMIT_SECONDS, BatchCommitter
from exvad_ray.pipeline.decode import utcnow
from exvad_ray.pipeline.fused import DecodeAndModelStage
from exvad_ray.pipeline.identity import check_index_settings
from exvad_ray.pipeline.lease import IndexLease
from exvad_ray.pipeline.progress import ProgressActor, driver_node, progress_line
from exvad_ray.pipeline.scoring import scorer_class_names
from exvad_ray.pipeline.validate import storage_outage, validate_process
from exvad_ray.pipeline.worklist import WorkCounts, final_snapshot, format_counts, plan_work, summary_counts
from exvad_ray.video import SamplingConfig

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ProcessConfig:
    """Arguments of `exvad process` (also the run's identity: same arguments -> same run id)."""

    archive: str
    index: str
    profile: str = "lite"
    detector: str | None = None
    label_set: str = "ucf-crime"
    explainer: str = "auto"  # auto | transformers | vllm | none
    extensions: tuple[str, ...] = storage.DEFAULT_VIDEO_EXTENSIONS
    date_pattern: str = DEFAULT_DATE_PATTERN
    camera_pattern: str | None = None
    sampling: SamplingConfig = dataclasses.field(default_factory=SamplingConfig)
    localization: LocalizationConfig = dataclasses.field(default_factory=LocalizationConfig)
    decode_tasks: int | None = None  # None: from the cluster's CPUs
    model_actors: int = 1  # actors per model stage
    gpu_per_stage: float | None = None  # None: 1 GPU share per model stage when GPUs exist
    fuse_stages: bool | None = None  # None: fuse the model stages into one actor when there is no GPU
    batch_windows: int = 2  # windows per model batch
    retry_errors: bool = False
    content_hash: bool = False  # identify local files by a sha256 of their bytes, not size + mtime
    wait: bool = False  # wait for another job's lease on the index instead of refusing
    limit: int | None = None
    address: str | None = None  # Ray address; None: connect to a running cluster or start a local one
    progress_interval_s: float = 10.0
    # a normality model (`exvad normality fit`): once the job's videos are committed, they are scored with
    # it too (alone, or fused with --detector) into a scoring of their own, marked current (docs/PIPELINE.md)
    normality: str | None = None
    # the table format of a NEW index: "delta" (Delta Lake tables, blocks of videos committed in
    # batches) or "files" (one Parquet file per video per table); an existing index keeps its own
    index_format: str = "delta"
    commit_every: int = 16  # Delta index: videos per batch (one file per table and partition, one commit)
    commit_seconds: float = COMMIT_SECONDS  # Delta index: or fewer, once the oldest has waited this long
    # an S3 Inventory manifest.json of the archive's bucket: the rerun plans from it instead of listing
    inventory: str | None = None

    # Knobs that change how fast or where a run goes, not what it produces: a rerun that changes
    # them is still the same run (same id, same processing date, so still exactly once).
    NOT_IDENTITY = ("address", "progress_interval_s", "limit", "retry_errors", "decode_tasks", "model_actors",
                    "gpu_per_stage", "fuse_stages", "batch_windows", "wait", "normality", "index_format",
                    "commit_every", "commit_seconds", "inventory")

    def run_id(self) -> str:
        keys = {k: v for k, v in dataclasses.asdict(self).items() if k not in self.NOT_IDENTITY}
        return hashlib.sha1(json.dumps(keys, sort_keys=True, default=str).encode()).hexdigest()[:12]


def processing_date(cfg: ProcessConfig) -> str:
    """The date partition for videos whose path has none: the first start of this run (so a rerun
    of a killed run writes to the same partitions, keeping exactly-once)."""
    prev = idx.read_manifest(cfg.index, cfg.run_id())
    return prev["processing_date"] if prev else dt.date.today().isoformat()


def list_work(cfg: ProcessConfig, date: str) -> tuple[list[dict[str, Any]], WorkCounts]:
    """Archive items still to process, and how the listing splits (see pipeline/worklist.py)."""
    return plan_work(cfg, date)


def _init_ray(cfg: ProcessConfig, dashboard: bool = True) -> None:
    """Connect to `cfg.address` (or RAY_ADDRESS), or start a local Ray; `dashboard=False` starts a
    local one without the dashboard (a short job such as `exvad rescore` has no use for it)."""
    import ray
    import ray.data

    if ray.is_initialized():
        return
    env = {k: os.environ[k] for k in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION",
                                      "AWS_DEFAULT_REGION", "HF_HUB_OFFLINE", "EXVAD_TINY_MODELS")
           if k in os.environ}
    # Inside a Ray job the job's runtime env already reaches every worker, and ray.init refuses
    # to redefine its env_vars: pass only the variables the job's runtime env does not set.
    job_cfg = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}") or "{}")
    job_vars = (job_cfg.get("runtime_env") or {}).get("env_vars") or {}
    env = {k: v for k, v in env.items() if k not in job_vars}
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    kwargs: dict[str, Any] = {"runtime_env": {"env_vars": env} if env else None, "log_to_driver": True}
    if address == "local" and not dashboard:
        ray.init(address="local", include_dashboard=False, **kwargs)
    elif address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(include_dashboard=False, **kwargs)
    ctx = ray.data.DataContext.get_current()
    # The memory advice targets long-lived GPU clusters; per-stage memory here is bounded by design.
    ctx.issue_detectors_config.detectors = []


def _plan_resources(cfg: ProcessConfig, chain: list[st.Stage]) -> dict[str, Any]:
    import ray

    res = ray.cluster_resources()
    node_cpus = max((float(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")), default=None)
    return plan_resources(cfg, float(res.get("CPU", 1)), float(res.get("GPU", 0)), chain, node_cpus)


def plan_resources(cfg: ProcessConfig, cpus: float, gpus: float, chain: list[st.Stage] | None = None,
                   node_cpus: float | None = None) -> dict[str, Any]:
    """The layout and every stage's resources, from the cluster's resources and the stages'
    declarations (pipeline.stages), so that pools never wait on each other.

    Fused (CPU-only) layout: one actor per core that decodes and runs the whole model chain
    (`DecodeAndModelStage`: frames never leave the process), with one torch thread per actor share
    of the cores, plus the assembler's small share.
    Per-stage (GPU) layout: every actor stage gets its declared CPUs (a quarter on clusters of <= 4
    CPUs) and its GPU share (`plan_gpu_shares`); decode tasks get whole cores (half on 2 CPUs) of
    what the actor pools leave.
    """
    if chain is None:
        chain = st.build_chain(job_spec(cfg, "transformers" if cfg.explainer == "auto" else cfg.explainer))
    fusable = all(s.fusable for s in chain if not s.tail)
    fuse = (cfg.fuse_stages if cfg.fuse_stages is not None else gpus == 0) and fusable
    cpu_scale = 0.25 if cpus <= 4 or fuse else 1.0
    actor_stages = [s for s in chain if s.compute == "actors" and (not fuse or not s.fusable)]
    stages: dict[str, dict[str, Any]] = {}
    shares = st.plan_gpu_shares(chain, gpus, cfg.model_actors, cfg.gpu_per_stage)
    for s in actor_stages:
        stages[s.name] = {"num_cpus": s.per_stage.cpus * cpu_scale, "num_gpus": shares.get(s.name, 0.0),
                          "actors": s.pool_size or cfg.model_actors}
    reserve = sum(r["num_cpus"] * r["actors"] for r in stages.values())
    if fuse:
        decode_tasks = cfg.decode_tasks or max(1, int(cpus))
        decode_cpu = max(0.05, math.floor((cpus - reserve) / decode_tasks * 1000) / 1000)
        if node_cpus:  # an actor must fit on one node (multi-node clusters), beside the assembler
            decode_cpu = min(decode_cpu, max(0.05, node_cpus - reserve))
        torch_threads: int | None = max(1, int(cpus // decode_tasks))
    else:
        torch_threads = None
        decode_cpu = chain[0].per_stage.cpus * (0.5 if cpus <= 2 else 1.0)
        decode_tasks = cfg.decode_tasks or max(1, int((cpus - reserve) // decode_cpu))
    return {"cpus": cpus, "gpus": gpus, "fuse": fuse, "decode_cpu": decode_cpu, "decode_tasks": decode_tasks,
            "torch_threads": torch_threads, "stages": stages}


def job_spec(cfg: ProcessConfig, explainer: str, class_names: list[str] | tuple[str, ...] = (),
             progress: Any = None, batch_writes: bool = False) -> st.JobSpec:
    return st.JobSpec(index=cfg.index, run_id=cfg.run_id(), profile=cfg.profile, explainer=explainer,
                      detector=cfg.detector, label_set=cfg.label_set, sampling=cfg.sampling,
                      class_names=tuple(class_names), localization=cfg.localization, progress=progress,
                      batch_writes=batch_writes)


def uses_delta(cfg: ProcessConfig) -> bool:
    """Whether this run writes Delta tables: an index that is Delta stays Delta, one that holds
    per-video files stays so (`exvad index upgrade` converts it), a new one takes `index_format`."""
    if idx.is_delta_index(cfg.index):
        return True
    # the first table file listed is enough (never the whole listing: 1e7 files on a big index)
    if idx.read_manifests(cfg.index) or any(files for t in ("videos", "errors")
                                            for files in idx.iter_table_files(cfg.index, t, page=64)):
        return False
    return cfg.index_format == "delta"


def forget_failures(index: str, video_ids: list[str]) -> None:
    """Delta index: the error rows of the videos this run retries (`--retry-errors`) are deleted
    before they are processed again, so that a retry that fails leaves its new row only and one
    that succeeds none, for every reader. Killed before a retry finishes, such a video is simply
    still to do."""
    if video_ids:
        from exvad_ray.index import deletes

        deletes.delete_videos(index, "errors", video_ids)


def prepare_delta(cfg: ProcessConfig) -> dict[str, int]:
    """Before planning on a Delta index: its tables exist, and the rows of batches a killed run
    committed to some tables but not to `videos` are deleted (`index.batches.repair`), so that
    redoing those videos cannot add their rows twice."""
    from exvad_ray.index import batches

    batches.create_tables(cfg.index)
    runs = {m.get("run_id") for m in idx.read_manifests(cfg.index)} | {cfg.run_id()}
    return batches.repair(cfg.index, sorted(r for r in runs if r))


def resolve_explainer(cfg: ProcessConfig, gpus: float) -> str:
    if cfg.explainer != "auto":
        return cfg.explainer
    from exvad_ray.models import load_profile

    in_stage = load_profile(cfg.profile, check_local=False).explainer.backend == "summary"  # no LLM to serve
    return "vllm" if gpus and _has_vllm() and not in_stage else "transformers"


def build_dataset(items: list[dict[str, Any]], chain: list[st.Stage], plan: dict[str, Any], batch_windows: int) -> Any:
    """The Ray dataset of a run in the planned layout. The chain is checked first: a stage that reads
    a column no earlier stage writes fails here, naming both, before anything runs."""
    import ray
    from ray.data import ActorPoolStrategy, TaskPoolStrategy

    st.check_chain(chain)
    ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
    if plan["fuse"]:
        fused = [s for s in chain if s.fusable]
        ds = ds.map_batches(DecodeAndModelStage, batch_size=1, batch_format="numpy",
                            fn_constructor_args=(fused, plan["torch_threads"]),
                            compute=ActorPoolStrategy(size=plan["decode_tasks"]), num_cpus=plan["decode_cpu"])
        rest = [s for s in chain if not s.fusable]
    else:
        decode, rest = chain[0], chain[1:]
        ds = ds.flat_map(decode.instance(), compute=TaskPoolStrategy(size=plan["decode_tasks"]),
                         num_cpus=plan["decode_cpu"])
        if decode.drops:
            ds = ds.drop_columns(list(decode.drops))
    for stage in rest:
        ds = stage.apply(ds, plan["stages"][stage.name], stage.batch_size or batch_windows)
        if stage.drops:
            ds = ds.drop_columns(list(stage.drops))
    return ds


def _has_vllm() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def _write_manifest(cfg: ProcessConfig, date: str, started: dt.datetime, summary: dict[str, Any] | None) -> None:
    prev = idx.read_manifest(cfg.index, cfg.run_id()) or {}
    doc = {
        "run_id": cfg.run_id(), "archive": storage.normalize(cfg.archive), "processing_date": date,
        "first_started_at": prev.get("first_started_at", started.isoformat()),
        "started_at": started.isoformat(), "finished_at": utcnow().isoformat() if summary else None,
        "args": json.loads(json.dumps(dataclasses.asdict(cfg), default=str)), "summary": summary,
        "versions": versions(), "attempts": int(prev.get("attempts", 0)) + (0 if summary else 1),
    }
    doc["args"].pop("address", None)
    idx.write_manifest(cfg.index, doc)


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"exvad-ray": __version__, "python": sys.version.split()[0]}
    for pkg in ("ray", "torch", "transformers", "open_clip_torch", "pyarrow", "decord", "vllm"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def run_process(cfg: ProcessConfig, echo: Any = print) -> dict[str, Any]:
    """Run the archive job; returns the summary (also written to the run manifest).

    Options are validated before anything starts; the job holds the index's lease and refuses
    settings the index was not built with (pipeline/validate.py, lease.py, identity.py)."""
    validate_process(cfg)
    with IndexLease(cfg.index, wait=cfg.wait):
        check_index_settings(cfg)
        try:
            return _run_process(cfg, echo)
        except Exception as exc:
            raise storage_outage(cfg.index, exc) or exc


def _run_process(cfg: ProcessConfig, echo: Any) -> dict[str, Any]:
    import ray

    started = utcnow()
    t0 = time.time()
    idx.check_writable(cfg.index)
    delta = uses_delta(cfg)
    if delta:
        repaired = prepare_delta(cfg)
        if repaired:
            echo(f"[exvad] removed the rows of an interrupted batch: {repaired}")
    date = processing_date(cfg)
    items, counts = list_work(cfg, date)
    if delta:
        forget_failures(cfg.index, [i["video_id"] for i in items if i["video_id"] in counts.retried_ids])
    skipped = counts.skipped
    echo(f"[exvad] archive {storage.normalize(cfg.archive)}: {len(items) + skipped} videos, "
         f"{counts.done_before} done before, {counts.failed_before} failed before, {len(items)} to process "
         f"(run {cfg.run_id()})")
    class_names = scorer_class_names(cfg.detector, cfg.label_set)
    _write_manifest(cfg, date, started, None)
    rows: list[dict[str, Any]] = []
    snapshot: dict[str, Any] = {"errors": {}, "segments": {}, "failed": 0, "done": 0}
    if items:
        _init_ray(cfg)
        progress = ProgressActor.options(**driver_node()).remote(len(items), sum(i["size"] for i in items))
        explainer = resolve_explainer(cfg, float(ray.cluster_resources().get("GPU", 0)))
        chain = st.build_chain(job_spec(cfg, explainer, class_names, progress, batch_writes=delta))
        commit = (BatchCommitter(cfg.index, cfg.run_id(), every=cfg.commit_every, seconds=cfg.commit_seconds)
                  if delta else None)
        plan = _plan_resources(cfg, chain)
        log.info("resources: %s", plan)
        ds = build_dataset(items, chain, plan, cfg.batch_windows)
        stop = threading.Event()

        def report() -> None:
            while not stop.wait(cfg.progress_interval_s):
                try:
                    echo(progress_line(ray.get(progress.snapshot.remote(), timeout=5)))
                except Exception:  # noqa: BLE001
                    pass

        reporter = threading.Thread(target=report, daemon=True)
        reporter.start()
        try:
            with commit or contextlib.nullcontext():
                for row in ds.iter_rows():
                    row = dict(row, arrived_s=time.time() - t0)
                    if commit is not None:
                        commit(row)  # takes the video's rows (payload) off the summary row
                    rows.append(row)
        finally:
            stop.set()
        if commit is not None:
            idmap.warm(cfg.index, ["errors"])
        snapshot = final_snapshot(cfg.index, items, progress)
    summary = summarize(cfg, rows, snapshot, skipped, time.time() - t0)
    summary.update(summary_counts(counts), videos_crash_retried=int(snapshot.get("retried_videos", 0)))
    _write_manifest(cfg, date, started, summary)
    return summary  # committed: the command then refreshes derived caches (the search sidecar)


def summarize(cfg: ProcessConfig, rows: list[dict[str, Any]], snapshot: dict[str, Any], skipped: int,
              wall_s: float) -> dict[str, Any]:
    ok = [r for r in rows if r["status"] == "ok"]
    hours = sum(float(r["hours"]) for r in ok)
    segments: Counter[str] = Counter()
    for r in ok:
        segments.update(c for c in str(r["segment_classes"]).split(",") if c)
    errors: Counter[str] = Counter()
    for key, n in (snapshot.get("errors") or {}).items():
        errors[key.split(":", 1)[1] if ":" in key else key] += n
    return {
        "run_id": cfg.run_id(), "archive": storage.normalize(cfg.archive), "index": storage.normalize(cfg.index),
        "videos_processed": len(ok), "videos_failed": int(snapshot.get("failed", 0)), "videos_skipped": skipped,
        "hours": round(hours, 4), "snippets": sum(int(r["n_snippets"]) for r in ok),
        "flagged_segments": dict(sorted(segments.items())), "errors_by_reason": dict(sorted(errors.items())),
        "wall_s": round(wall_s, 1), "video_hours_per_hour": round(hours / (wall_s / 3600), 2) if wall_s > 0 else 0.0,
        **_steady_state(ok),
    }


def _steady_state(ok: list[dict[str, Any]]) -> dict[str, Any]:
    """Start-up latency (first video done) and the rate after it, which large archives approach."""
    if len(ok) < 2:
        return {}
    times = sorted(float(r["arrived_s"]) for r in ok)
    first = min(ok, key=lambda r: float(r["arrived_s"]))
    rest_hours = sum(float(r["hours"]) for r in ok) - float(first["hours"])
    span = times[-1] - times[0]
    return {"first_video_s": round(times[0], 1),
            "steady_video_hours_per_hour": round(rest_hours / (span / 3600), 2) if span > 0 else None}


def format_summary(s: dict[str, Any]) -> str:
    seg = ", ".join(f"{k} {v}" for k, v in s["flagged_segments"].items()) or "none"
    err = ", ".join(f"{k} {v}" for k, v in s["errors_by_reason"].items()) or "none"
    return "\n".join([
        f"exvad process: run {s['run_id']} done in {s['wall_s']:.1f} s",
        f"  videos:   {s['videos_processed']} processed, {s['videos_failed']} failed, {s['videos_skipped']} skipped",
        *format_counts(s),
        f"  video:    {s['hours']:.3f} h, {s['snippets']} snippets, {s['video_hours_per_hour']:.1f} video-hours per hour",
        f"  flagged:  {seg}",
        f"  errors:   {err}",
        f"  index:    {s['index']}  (tables videos, snippets, segments, captions, errors; "
        f"{'run_log' if idx.is_delta_index(s['index']) else 'runs/'})",
        *_normality_line(s.get("normality_scoring")),
    ])


def _normality_line(n: dict[str, Any] | None) -> list[str]:
    """`exvad process --normality`: the scoring made after the job."""
    if not n:
        return []
    seg = ", ".join(f"{k} {v}" for k, v in n["segments"].items()) or "none"
    return [f"  normality: scoring {n['scoring_id']} ({n['mode']}{', current' if n['current'] else ''}): "
            f"{n['videos_scored']} videos scored, flagged {seg}"]


def check_locations(cfg: ProcessConfig) -> None:
    """Fail early, with a clear message, on options, resources and locations that cannot work."""
    validate_process(cfg)
