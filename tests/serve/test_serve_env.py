"""The serving environment keeps numpy < 2 to itself: installing `ssdtrt[serve]` into a numpy-2 environment plans no
numpy downgrade (pip's own resolver, `--dry-run --report`), the check catches a requirement that would downgrade it
(nvidia-pytriton, whose wheel pins numpy<2), and the serving env is found and judged ready as documented."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ssdtrt.serve import serve_env

ROOT = Path(__file__).resolve().parents[2]
UNREACHABLE = ("Could not find a version", "No matching distribution", "Failed to establish a new connection",
               "Temporary failure in name resolution", "Network is unreachable")


def planned_installs(requirements: list[str], tmp_path: Path) -> dict[str, str]:
    """name → version that `pip install REQUIREMENTS` would install into this environment (nothing is installed)."""
    report = tmp_path / "pip-report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--disable-pip-version-check",
         "--report", str(report), *requirements], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        if any(m in proc.stderr for m in UNREACHABLE):
            pytest.skip(f"package index unreachable: {proc.stderr.strip().splitlines()[-1]}")
        pytest.fail(f"pip could not resolve {requirements}:\n{proc.stderr}")
    items = json.loads(report.read_text())["install"]
    return {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in items}


def numpy_downgrade(plan: dict[str, str]) -> str | None:
    """The numpy version the plan would put in place of this environment's numpy 2, if it goes below 2."""
    version = plan.get("numpy")
    return version if version is not None and int(version.split(".")[0]) < 2 else None


@pytest.fixture()
def numpy2() -> None:
    if int(np.__version__.split(".")[0]) < 2:
        pytest.skip(f"this environment has numpy {np.__version__}; the check is about a numpy-2 environment")


@pytest.mark.usefixtures("numpy2")
def test_installing_the_serve_extra_keeps_numpy_2(tmp_path: Path) -> None:
    plan = planned_installs(["-e", f"{ROOT}[serve]"], tmp_path)
    assert numpy_downgrade(plan) is None, plan
    assert "nvidia-pytriton" not in plan  # it lives in the serving env (its wheel pins numpy<2)
    assert "ssdtrt" in plan  # the resolution did include the project


@pytest.mark.usefixtures("numpy2")
def test_the_check_catches_a_numpy_downgrade(tmp_path: Path) -> None:
    """Control: the requirement the serve extra used to have plans numpy < 2, and the check says so."""
    plan = planned_installs(["nvidia-pytriton==0.7.0"], tmp_path)
    assert numpy_downgrade(plan) is not None, plan


def test_serve_env_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(serve_env.SERVE_ENV_VARIABLE, str(tmp_path / "env"))
    assert serve_env.default_serve_env() == (tmp_path / "env").resolve()
    monkeypatch.delenv(serve_env.SERVE_ENV_VARIABLE)
    if sys.prefix != sys.base_prefix:  # in a venv: beside its packages, inside its folder
        assert serve_env.default_serve_env() == Path(sys.prefix) / "ssdtrt-serve-env"
    else:
        assert serve_env.default_serve_env().name.startswith("serve-env-py")


def test_serve_env_is_ready_only_when_completed_for_these_requirements(tmp_path: Path) -> None:
    assert not serve_env.is_ready(tmp_path)
    stamp = tmp_path / serve_env.STAMP
    stamp.write_text(json.dumps({**serve_env.wanted_stamp(), "requirements": ["numpy<2"]}))
    assert not serve_env.is_ready(tmp_path)  # made for other requirements: completed again by `create`
    stamp.write_text(json.dumps(serve_env.wanted_stamp()))
    assert serve_env.is_ready(tmp_path)
    stamp.write_text("{not json")
    assert not serve_env.is_ready(tmp_path)


def test_first_serve_says_what_it_sets_up_and_fails_in_one_line(small_raw_onnx: Path, tmp_path: Path) -> None:
    """`ssdtrt serve` without its serving env announces the set-up; when that cannot be created (here: a path under
    a file) the user gets one `error:` line saying so, no traceback, and no server."""
    if not serve_env.stub_needs_own_env() and importlib.util.find_spec("pytriton") is not None:
        pytest.skip("this environment serves without a serving env (numpy < 2 and PyTriton installed here)")
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run([sys.executable, "-m", "ssdtrt.cli.app", "serve", str(small_raw_onnx), "--serve-env",
                           str(blocked / "env")], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 2, proc.stderr
    assert "first use of ssdtrt serve" in proc.stderr and str(blocked / "env") in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "python -m venv failed" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
