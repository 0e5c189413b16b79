"""`make gpu-check` (benchmarks/gpu/gpu_check.py) on a machine without a GPU: it runs, skips every step with the
reason and writes its JSON + markdown report; its CLI-output parsing works on a real CPU `bench latency` run."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ssdtrt.runtime.cuda_buffers import nvidia_driver_present

pytestmark = pytest.mark.integration  # runs benchmarks/gpu/gpu_check.py and its ssdtrt commands as subprocesses

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu" / "gpu_check.py"
STEPS = ["pytest-gpu", "postprocess-gpu", "cuda-python-roundtrip", "torch-cuda-detect", "torch-cuda-latency",
         "tensorrt-export", "tensorrt-build", "tensorrt-parity", "tensorrt-streaming", "tensorrt-latency",
         "int8-layer-precisions"]


def _module():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.mark.skipif(nvidia_driver_present(), reason="a GPU is present: run `make gpu-check` itself there")
def test_gpu_check_without_a_gpu_reports_every_skip(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path)], capture_output=True, text=True,
                            timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "gpu-check.json").read_text())
    assert [s["name"] for s in report["steps"]] == STEPS
    for step in report["steps"]:
        assert step["status"] == "skipped" and step["reason"], step
    by_name = {s["name"]: s["reason"] for s in report["steps"]}
    assert "torch.cuda.is_available() is False" in by_name["torch-cuda-detect"]
    assert "cuda-python" in by_name["cuda-python-roundtrip"] and "tensorrt" in by_name["tensorrt-build"].lower()
    md = (tmp_path / "gpu-check.md").read_text()
    assert "| tensorrt-parity | skipped |" in md and "cpu_flags_of_note" in md


def test_gpu_check_parses_a_real_bench_latency_run(small_checkpoint: Path, tmp_path: Path) -> None:
    gpu_check = _module()
    check = gpu_check.GpuCheck(tmp_path, tmp_path, budget_s=120, checkpoint=small_checkpoint)
    rows = check._bench_latency([small_checkpoint], ["--backend", "torch", "--device", "cpu", "--precision", "fp32"], "cpu", batch_sizes="1",
                                iters=3)["rows"]
    assert len(rows) == 1 and rows[0]["batch"] == 1 and rows[0]["e2e_p50_ms"] > 0 and rows[0]["images_per_s"] > 0
    assert sorted(p.name for p in check.images().iterdir()) == [f"img{i}.png" for i in range(4)]
    text = gpu_check.markdown({"command": "c", "finished_utc": "t", "total_seconds": 1, "budget_s": 2, "machine": {},
                               "steps": [{"name": "int8-layer-precisions", "status": "passed", "seconds": 1.0,
                                          "reason": "", "details": {"summary": {"int8": 1}, "layers": [
                                              {"name": "conv", "type": "Conv", "in": ["int8"], "out": ["int8"]}]}}]})
    assert "| conv | Conv | int8 | int8 |" in text and '"int8": 1' in text
