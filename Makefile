# Newcomer entry points: `make demo` and `make test`. Both set up ./.venv first; re-runs are fast when nothing changed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: venv demo test test-quick lint-code clean gpu-check

venv: $(VENV)/.stamp

$(VENV)/.stamp: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $@

demo: venv
	$(PY) -m ssdtrt.cli.app demo --out runs/demo

test: venv
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The unit tier for the inner loop (under 2 min on 2 cores): everything but the `slow` and `integration` markers
# (training runs, full-size models, whole commands in subprocesses, servers, the demo). `make test` runs them all.
test-quick: venv
	$(PY) -m pytest -q -m "not slow and not integration" $(PYTEST_ARGS)

# Everything that needs CUDA / TensorRT, in <= 8 min, no internet; writes benchmarks/gpu/gpu-check.{json,md}.
# Uses ./.venv when present (no install step: GPU boxes may be offline), else $(PYTHON).
gpu-check:
	$(if $(wildcard $(PY)),$(PY),$(PYTHON)) benchmarks/gpu/gpu_check.py --out benchmarks/gpu

clean:
	rm -rf runs export/*.onnx export/*.json engines/* .pytest_cache
