"""Check every option and named resource of `exvad process` on the driver, before Ray starts.

A bad value must cost the user one line on stderr and exit status 2, not a traceback after a
cluster started and a run file was written. Each check raises `ConfigError` naming the option as
the user typed it (`--window-snippets`), so the same messages serve the CLI and the Python API.
`preflight` is the one check of every named resource a stage needs (profile and its model files,
label set, detector checkpoint, normality model), for any command that starts
Ray: `exvad process` (through `validate_process`), and the others through their one call.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

from exvad_ray.errors import ConfigError, ExvadError


def check_number(option: str, value: Any, *, minimum: float | None = None, maximum: float | None = None,
                 above: float | None = None, integer: bool = False, allow_none: bool = False) -> None:
    """`value` must be a finite number within the bounds (`above` is an exclusive minimum)."""
    if value is None:
        if allow_none:
            return
        raise ConfigError(f"{option} is required")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise ConfigError(f"{option} must be {'an integer' if integer else 'a number'}, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{option} must be a finite number, got {value}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{option} must be at least {minimum:g}, got {value:g}")
    if above is not None and value <= above:
        raise ConfigError(f"{option} must be greater than {above:g}, got {value:g}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{option} must be at most {maximum:g}, got {value:g}")


def check_pattern(option: str, pattern: str | None, groups: tuple[tuple[str, ...], ...]) -> None:
    """A regex that compiles and has one of the named-group sets (e.g. (y, m, d) or (date,))."""
    if pattern is None:
        return
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"{option} is not a valid regular expression ({exc}): {pattern!r}") from exc
    have = set(compiled.groupindex)
    if not any(set(g) <= have for g in groups):
        want = " or ".join("(" + ", ".join(f"?P<{n}>" for n in g) + ")" for g in groups)
        raise ConfigError(f"{option} needs the named group(s) {want}; {pattern!r} has "
                          f"{', '.join(sorted(have)) or 'none'}")


def check_process_ranges(*, window_snippets: Any, keyframe_interval: Any, threshold: Any, limit: Any = None,
                         decode_tasks: Any = None, actors: Any = 1, gpu_per_stage: Any = None,
                         batch_windows: Any = 2) -> None:
    """The numeric options of `exvad process` (CLI names), before any config object is built."""
    check_number("--window-snippets", window_snippets, minimum=1, integer=True)
    check_number("--keyframe-interval", keyframe_interval, above=0)
    check_number("--threshold", threshold, minimum=0, maximum=1)
    check_number("--limit", limit, minimum=0, integer=True, allow_none=True)
    check_number("--decode-tasks", decode_tasks, minimum=1, integer=True, allow_none=True)
    check_number("--actors", actors, minimum=1, integer=True)
    check_number("--gpu-per-stage", gpu_per_stage, above=0, allow_none=True)
    check_number("batch_windows", batch_windows, minimum=1, integer=True)


def check_resources(profile: str, label_set: str, detector: str | None, *, model_files: bool = True) -> None:
    """Named resources of `exvad process` exist and parse (see `preflight`)."""
    preflight(profile=profile, label_set=label_set, detector=detector, model_files=model_files)


def preflight(*, profile: str | None = None, label_set: str | None = None, detector: str | None = None,
              normality: str | None = None, model_files: bool = True, detector_option: str = "--detector",
              normality_option: str = "--normality", index: str | None = None) -> None:
    """Every named resource a stage will need, checked on the driver before Ray starts; the first
    problem raises ConfigError (one line, exit 2 from the CLI). Only the resources given are checked.

    - profile: the YAML resolves and validates; with `model_files`, the model files it names on
      this machine exist (the tiny models' folder, `local-dir:` and absolute paths). A job on a
      remote cluster passes `model_files=False`: its workers, not the driver, hold those files.
    - label_set: resolves and validates.
    - detector: a checkpoint exists (model.pt or a folder holding one) and is a torch checkpoint
      archive (read without importing torch).
    - normality: the URI holds a readable normality model (its JSON document is read, not its
      arrays) with a calibrated, non-empty global bank; with `index` (rescoring), the index's stored
      snippet embeddings exist and have the width the model scores. A camera without a bank of its
      own is no error: the global bank scores it.
    """
    if profile is not None:
        from exvad_ray.models.profiles import load_profile

        load_profile(profile, check_local=model_files)
    if label_set is not None:
        from exvad_ray.models.labels import load_label_set

        load_label_set(label_set)
    if detector:
        check_detector(detector, detector_option)
    if normality:
        check_normality(normality, normality_option, index)


def check_normality(uri: str, option: str = "--normality", index: str | None = None) -> dict[str, Any]:
    """A readable normality model (`normality_scoring.check_model`) and, with `index`, embeddings in
    the index it can score. Returns the model's JSON document."""
    from exvad_ray.pipeline.normality_scoring import check_model

    try:
        doc = check_model(uri)
    except ExvadError as exc:
        raise ConfigError(f"{option}: {exc}") from exc
    if index is not None:
        dim = int((doc.get("layout") or {}).get("dim") or 0)
        width = stored_embedding_width(index)
        if width is None:
            raise ConfigError(f"{index} has no snippet embeddings to score (run `exvad process` first)")
        if dim and width != dim:
            raise ConfigError(f"{option}: the model scores {dim}-d embeddings, {index} stores {width}-d ones "
                              "(another feature model: fit a normality model on this index)")
    return doc


def stored_embedding_width(index: str) -> int | None:
    """Width of the first stored snippet embedding of the index (one file's first rows), None when
    there is none."""
    import pyarrow.parquet as pq

    from exvad_ray import storage
    from exvad_ray.index import list_files

    for f in list_files(storage.normalize(index), "snippets")[:3]:
        with storage.open_file(f) as fh:
            pf = pq.ParquetFile(fh)
            col = next((c for c in ("visual_embedding", "clip_embedding") if c in pf.schema_arrow.names), None)
            if col is None or pf.metadata.num_rows == 0:
                continue
            values = pf.read_row_group(0, columns=[col]).column(0).to_pylist()
            width = next((len(v) for v in values if v), None)
            if width:
                return width
    return None


def check_exists(uri: str, option: str, what: str) -> None:
    from exvad_ray import storage

    if not storage.exists(uri):
        raise ConfigError(f"{option}: {what} at {uri}")


def check_detector(detector: str, option: str = "--detector") -> None:
    """A detector checkpoint exists and is a torch checkpoint archive (`checkpoints.check_checkpoint`)."""
    from exvad_ray.checkpoints import check_checkpoint

    check_checkpoint(detector, option)


def is_local_cluster(address: str | None) -> bool:
    """Whether the Ray workers run on this machine (a local session, or `auto`/none: one started here),
    so that model files checked here are the ones they will open."""
    address = address or os.environ.get("RAY_ADDRESS")
    return address in (None, "", "local", "auto")


def validate_process(cfg: Any) -> None:
    """Everything `run_process` needs, checked on the driver (ConfigError/StorageError on failure)."""
    from exvad_ray import storage

    s, loc = cfg.sampling, cfg.localization
    check_process_ranges(window_snippets=s.window_snippets, keyframe_interval=s.keyframe_interval_s,
                         threshold=loc.threshold, limit=cfg.limit, decode_tasks=cfg.decode_tasks,
                         actors=cfg.model_actors, gpu_per_stage=cfg.gpu_per_stage, batch_windows=cfg.batch_windows)
    check_pattern("--date-pattern", cfg.date_pattern, (("y", "m", "d"), ("date",)))
    check_pattern("--camera-pattern", cfg.camera_pattern, (("camera",),))
    if cfg.explainer not in ("auto", "transformers", "vllm", "none"):
        raise ConfigError(f"--explainer must be auto, transformers, vllm or none, got {cfg.explainer!r}")
    if getattr(cfg, "index_format", "files") not in ("delta", "files"):
        raise ConfigError(f"--index-format must be delta or files, got {cfg.index_format!r}")
    if getattr(cfg, "commit_every", 1) < 1:
        raise ConfigError(f"--commit-every must be at least 1 video, got {cfg.commit_every}")
    seconds = getattr(cfg, "commit_seconds", 1.0)
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ConfigError(f"--commit-seconds must be a positive number of seconds, got {seconds}")
    if not cfg.extensions:
        raise ConfigError("no video file extensions given")
    check_resources(cfg.profile, cfg.label_set, cfg.detector, model_files=is_local_cluster(cfg.address))
    if getattr(cfg, "normality", None):
        preflight(normality=cfg.normality)
    if getattr(cfg, "inventory", None):
        try:
            storage.read_inventory_manifest(cfg.inventory, cfg.archive)
        except ExvadError as exc:
            raise ConfigError(f"--inventory: {exc}") from exc
    archive, index = storage.normalize(cfg.archive), storage.normalize(cfg.index)
    if index.startswith(archive.rstrip("/") + "/") or index == archive:
        raise ExvadError("the index must not live inside the archive (its files would be listed as input)")


def storage_outage(index: str, exc: BaseException) -> Exception | None:
    """When a job fails, whether storage is the cause: the one-line StorageUnavailable to raise
    instead of the (Ray) traceback, or None. Checks the exception chain and Ray's wrapped cause,
    then probes the index location."""
    from exvad_ray import storage
    from exvad_ray.errors import StorageError

    if isinstance(exc, StorageError) and not storage.is_unreachable(exc):
        return None
    if isinstance(exc, ExvadError) and not storage.is_unreachable(exc):
        return None
    if storage.is_unreachable(exc) or "StorageUnavailable" in str(exc) or "EndpointConnectionError" in str(exc):
        return storage.unavailable(index, exc)
    try:
        storage.exists(storage.join(index, "settings.json"))
    except StorageError as probe:
        return probe if storage.is_unreachable(probe) else None
    return None
