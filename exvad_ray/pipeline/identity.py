"""The settings that make an index what it is: a rerun with other ones must not mix results.

The first run on an index records the output-changing settings in ``INDEX/settings.json``; every
later run compares. Different model profile, label set, explainer, sampling or content identity
need a new index (the rows would not be comparable); a different detector or threshold can be
applied to the existing rows with `exvad rescore`, which records its settings here through
`update_index_settings`.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from exvad_ray import storage
from exvad_ray.errors import ConfigError
from exvad_ray.index.runs import SETTINGS_FILE
RESCORE_KEYS = ("detector", "threshold")  # changeable in place with `exvad rescore`


def index_settings(cfg: Any) -> dict[str, Any]:
    """The output-changing settings of a ProcessConfig, JSON-ready."""
    return json.loads(json.dumps({
        "profile": cfg.profile, "label_set": cfg.label_set, "explainer": cfg.explainer,
        "detector": cfg.detector, "threshold": cfg.localization.threshold,
        "localization": dataclasses.asdict(cfg.localization), "sampling": dataclasses.asdict(cfg.sampling),
        "content_hash": bool(getattr(cfg, "content_hash", False)),
    }, default=str))


def _uri(index: str) -> str:
    return storage.join(index, SETTINGS_FILE)


def read_index_settings(index: str) -> dict[str, Any] | None:
    uri = _uri(index)
    return json.loads(storage.read_bytes(uri)) if storage.exists(uri) else None


def check_index_settings(cfg: Any) -> None:
    """Record the settings on a new index; refuse a rerun whose settings differ (ConfigError)."""
    want = index_settings(cfg)
    have = read_index_settings(cfg.index)
    if have is None:
        storage.write_bytes(_uri(cfg.index), json.dumps(want, indent=1, sort_keys=True).encode())
        return
    diff = sorted(k for k in want if k != "localization" and have.get(k) != want[k])
    if not diff and have.get("localization") != want["localization"]:
        diff = ["localization"]
    if not diff:
        return
    shown = ", ".join(f"{k} {have.get(k)!r} (now {want[k]!r})" for k in diff
                      if k not in ("sampling", "localization")) or ", ".join(diff)
    if set(diff) <= set(RESCORE_KEYS) | {"localization"}:
        hint = "use `exvad rescore` to apply a new detector or threshold to this index, or a new --index"
    else:
        hint = "use a new --index for these settings (rows made with different ones are not comparable)"
    raise ConfigError(f"the index {storage.normalize(cfg.index)} was built with other settings: {shown}; {hint}")


def update_index_settings(index: str, **changes: Any) -> None:
    """For `exvad rescore`: record a new detector/threshold on an existing index."""
    bad = set(changes) - set(RESCORE_KEYS)
    if bad:
        raise ConfigError(f"only {', '.join(RESCORE_KEYS)} can change on an existing index, not {sorted(bad)}")
    have = read_index_settings(index) or {}
    have.update(changes)
    if "threshold" in changes and isinstance(have.get("localization"), dict):
        have["localization"]["threshold"] = changes["threshold"]
    storage.write_bytes(_uri(index), json.dumps(have, indent=1, sort_keys=True).encode())
