# Newcomer entry points: `make demo` and `make test`. Both set up ./.venv first; re-runs are fast when nothing changed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# PyTriton + numpy<2 for Triton's python-backend stub: its own venv (inside .venv's folder, not on its sys.path),
# where `ssdtrt serve` looks by default (benchmarks/serving/numpy2 says why it cannot share .venv's numpy 2).
SERVE_ENV := $(VENV)/ssdtrt-serve-env

.PHONY: venv serve-env demo test test-quick lint-code clean gpu-check

venv: $(VENV)/.stamp

# numpy>=2 and opencv>=4.12 asked for explicitly: the suite runs on today's stack (an older .venv is upgraded too);
# the package itself only needs numpy>=1.24.
$(VENV)/.stamp: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]' 'numpy>=2' 'opencv-python-headless>=4.12'
	touch $@

serve-env: $(SERVE_ENV)/.stamp

$(SERVE_ENV)/.stamp: $(VENV)/.stamp ssdtrt/serve/serve_env.py
	$(PY) -m ssdtrt.cli.app serve-env --path $(SERVE_ENV)
	touch $@

demo: venv
	$(PY) -m ssdtrt.cli.app demo --out runs/demo

# the serving tests need the serving env (built once, ~1-2 min, then cached by its stamp).
# ISOLATED: test files to run each in a pytest process of their own (none now). It held the four files that build
# engine-placed OpenVINO graphs in-process, while a later subprocess-spawning test segfaulted the runner; the cause was
# OpenVINO's CPU plugin restoring a freed signal stack when Cores were freed out of order, fixed by ssdtrt's one
# process-wide Core (`ssdtrt.runtime.openvino_runner.openvino_core`; docs/architecture.md "Tests and records").
ISOLATED :=
test: venv serve-env
	SSDTRT_SERVE_ENV=$(abspath $(SERVE_ENV)) $(PY) -m pytest -q $(addprefix --ignore=,$(ISOLATED)) $(PYTEST_ARGS)
	for f in $(ISOLATED); do SSDTRT_SERVE_ENV=$(abspath $(SERVE_ENV)) $(PY) -m pytest -q $$f $(PYTEST_ARGS) || exit 1; done

# The unit tier for the inner loop (under 2 min on 2 cores): everything but the `slow` and `integration` markers
# (training runs, full-size models, whole commands in subprocesses, servers, the demo). `make test` runs them all.
test-quick: venv
	SSDTRT_SERVE_ENV=$(abspath $(SERVE_ENV)) $(PY) -m pytest -q -m "not slow and not integration" $(PYTEST_ARGS)

# Everything that needs CUDA / TensorRT, in <= 8 min, no internet; writes benchmarks/gpu/gpu-check.{json,md}.
# Uses ./.venv when present (no install step: GPU boxes may be offline), else $(PYTHON).
gpu-check:
	$(if $(wildcard $(PY)),$(PY),$(PYTHON)) benchmarks/gpu/gpu_check.py --out benchmarks/gpu

clean:
	rm -rf runs export/*.onnx export/*.json engines/* .pytest_cache
