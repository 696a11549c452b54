"""Regenerate tests/cluster/data/kuberay-crds.json.gz from a KubeRay checkout (test data, run by hand).

    python tests/cluster/vendor_crds.py /path/to/kuberay/.git

For each release tag below it reads `ray-operator/config/crd/bases/ray.io_{rayclusters,rayjobs}.yaml`
with `git show TAG:...`, keeps only the `v1` openAPIV3Schema, drops `description` texts (90% of
the bytes; validation does not read them) and stores each distinct schema once. The result maps
tag -> {"RayCluster": schema key, "RayJob": schema key} and key -> schema.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import yaml

# Supported (v1.2.2 .. v1.7.0) plus v1.1.1, kept to show why it is not supported.
TAGS = ["v1.1.1", "v1.2.2", "v1.3.0", "v1.3.1", "v1.3.2", "v1.4.0", "v1.4.1", "v1.4.2", "v1.5.0", "v1.5.1",
        "v1.5.2", "v1.6.0", "v1.6.1", "v1.6.2", "v1.7.0"]
FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml"}
OUT = Path(__file__).parent / "data" / "kuberay-crds.json.gz"


def _strip(node: object) -> object:
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def main(git_dir: str) -> None:
    tags: dict[str, dict[str, str]] = {}
    schemas: dict[str, object] = {}
    for tag in TAGS:
        tags[tag] = {}
        for kind, name in FILES.items():
            text = subprocess.run(["git", "--git-dir", git_dir, "show", f"{tag}:ray-operator/config/crd/bases/{name}"],
                                  check=True, capture_output=True, text=True).stdout
            crd = yaml.safe_load(text)
            (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
            schema = _strip(v1["schema"]["openAPIV3Schema"])
            key = hashlib.sha256(json.dumps(schema, sort_keys=True).encode()).hexdigest()[:12]
            schemas[key] = schema
            tags[tag][kind] = key
    data = json.dumps({"source": "github.com/ray-project/kuberay ray-operator/config/crd/bases",
                       "tags": tags, "schemas": schemas}, sort_keys=True, separators=(",", ":"))
    OUT.write_bytes(gzip.compress(data.encode(), compresslevel=9, mtime=0))
    print(f"{OUT}: {OUT.stat().st_size} bytes, {len(schemas)} distinct schemas for {len(TAGS)} tags")


if __name__ == "__main__":
    main(sys.argv[1])
