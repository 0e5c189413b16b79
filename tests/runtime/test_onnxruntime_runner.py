"""OnnxRuntimeRunner: reads the manifest, CPU EP, thread settings, static-batch chunking, torch-free inference."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ssdtrt.core.errors import ManifestError
from ssdtrt.export.onnx_export import export_model
from ssdtrt.model.ssd import build_model
from ssdtrt.inference.batching import run_in_batches
from ssdtrt.runtime.onnxruntime_runner import OnnxRuntimeRunner, default_providers


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.manual_seed(5)
    model = build_model("ssd-small").eval()
    root = tmp_path_factory.mktemp("ort")
    return {
        "raw4": export_model(model, root / "raw4.onnx", mode="raw", batch=4).onnx_path,
        "nms": export_model(model, root / "nms.onnx", mode="nms", dynamic_batch=True).onnx_path,
    }


def test_runner_reads_manifest_and_runs_on_cpu(exported) -> None:
    runner = OnnxRuntimeRunner(exported["raw4"], providers=["CPUExecutionProvider"], intra_op_threads=1,
                               inter_op_threads=1)
    assert runner.manifest.export_mode == "raw" and runner.fixed_batch == 4
    assert runner.input_metadata()["images"].shape == (4, 3, 160, 160)
    with runner:
        assert runner.providers == ["CPUExecutionProvider"]
        d = runner.describe()
        assert d["backend"] == "onnxruntime" and d["intra_op_threads"] == 1
        x = np.random.default_rng(0).standard_normal((5, 3, 160, 160)).astype(np.float32)
        out = run_in_batches(x, runner.fixed_batch, lambda rows: runner.infer({"images": rows}))  # two chunks, the last padded
        assert out["locs"].shape == (5, 2390, 4) and out["logits"].shape == (5, 2390, 7)
        single = runner.infer({"images": np.concatenate([x[4:], np.zeros_like(x[:3])])})
        np.testing.assert_allclose(out["logits"][4], single["logits"][0], atol=1e-5)
    assert not runner.is_active
    assert "CPUExecutionProvider" in default_providers()


def test_missing_manifest_and_mismatched_outputs(exported, tmp_path) -> None:
    lonely = tmp_path / "lonely.onnx"
    lonely.write_bytes(exported["raw4"].read_bytes())
    with pytest.raises(ManifestError, match="manifest"):
        OnnxRuntimeRunner(lonely)
    manifest = json.loads(exported["raw4"].with_suffix(".json").read_text())
    manifest["outputs"][0]["name"] = "renamed"
    lonely.with_suffix(".json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match="disagree"):
        OnnxRuntimeRunner(lonely, providers=["CPUExecutionProvider"]).activate()


def test_inference_without_torch(exported) -> None:
    """A deployment host needs numpy + onnxruntime only: predict on raw and nms graphs never imports torch."""
    code = f"""
import sys, numpy as np
from ssdtrt.inference.detector import Detector
imgs = [np.full((120, 200, 3), 90, np.uint8), np.zeros((160, 160, 3), np.uint8)]
for p in ({str(exported['raw4'])!r}, {str(exported['nms'])!r}):
    dets = Detector(p, providers=["CPUExecutionProvider"]).detect(imgs)
    assert len(dets) == 2 and dets[0].boxes.shape[1] == 4
    assert dets[0].boxes[:, 2].max(initial=0) <= 200 + 1e-3
assert "torch" not in sys.modules, "torch was imported"
print("ok")
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr[-2000:]
