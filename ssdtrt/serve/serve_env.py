"""The serving environment: a small venv that holds PyTriton and what Triton's python-backend stub needs (numpy < 2).

Why a second environment: PyTriton 0.7 bundles tritonserver 2.51, whose python-backend stub (pybind11 < 2.12) garbles
every tensor under numpy 2 — BYTES inputs crash it, UINT8 inputs arrive with the right shape and the wrong bytes,
outputs come back empty — and the nvidia-pytriton wheel pins numpy < 2, so installing it would downgrade the user's
numpy. Measured (benchmarks/serving/numpy2): with the stub in a numpy-1.26 venv (Triton's `EXECUTION_ENV_PATH`) and
the process that runs our model callable on numpy 2, every input and output type arrives intact. So only this env
holds numpy < 2; the user's environment keeps numpy 2 and imports PyTriton's pure-Python package from here.

Where: `SSDTRT_SERVE_ENV`, else `<venv>/ssdtrt-serve-env` inside the running venv, else
`~/.cache/ssdtrt/serve-env-py3.X`. Created by `ssdtrt serve-env` / `make serve-env`, or on `ssdtrt serve`'s first use.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from ssdtrt.core.errors import BackendUnavailableError

SERVE_ENV_VARIABLE = "SSDTRT_SERVE_ENV"
STAMP = "ssdtrt-serve-env.json"
#: what the stub imports: numpy < 2 and pyzmq for PyTriton's proxy; opencv (the last numpy-1 release line) and
#: onnxruntime for an `export-triton --detector python` repository served by the bundled tritonserver (its python
#: models import ssdtrt's torch-free part); nvidia-pytriton itself (its wheel brings the bundled tritonserver).
REQUIREMENTS: tuple[str, ...] = (
    "nvidia-pytriton>=0.7,<0.8",
    "numpy>=1.24,<2",
    "pyzmq>=23",
    "opencv-python-headless>=4.8,<4.12",
    "onnxruntime>=1.18",
)


def default_serve_env() -> Path:
    """`SSDTRT_SERVE_ENV`, else inside the running venv, else in the user's cache (one per Python minor version)."""
    if os.environ.get(SERVE_ENV_VARIABLE):
        return Path(os.environ[SERVE_ENV_VARIABLE]).expanduser().resolve()
    if sys.prefix != sys.base_prefix:
        return Path(sys.prefix) / "ssdtrt-serve-env"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "ssdtrt" / f"serve-env-py{sys.version_info[0]}.{sys.version_info[1]}"


def absolute(path: str | os.PathLike[str]) -> Path:
    """Absolute and normalised, symlinks kept (Triton needs an absolute EXECUTION_ENV_PATH)."""
    return Path(os.path.abspath(Path(path).expanduser()))


def _python_version() -> str:
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def site_packages(env: Path) -> Path:
    return Path(env) / "lib" / f"python{_python_version()}" / "site-packages"


def wanted_stamp() -> dict[str, object]:
    return {"python": _python_version(), "requirements": list(REQUIREMENTS)}


def is_ready(env: Path) -> bool:
    """The env exists, was completed for this Python minor version and these requirements."""
    stamp = Path(env) / STAMP
    try:
        return json.loads(stamp.read_text(encoding="utf-8")) == wanted_stamp()
    except (OSError, ValueError):
        return False


def stub_needs_own_env() -> bool:
    """The stub cannot share this process's environment when it runs numpy 2 (see the module docstring)."""
    import numpy as np

    return int(np.__version__.split(".")[0]) >= 2


def create(env: Path, progress: Callable[[str], None] | None = None) -> Path:
    """Create (or complete) the serving env with pip from the package index; BackendUnavailableError with pip's
    last lines when that fails (e.g. no network). Idempotent: a ready env is left as it is."""
    env = absolute(env)
    if is_ready(env):
        return env
    say = progress or (lambda _msg: None)
    python = env / "bin" / "python"
    if not python.is_file():
        say(f"creating the serving environment {env} (PyTriton + numpy<2 for Triton's python-backend stub)")
        _run([sys.executable, "-m", "venv", str(env)], "python -m venv")
    say(f"installing {', '.join(REQUIREMENTS)} into it (once; about 600 MB from the package index)")
    _run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *REQUIREMENTS], "pip install")
    (env / STAMP).write_text(json.dumps(wanted_stamp()) + "\n", encoding="utf-8")
    return env


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise BackendUnavailableError(f"serving environment: {what} failed ({tail}); "
                                      f"retry with `ssdtrt serve-env` once the package index is reachable")


def import_pytriton(env: Path | None = None) -> ModuleType:
    """PyTriton, from this environment when it is installed here, else from the serving env (appended to sys.path:
    this environment's numpy and everything else it has keep precedence)."""
    try:
        import pytriton

        return pytriton
    except ImportError:
        pass
    env = default_serve_env() if env is None else absolute(env)
    if not is_ready(env):
        raise BackendUnavailableError(
            f"ssdtrt serve needs its serving environment (PyTriton, numpy<2 for Triton's stub) at {env}: "
            "run `ssdtrt serve-env` (or `make serve-env`)")
    path = str(site_packages(env))
    if path not in sys.path:
        sys.path.append(path)
    if str(env) not in site.PREFIXES:  # PyTriton looks for its bundled libraries only under a site prefix
        site.PREFIXES.append(str(env))
    import pytriton

    return pytriton


def stub_env(env: Path | None = None) -> Path | None:
    """The venv Triton's python-backend stub must run in: the serving env when this process has numpy 2 (it must be
    ready), None when the stub can share this environment."""
    if not stub_needs_own_env():
        return None
    env = default_serve_env() if env is None else absolute(env)
    if not is_ready(env):
        raise BackendUnavailableError(
            f"this environment has numpy 2, which Triton 2.51's python-backend stub cannot read; it runs in the "
            f"serving environment {env}, which is not set up: run `ssdtrt serve-env` (or `make serve-env`)")
    return env
