"""Runner factory dispatch, the torch (checkpoint) runner, torch-free runtime use, and the CUDA paths (GPU only)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ssdtrt.core.errors import BackendUnavailableError, CheckpointError, ManifestError
from ssdtrt.core.manifest import Manifest, read_manifest, stamp_artifact, write_manifest
from ssdtrt.runtime import available_backends, backend_for, open_runner

torch = pytest.importorskip("torch")


def _fake_plan(tmp_path: Path, src_onnx: Path) -> Path:
    """A `.plan` file with a TensorRT manifest (bytes are not an engine: only dispatch and errors are exercised)."""
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"\x00not-a-real-plan")
    m = read_manifest(src_onnx)
    m.kind, m.artifact = "tensorrt", plan.name
    m.engine = {"backend": "tensorrt", "tensorrt_version": "10.13.0", "gpu_name": "NVIDIA A10", "compute_capability": "8.6"}
    write_manifest(plan, stamp_artifact(m, plan))  # the fake bytes are what the manifest describes
    return plan


def test_dispatch_by_suffix_and_manifest(small_raw_onnx: Path, small_checkpoint: Path, tmp_path: Path) -> None:
    assert backend_for(small_checkpoint) == (small_checkpoint, "torch")
    assert backend_for(small_raw_onnx) == (small_raw_onnx, "onnxruntime")
    assert backend_for(small_raw_onnx, "openvino") == (small_raw_onnx, "openvino")
    assert backend_for(small_raw_onnx, "ov")[1] == "openvino"
    assert backend_for(small_raw_onnx.with_suffix(".json")) == (small_raw_onnx, "onnxruntime")
    plan = _fake_plan(tmp_path, small_raw_onnx)
    assert backend_for(plan) == (plan, "tensorrt")
    assert backend_for(tmp_path / "model.xml")[1] == "openvino"
    assert type(open_runner(small_raw_onnx)).__name__ == "OnnxRuntimeRunner"
    assert type(open_runner(plan)).__name__ == "TensorRTRunner"  # created lazily: no tensorrt import yet
    with pytest.raises(ManifestError, match="build an engine first"):
        backend_for(small_raw_onnx, "tensorrt")
    with pytest.raises(ManifestError, match="unknown backend"):
        backend_for(small_raw_onnx, "tflite")
    with pytest.raises(ManifestError, match="not torch"):
        backend_for(plan, "torch")
    with pytest.raises(ManifestError, match="unknown model format"):
        backend_for(tmp_path / "other.bin")
    with pytest.raises(ManifestError, match="no such file"):
        open_runner(tmp_path / "absent.onnx")


@pytest.mark.openvino
def test_open_runner_openvino_from_onnx_and_ir(small_raw_onnx: Path, tmp_path: Path) -> None:
    from ssdtrt.engines.openvino_builder import build_openvino

    x = np.random.default_rng(1).standard_normal((1, 3, 160, 160)).astype(np.float32)
    ir = build_openvino(small_raw_onnx, tmp_path / "m", validate=False).engine_path
    with open_runner(small_raw_onnx, backend="openvino", num_threads=1) as a, open_runner(ir.with_suffix(".json")) as b:
        assert a.backend == b.backend == "openvino" and a.describe()["num_threads"] == 1
        np.testing.assert_allclose(a.infer({"images": x})["logits"], b.infer({"images": x})["logits"], atol=1e-5)


# Two runners closed in the order they were opened (not nested), then a subprocess exits while a SIGCHLD handler is
# installed (as torch's DataLoader installs one). With one ov.Core per runner, OpenVINO's CPU plugin left the thread
# on the first runner's freed signal stack and the SIGCHLD killed the process with SIGSEGV (`openvino_core` says
# why). A fresh interpreter, so no earlier test's Core or handler decides the outcome.
_OVERLAPPING_RUNNERS = """
import signal, subprocess, sys
from ssdtrt.runtime import open_runner
signal.signal(signal.SIGCHLD, lambda *_: None)
a = open_runner(sys.argv[1], backend="openvino"); a.activate()
b = open_runner(sys.argv[1], backend="openvino"); b.activate()
a.deactivate(); b.deactivate()
del a, b
sys.exit(subprocess.run([sys.executable, "-c", "pass"]).returncode)
"""


@pytest.mark.openvino
def test_openvino_runners_closed_out_of_order_leave_signal_delivery_working(small_raw_onnx: Path) -> None:
    from ssdtrt.runtime.openvino_runner import openvino_core

    assert openvino_core() is openvino_core()
    result = subprocess.run([sys.executable, "-c", _OVERLAPPING_RUNNERS, str(small_raw_onnx)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])


def test_tensorrt_runner_without_tensorrt_is_a_clear_error(small_raw_onnx: Path, tmp_path: Path) -> None:
    reason = available_backends()["tensorrt"]
    if reason is None:
        pytest.skip("TensorRT is available here: the missing-backend path cannot be exercised")
    runner = open_runner(_fake_plan(tmp_path, small_raw_onnx))
    with pytest.raises(BackendUnavailableError) as info:
        runner.activate()
    assert info.value.exit_code == 2 and "\n" not in str(info.value)
    assert "pip install" in str(info.value) or "GPU" in str(info.value)


def test_available_backends_reports_reasons() -> None:
    backends = available_backends()
    assert set(backends) == {"torch", "onnxruntime", "openvino", "tensorrt"}
    assert backends["torch"] is None and backends["onnxruntime"] is None
    if backends["tensorrt"] is not None:
        assert "pip install" in backends["tensorrt"] or "GPU" in backends["tensorrt"]


def test_torch_runner_matches_the_model(small_checkpoint: Path, small_raw_onnx: Path) -> None:
    from ssdtrt.model.checkpoint import load_model
    from ssdtrt.runtime.torch_runner import TorchRunner

    x = np.random.default_rng(2).standard_normal((2, 3, 160, 160)).astype(np.float32)
    runner = open_runner(small_checkpoint)
    assert isinstance(runner, TorchRunner)
    with runner:
        out = runner.infer({"images": x})
        meta = runner.input_metadata()["images"]
    with torch.no_grad():
        locs, logits = load_model(small_checkpoint)(torch.from_numpy(x))
    np.testing.assert_array_equal(out["locs"], locs.numpy())
    np.testing.assert_array_equal(out["logits"], logits.numpy())
    assert meta.shape == ("batch", 3, 160, 160) and meta.dtype == np.float32
    m = runner.manifest
    assert (m.kind, m.export_mode, m.precision) == ("checkpoint", "raw", "fp32")
    onnx_m = read_manifest(small_raw_onnx)  # the checkpoint looks like its own raw export
    assert (m.spec, m.class_names, m.num_classes) == (onnx_m.spec, onnx_m.class_names, onnx_m.num_classes)
    assert [t.name for t in m.outputs] == ["locs", "logits"]
    assert Manifest.from_dict(json.loads(json.dumps(m.to_dict()))) == m  # a valid manifest
    with pytest.raises(CheckpointError):
        TorchRunner(small_checkpoint.with_name("absent.pt"))


def test_torch_runner_bf16_autocast(small_checkpoint: Path) -> None:
    x = np.random.default_rng(3).standard_normal((1, 3, 160, 160)).astype(np.float32)
    with open_runner(small_checkpoint) as f32, open_runner(small_checkpoint, autocast_bf16=True) as bf16:
        ref, out = f32.infer({"images": x}), bf16.infer({"images": x})
        assert bf16.manifest.precision == "bf16"
    assert out["logits"].dtype == np.float32
    np.testing.assert_allclose(out["logits"], ref["logits"], atol=0.05 * np.abs(ref["logits"]).max())


def test_runtime_and_numpy_postprocess_work_without_torch(small_raw_onnx: Path) -> None:
    code = f"""
