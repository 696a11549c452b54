"""Gated hub models: fail on the driver, before any work, when a profile needs a token that is not there.

Llama-3.1 (the `paper` explainer) is gated on the Hugging Face hub: without a token whose account
accepted the licence, the download fails only when the explainer actor starts, after the archive
was listed and decode began. `check_gated_access` runs in the process job's validation instead.
It checks presence, not validity (that needs the network): HF_TOKEN / HUGGING_FACE_HUB_TOKEN, or
the token file huggingface_hub reads (HF_TOKEN_PATH, else $HF_HOME/token). With HF_HUB_OFFLINE=1
the weights must already be in HF_HOME and no token is needed.
"""

from __future__ import annotations

import os
from pathlib import Path

from exvad_ray.errors import ConfigError

# Hub organisations whose models need an accepted licence and a token.
GATED_ORGS = ("meta-llama/",)


def hf_token_present() -> bool:
    """Whether huggingface_hub would find a token (environment or token file)."""
    if os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN"):
        return True
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    path = Path(os.path.expanduser(os.environ.get("HF_TOKEN_PATH") or os.path.join(home, "token")))
    return path.is_file() and bool(path.read_text().strip())


def gated_models(profile: str, *, explainer: bool = True) -> list[str]:
    """Hub ids of the profile's models that are gated (local directories never are)."""
    from exvad_ray.models.profiles import load_profile

    p = load_profile(profile, check_local=False)
    models = [p.clip.model, p.captioner.model] + ([p.explainer.model] if explainer else [])
    return [m for m in models if m.startswith(GATED_ORGS) and not os.path.isdir(m)]


def check_gated_access(profile: str, *, explainer: bool = True) -> None:
    """Raise ConfigError (one line) when the profile needs a gated model and no token is available."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return
    gated = gated_models(profile, explainer=explainer)
    if gated and not hf_token_present():
        raise ConfigError(f"profile {profile!r} needs the gated model {', '.join(gated)}: set HF_TOKEN to a "
                          "Hugging Face token with access (Kubernetes: Secret exvad-hf; ray up: SSM /exvad/hf-token),"
                          " or pre-stage the weights in HF_HOME and set HF_HUB_OFFLINE=1")
