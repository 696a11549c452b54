#!/usr/bin/env bash
# Regenerate cluster/constraints.txt: every package the GPU image installs, pinned, resolved in a
# clean Python 3.11 virtualenv (the Ray image's Python) together with the Ray of the images.
#   bash cluster/lock.sh            (needs python3.11 and the package index; no downloads of wheels:
#                                    pip reads the index's metadata only, --dry-run)
set -euo pipefail
cd "$(dirname "$0")/.."
RAY_VERSION=$(sed -n 's/^ARG RAY_VERSION=//p' cluster/Dockerfile)
VLLM_VERSION=$(sed -n 's/^ARG VLLM_VERSION=//p' cluster/Dockerfile)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
python3.11 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" wheel -q --no-deps --no-build-isolation . -w "$tmp/dist" 2>/dev/null \
  || "$tmp/venv/bin/pip" wheel -q --no-deps . -w "$tmp/dist"
whl=$(ls "$tmp"/dist/exvad_ray-*.whl)
PIP_CONFIG_FILE=/dev/null "$tmp/venv/bin/pip" install -q --dry-run --ignore-installed --report "$tmp/report.json" \
  "${whl}[vllm]" "ray[data,train,default]==${RAY_VERSION}" "vllm==${VLLM_VERSION}"
"$tmp/venv/bin/python" - "$tmp/report.json" "$RAY_VERSION" "$VLLM_VERSION" > cluster/constraints.txt <<'PY'
import json, re, sys
report, ray, vllm = sys.argv[1:]
pins = sorted((re.sub(r"[-_.]+", "-", i["metadata"]["name"]).lower(), i["metadata"]["version"])
            for i in json.load(open(report))["install"]
            if re.sub(r"[-_.]+", "-", i["metadata"]["name"]).lower() != "exvad-ray")
print(f"# Pinned dependencies of the exvad-ray images (Ray {ray}, vLLM {vllm}, Python 3.11), written by\n"
      "# cluster/lock.sh from one resolve; cluster/Dockerfile installs with `-c` this file.")
for name, version in pins:
    print(f"{name}=={version}")
PY
echo "cluster/constraints.txt: $(grep -c '==' cluster/constraints.txt) pins"
