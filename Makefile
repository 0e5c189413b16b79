# Newcomer entry points: `make demo` and `make test`. Both set up ./.venv first; re-runs are fast when nothing changed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: venv demo test lint-code clean gpu-check

venv: $(VENV)/.stamp

$(VENV)/.stamp: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $@

demo: venv
	$(PY) -m ssdtrt.cli.app demo --out runs/demo

test: venv
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Everything that needs CUDA / TensorRT, in <= 8 min, no internet; writes benchmarks/gpu/gpu-check.{json,md}.
# Uses ./.venv when present (no install step: GPU boxes may be offline), else $(PYTHON).
gpu-check:
	$(if $(wildcard $(PY)),$(PY),$(PYTHON)) benchmarks/gpu/gpu_check.py --out benchmarks/gpu

clean:
	rm -rf runs export/*.onnx export/*.json engines/* .pytest_cache
