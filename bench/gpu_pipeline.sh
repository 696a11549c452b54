#!/usr/bin/env bash
# bench/gpu_pipeline.py on a bare GPU host (torch, transformers, numpy, pyarrow, pandas there; no
# Ray, pydantic, open_clip, decord, PyAV, jsonschema; no network). docs/ENVIRONMENT.md, "GPU host".
#
#   here:     bash bench/gpu_pipeline.sh fetch     # wheels for cp312 into .whl-1 .. .whl-N (each < 60 MiB,
#                                                  # the ray wheel split in parts), .whl-* ignored by git
#   device:   bash bench/gpu_pipeline.sh stage     # calls 1 .. N-1, carry [".whl-K"]: park the wheels in /tmp
#   device:   bash bench/gpu_pipeline.sh run [gpu_pipeline.py args]   # last call, carry [".whl-N"]:
#                                                  # join the parts, install to /tmp/site, run, JSON to $OUT
# The calls must follow each other while the machine is warm (it keeps /tmp only until it goes back).
set -euo pipefail
cd "$(dirname "$0")/.."
PARK=/tmp/exvad-whl
# name==version for Python 3.12 manylinux x86_64; --no-deps: every missing one is named here.
WHEELS=(ray==2.60.0 jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1
        pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
        open-clip-torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4 decord==0.6.0 av==18.1.0)
LIMIT=$((60 * 1024 * 1024))

fetch() {
  rm -rf .whl-dl .whl-[0-9]*; mkdir -p .whl-dl
  grep -qx '/.whl-\*/' .git/info/exclude 2>/dev/null || echo '/.whl-*/' >> "$(git rev-parse --git-path info/exclude)"
  local plat=() n; for n in 17 24 27 28 31 34; do plat+=(--platform "manylinux_2_${n}_x86_64"); done
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 --platform manylinux2010_x86_64 "${plat[@]}" -d .whl-dl "${WHEELS[@]}"
  # Split files over LIMIT into 30 MiB parts, then pack greedily into .whl-1, .whl-2, ...
  for f in .whl-dl/*.whl; do
    if [ "$(stat -c %s "$f")" -gt "$LIMIT" ]; then split -b 30M -d "$f" "$f.part-"; rm "$f"; fi
  done
  local k=1 used=0 s
  for f in $(ls -S .whl-dl/*); do
    s=$(stat -c %s "$f")
    if [ $((used + s)) -gt "$LIMIT" ]; then k=$((k + 1)); used=0; fi
    mkdir -p ".whl-$k"; mv "$f" ".whl-$k/"; used=$((used + s))
  done
  rmdir .whl-dl
  for d in .whl-[0-9]*; do echo "$d: $(du -sm "$d" | cut -f1) MiB: $(ls "$d" | tr '\n' ' ')"; done
  echo "device calls: $(ls -d .whl-[0-9]* | head -n -1 | sed 's/.*/stage (carry ["&"])/' | tr '\n' ',') then run (carry [\"$(ls -d .whl-[0-9]* | tail -1)\"])"
}

park() { mkdir -p "$PARK"; local d; for d in .whl-[0-9]*; do [ -d "$d" ] && cp "$d"/* "$PARK"/; done; ls "$PARK"; }

run() {
  park
  local p; for p in "$PARK"/*.whl.part-00; do [ -e "$p" ] || continue; cat "${p%.part-00}".part-* > "${p%.part-00}"; rm "${p%.part-00}".part-*; done
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$PARK"/*.whl
  export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1
  python3 -c 'import ray, pydantic, open_clip, decord, av, torch; print("ray", ray.__version__, "torch", torch.__version__, torch.cuda.get_device_name(0))'
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  python3 bench/gpu_pipeline.py --work /tmp/exvad-gpu-pipeline --out "${OUT:-/tmp}/gpu_pipeline.json" "$@"
}

case "${1:-}" in
  fetch) fetch ;;
  stage) park ;;
  run) shift; run "$@" ;;
  *) sed -n '2,12p' "$0"; exit 2 ;;
esac
