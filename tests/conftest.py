"""Shared pytest setup: hardware/backend markers skip with the reason when absent; one small real exported model.

Markers (registered in pyproject.toml): `cuda` (a CUDA GPU visible to torch), `tensorrt` (TensorRT + cuda-python +
a GPU), `openvino` (the openvino package).
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

import pytest


@cache
def _cuda_missing() -> str | None:
    from ssdtrt.runtime.cuda_buffers import nvidia_driver_present

    if not nvidia_driver_present():
        return "no CUDA GPU: no NVIDIA driver on this machine"
    try:
        import torch
    except ImportError:
        return "no CUDA GPU check possible: torch is not installed"
    return None if torch.cuda.is_available() else "no CUDA GPU: torch.cuda.is_available() is False"


@cache
def _tensorrt_missing() -> str | None:
    from ssdtrt.runtime import available_backends

    return available_backends()["tensorrt"]


@cache
def _openvino_missing() -> str | None:
    return None if importlib.util.find_spec("openvino") else 'openvino is not installed (pip install "ssdtrt[openvino]")'


_MARKER_CHECKS = {"cuda": _cuda_missing, "tensorrt": _tensorrt_missing, "openvino": _openvino_missing}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for marker, check in _MARKER_CHECKS.items():
            if item.get_closest_marker(marker) is not None:
                reason = check()
                if reason is not None:
                    item.add_marker(pytest.mark.skip(reason=f"[{marker}] {reason}"))


@pytest.fixture(scope="session")
def small_raw_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real `ssd-small` export (random weights, seed 0, raw heads, dynamic batch) with its manifest."""
    torch = pytest.importorskip("torch")
    from ssdtrt.export.onnx_export import export_model
    from ssdtrt.model.ssd import build_model

    torch.manual_seed(0)
    model = build_model("ssd-small").eval()
    out = tmp_path_factory.mktemp("export") / "small_raw.onnx"
    return export_model(model, out, mode="raw", dynamic_batch=True).onnx_path


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same random-weight `ssd-small` model (seed 0) saved as an ssdtrt checkpoint."""
    torch = pytest.importorskip("torch")
    from ssdtrt.model.checkpoint import save_checkpoint
    from ssdtrt.model.ssd import build_model

    torch.manual_seed(0)
    model = build_model("ssd-small").eval()
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "small.pt", model)


#: a unit-tier test (no `slow` / `integration` marker) slower than this is named at the end of the run, so the quick
#: tier (`make test-quick`) stays quick as tests are added
UNIT_TIER_NOTICE_S = 10.0


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    if "not slow" not in (config.getoption("markexpr", "") or ""):
        return
    totals: dict[str, float] = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            if isinstance(report, pytest.TestReport):
                totals[report.nodeid] = totals.get(report.nodeid, 0.0) + report.duration
    slow = sorted(((s, n) for n, s in totals.items() if s > UNIT_TIER_NOTICE_S), reverse=True)
    if slow:
        terminalreporter.write_sep("-", f"unit-tier tests over {UNIT_TIER_NOTICE_S:.0f} s (mark them slow or integration?)")
        for seconds, nodeid in slow:
            terminalreporter.write_line(f"{seconds:6.1f} s  {nodeid}")
