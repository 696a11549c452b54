"""Security rules that hold by construction and are cheap to check on the source: YAML is read
with safe loaders only, torch checkpoints are loaded with weights_only=True, and the S3 settings
never print their secrets. (Secrets in logs, indexes and error rows of a real job:
test_reliability_kill.py greps them.)"""

from __future__ import annotations

import pathlib
import re

import exvad_ray
from exvad_ray.storage import S3Settings

SRC = pathlib.Path(exvad_ray.__file__).parent


def _sources() -> dict[str, str]:
    return {str(p.relative_to(SRC)): p.read_text() for p in SRC.rglob("*.py")}


def test_yaml_only_safe_loaders():
    bad = {name: m.group(0) for name, text in _sources().items()
           for m in re.finditer(r"yaml\.(?:load|unsafe_load|full_load|load_all)\(|Loader=yaml\.(?:Loader|FullLoader|UnsafeLoader)", text)}
    assert bad == {}


def test_torch_load_always_weights_only():
    calls = [(name, _call(text, m.end())) for name, text in _sources().items()
             for m in re.finditer(r"torch\.load\(", text)]
    assert calls, "no torch.load found: the check would be vacuous"
    assert all("weights_only=True" in call for _, call in calls), calls


def _call(text: str, start: int) -> str:
    """The argument text of a call whose "(" ends at `start` (parentheses balanced)."""
    depth, i = 1, start
    while depth and i < len(text):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        i += 1
    return text[start:i]


def test_no_pickle_loads_of_stored_data():
    bad = [name for name, text in _sources().items() if re.search(r"\bpickle\.loads?\(|cloudpickle\.loads?\(", text)]
    assert bad == []


def test_s3_settings_never_show_secrets():
    s = S3Settings(endpoint_url="http://127.0.0.1:1", access_key="AKIAKEYVALUE", secret_key="SECRETVALUE",
                   session_token="TOKENVALUE")
    for text in (repr(s), str(s), f"{s}"):
        assert "SECRETVALUE" not in text and "TOKENVALUE" not in text and "AKIAKEYVALUE" not in text