import sys
sys.modules['torch'] = None  # any 'import torch' now fails
import numpy as np
from ssdtrt.runtime import open_runner, available_backends
from ssdtrt.postprocess.host_numpy import postprocess_numpy
from ssdtrt.core.priors import default_boxes
x = np.random.default_rng(0).standard_normal((2, 3, 160, 160)).astype(np.float32)
backends = ['onnxruntime'] + (['openvino'] if available_backends()['openvino'] is None else [])
for backend in backends:
    with open_runner({str(small_raw_onnx)!r}, backend=backend) as runner:
        out = runner.infer({{'images': x}})
    dets = postprocess_numpy(out['locs'], out['logits'], default_boxes(runner.manifest.model_spec))
    assert len(dets) == 2 and len(dets[0]) > 0, backend
assert not any(m == 'torch' or m.startswith('torch.') for m, v in sys.modules.items() if v is not None)
print('ok', backends)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("ok")


@pytest.mark.cuda
def test_torch_postprocess_on_cuda_matches_cpu() -> None:
    from ssdtrt.postprocess.host_torch import postprocess
    from ssdtrt.core.priors import default_boxes

    priors = default_boxes("ssd300-vgg16")
    g = torch.Generator().manual_seed(0)
    locs, logits = torch.randn(4, 8732, 4, generator=g) * 0.5, torch.randn(4, 8732, 21, generator=g) * 3
    probs = torch.softmax(logits, -1)  # same probabilities on both devices: compare NMS, not softmax rounding
    cpu = postprocess(locs, probs, priors, scores_are_probs=True)
    gpu = postprocess(locs.cuda(), probs.cuda(), priors, scores_are_probs=True)
    for c, g_ in zip(cpu, gpu):
        assert g_.boxes.is_cuda
        g_ = g_.numpy()
        np.testing.assert_array_equal(g_.labels, c.labels.numpy())
        np.testing.assert_allclose(g_.boxes, c.boxes.numpy(), atol=1e-6)
        np.testing.assert_allclose(g_.scores, c.scores.numpy(), atol=0)


@pytest.mark.cuda
def test_cuda_python_round_trip() -> None:
    pytest.importorskip("cuda.bindings", reason="cuda-python is not installed")
    from ssdtrt.runtime.cuda_buffers import gpu_info, round_trip

    data = np.random.default_rng(0).standard_normal((2, 3, 300, 300)).astype(np.float32)
    np.testing.assert_array_equal(round_trip(data), data)
    info = gpu_info()
    assert info.name and info.compute_capability.count(".") == 1


@pytest.mark.cuda
def test_torch_runner_on_cuda_matches_cpu(small_checkpoint: Path) -> None:
    x = np.random.default_rng(4).standard_normal((2, 3, 160, 160)).astype(np.float32)
    with open_runner(small_checkpoint) as cpu, open_runner(small_checkpoint, device="cuda") as gpu:
        ref, out = cpu.infer({"images": x}), gpu.infer({"images": x})
        on_device = gpu.infer_torch({"images": torch.from_numpy(x).cuda()})
    assert on_device["logits"].is_cuda
    for name in ("locs", "logits"):
        np.testing.assert_allclose(out[name], ref[name], atol=1e-3)  # TF32 / cuDNN algorithms differ from CPU
