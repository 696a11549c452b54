"""Where the package's data folders are: `schemas/` (the index contract) and `configs/` (profiles,
label sets).

The top-level `schemas/` and `configs/` of the repository are the source of truth; the wheel carries
copies under ``exvad_ray/_data/`` (setup.py's build step), so an installed package (a container
image, a Ray runtime env ``pip:`` entry) finds them without a source tree. Order: an environment
override, the copy inside the installed package, the source checkout beside the package.
"""

from __future__ import annotations

import os
from pathlib import Path

from exvad_ray.errors import ExvadError

PACKAGE_DIR = Path(__file__).resolve().parent
DATA_KINDS = ("schemas", "configs")
_ENV = {"schemas": "EXVAD_SCHEMAS_DIR", "configs": "EXVAD_CONFIGS"}


def data_dirs(kind: str) -> list[Path]:
    """Candidate folders for `kind`, most specific first (only those that exist)."""
    if kind not in DATA_KINDS:
        raise ValueError(f"unknown data kind {kind!r}")
    cands = []
    if os.environ.get(_ENV[kind]):
        cands.append(Path(os.environ[_ENV[kind]]))
    cands += [PACKAGE_DIR / "_data" / kind, PACKAGE_DIR.parent / kind]
    return [c for c in dict.fromkeys(cands) if c.is_dir()]


def data_dir(kind: str) -> Path:
    """The folder `kind` is read from; a clear error when the installation lacks it."""
    dirs = data_dirs(kind)
    if not dirs:
        raise ExvadError(f"no {kind}/ folder found (looked in ${_ENV[kind]}, {PACKAGE_DIR / '_data' / kind}, "
                         f"{PACKAGE_DIR.parent / kind}); reinstall exvad-ray")
    return dirs[0]
