# exvad-ray: the README's two commands are `make demo` and `make test`; the rest are their steps.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
VLLM_VENV ?= .venv-vllm
ARCH := $(shell uname -m)
# Torch builds that install and import here (docs/ENVIRONMENT.md). On a GPU machine that already has
# a CUDA torch, run `make setup TORCH_SPEC=` to keep it.
ifeq ($(ARCH),aarch64)
TORCH_SPEC ?= torch==2.9.1 torchvision==0.24.1
else
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
endif
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER := 0
export RAY_AUTH_MODE := disabled
export RAY_USAGE_STATS_ENABLED := 0
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
PYTEST_ARGS ?=

.PHONY: setup vllm-env browser demo test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(if $(strip $(TORCH_SPEC)),$(VENV)/bin/python -m pip install -q $(TORCH_SPEC))
	$(VENV)/bin/python -m pip install -q -e '.[test]'
	touch $@

vllm-env: $(VLLM_VENV)/.installed

$(VLLM_VENV)/.installed: scripts/setup_vllm_env.sh pyproject.toml
	bash scripts/setup_vllm_env.sh $(VLLM_VENV)
	touch $@

# The search page's browser test drives Debian's chromium with Playwright (pip, in .[test]; no browser
# download). Installed here when running as root; otherwise the test says how and skips (fails in CI).
browser: setup
	@command -v chromium >/dev/null || { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not installed (sudo apt-get install -y chromium): the browser test will skip"; fi; }

demo: setup
	$(VENV)/bin/exvad demo

# -X faulthandler: a crash prints every thread's Python stack; scripts/run_tests.py says why it
# skips the interpreter's teardown after pytest has given its verdict.
test: setup vllm-env browser
	$(VENV)/bin/python -X faulthandler scripts/run_tests.py -m "not vllm" $(PYTEST_ARGS)
	$(VLLM_VENV)/bin/python -X faulthandler scripts/run_tests.py -m vllm tests/models/test_vllm_cpu.py $(PYTEST_ARGS)

bench: setup
	$(VENV)/bin/python bench/decode.py

clean:
	rm -rf $(VENV) $(VLLM_VENV) .pytest_cache demo-output
