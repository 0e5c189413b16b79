"""TensorRT: engine compatibility rules and the missing-backend path (run everywhere); build + run on a GPU
(`tensorrt` marker: skipped with the reason where TensorRT, cuda-python or a GPU is missing)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ssdtrt.errors import BackendUnavailableError, EngineBuildError, IncompatibleEngineError, ManifestError
from ssdtrt.manifest import read_manifest, stamp_artifact, write_manifest
from ssdtrt.runtime import available_backends
from ssdtrt.runtime.cuda_buffers import GpuInfo
from ssdtrt.runtime.tensorrt_runner import check_engine_compatibility

A10 = GpuInfo(0, "NVIDIA A10", "8.6")
L4 = GpuInfo(0, "NVIDIA L4", "8.9")


def engine_manifest(small_raw_onnx: Path, **engine: object):  # noqa: ANN201
    m = read_manifest(small_raw_onnx)
    base = {"backend": "tensorrt", "tensorrt_version": "10.13.0.35", "gpu_name": A10.name, "compute_capability": "8.6"}
    return replace(m, kind="tensorrt", artifact="m.plan", engine={**base, **engine})


def test_same_version_and_gpu_is_compatible(small_raw_onnx: Path) -> None:
    check_engine_compatibility(engine_manifest(small_raw_onnx), "10.13.0.35", A10)
    check_engine_compatibility(engine_manifest(small_raw_onnx), "10.13.0.40", A10)  # build number does not matter


@pytest.mark.parametrize("runtime_version", ["10.12.0", "10.14.1", "11.4.0"])
def test_other_tensorrt_version_is_rejected(small_raw_onnx: Path, runtime_version: str) -> None:
    with pytest.raises(IncompatibleEngineError, match=r"built with TensorRT 10\.13\.0\.35 on NVIDIA A10.*rebuild"):
        check_engine_compatibility(engine_manifest(small_raw_onnx), runtime_version, A10)


def test_version_compatible_engine_runs_on_newer_same_major(small_raw_onnx: Path) -> None:
    m = engine_manifest(small_raw_onnx, version_compatible=True)
    check_engine_compatibility(m, "10.14.1", A10)
    for older_or_other_major in ("10.12.0", "11.0.0"):
        with pytest.raises(IncompatibleEngineError, match="version-compatible"):
            check_engine_compatibility(m, older_or_other_major, A10)


def test_other_gpu_architecture_is_rejected(small_raw_onnx: Path) -> None:
    with pytest.raises(IncompatibleEngineError, match=r"this GPU is NVIDIA L4 \(compute capability 8\.9\)"):
        check_engine_compatibility(engine_manifest(small_raw_onnx), "10.13.0.35", L4)
    check_engine_compatibility(engine_manifest(small_raw_onnx, hardware_compatibility_level="AMPERE_PLUS"), "10.13.0.35", L4)


def test_manifest_without_tensorrt_version(small_raw_onnx: Path) -> None:
    m = engine_manifest(small_raw_onnx)
    m.engine.pop("tensorrt_version")
    with pytest.raises(ManifestError, match="no TensorRT version"):
        check_engine_compatibility(m, "10.13.0", A10)


def test_runner_reads_profile_and_checks_manifest_kind(small_raw_onnx: Path, tmp_path: Path) -> None:
    from ssdtrt.runtime.tensorrt_runner import TensorRTRunner

    plan = tmp_path / "m.plan"
    plan.write_bytes(b"not an engine")
    dims = {"min": [1, 3, 160, 160], "opt": [4, 3, 160, 160], "max": [8, 3, 160, 160]}
    write_manifest(plan, engine_manifest(small_raw_onnx, profile={"images": dims}))
    assert TensorRTRunner(plan).max_batch == 8  # larger host batches run in chunks of 8
    static = {"min": [2, 3, 160, 160], "opt": [2, 3, 160, 160], "max": [2, 3, 160, 160]}
    write_manifest(plan, engine_manifest(small_raw_onnx, profile={"images": static}))
    assert TensorRTRunner(plan).max_batch is None
    write_manifest(plan, replace(read_manifest(small_raw_onnx), artifact=plan.name))  # an ONNX manifest
    with pytest.raises(ManifestError, match="not a TensorRT engine"):
        TensorRTRunner(plan)
    with pytest.raises(ValueError, match="buffers"):
        TensorRTRunner(plan, buffers="pycuda")


def test_batch_profile() -> None:
    from ssdtrt.engines.tensorrt_builder import batch_profile

    assert batch_profile(1, None, None) == (1, 8, 8)
    assert batch_profile(1, 4, 16) == (1, 4, 16)
    assert batch_profile(2, None, 32) == (2, 32, 32)
    with pytest.raises(EngineBuildError, match="min <= opt <= max"):
        batch_profile(4, 2, 8)


needs_no_tensorrt = pytest.mark.skipif(available_backends()["tensorrt"] is None, reason="TensorRT is usable here")


@needs_no_tensorrt
def test_build_without_tensorrt_raises_exit_code_2(small_raw_onnx: Path, tmp_path: Path) -> None:
    from ssdtrt.engines import build_engine

    with pytest.raises(BackendUnavailableError) as info:
        build_engine(small_raw_onnx, backend="tensorrt", out=tmp_path / "m")
    assert info.value.exit_code == 2
    assert "pip install" in str(info.value) or "GPU" in str(info.value)
    assert not list(tmp_path.iterdir())


@needs_no_tensorrt
def test_cli_build_engine_without_tensorrt_prints_one_line(small_raw_onnx: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "ssdtrt.cli.app", "build-engine", str(small_raw_onnx), "--backend", "tensorrt",
           "--out", str(tmp_path / "m")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert 'pip install "ssdtrt[trt]"' in lines[0] and "pypi.nvidia.com" in lines[0]


# --- on a GPU with TensorRT ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plan(small_raw_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ssdtrt.engines.tensorrt_builder import build_tensorrt

    folder = tmp_path_factory.mktemp("trt")
    result = build_tensorrt(small_raw_onnx, folder / "small", max_batch=4, timing_cache=folder / "timing.cache")
    assert (folder / "timing.cache").stat().st_size > 0
    return result.engine_path


@pytest.mark.tensorrt
def test_engine_matches_onnxruntime(plan: Path, small_raw_onnx: Path) -> None:
    from ssdtrt.runtime.onnxruntime_runner import OnnxRuntimeRunner
    from ssdtrt.runtime.tensorrt_runner import TensorRTRunner

    m = read_manifest(plan)
    assert m.kind == "tensorrt" and m.engine["profile"]["images"]["max"][0] == 4
    x = np.random.default_rng(0).standard_normal((3, 3, 160, 160)).astype(np.float32)
    with TensorRTRunner(plan) as trt_runner, OnnxRuntimeRunner(small_raw_onnx, providers=["CPUExecutionProvider"]) as ref:
        out, expected = trt_runner.infer({"images": x}), ref.infer({"images": x})
        chunked = trt_runner.infer({"images": np.concatenate([x, x])})  # 6 > max batch 4: runs in chunks of 4
    np.testing.assert_allclose(chunked["logits"][3:], out["logits"], atol=1e-5)
    for name in ("locs", "logits"):
        np.testing.assert_allclose(out[name], expected[name], atol=2e-3)  # TF32 convolutions


@pytest.mark.tensorrt
def test_torch_buffers_zero_copy_and_gpu_postprocess(plan: Path) -> None:
    torch = pytest.importorskip("torch")
    from ssdtrt.postprocess import postprocess
    from ssdtrt.priors import default_boxes
    from ssdtrt.runtime.tensorrt_runner import TensorRTRunner

    x = np.random.default_rng(1).standard_normal((2, 3, 160, 160)).astype(np.float32)
    with TensorRTRunner(plan, buffers="torch") as on_gpu, TensorRTRunner(plan) as on_host:
        heads = on_gpu.infer_torch({"images": torch.from_numpy(x).cuda()})
        host = on_host.infer({"images": x})
        assert heads["locs"].is_cuda
        dets = postprocess(heads["locs"], heads["logits"], default_boxes("ssd-small"))  # no device-to-host copy
    np.testing.assert_allclose(heads["logits"].cpu().numpy(), host["logits"], atol=1e-5)
    assert dets[0].boxes.is_cuda


@pytest.mark.tensorrt
def test_engine_from_another_tensorrt_version_is_refused(plan: Path, tmp_path: Path) -> None:
    from ssdtrt.runtime.tensorrt_runner import TensorRTRunner

    copy = tmp_path / plan.name
    copy.write_bytes(plan.read_bytes())
    m = read_manifest(plan)
    m.engine["tensorrt_version"] = "9.0.0"
    write_manifest(copy, m)
    with pytest.raises(IncompatibleEngineError, match="9.0.0"):
        TensorRTRunner(copy).activate()
    m.engine["tensorrt_version"] = read_manifest(plan).engine["tensorrt_version"]
    copy.write_bytes(b"corrupt")
    write_manifest(copy, stamp_artifact(m, copy))  # a manifest that describes the corrupt bytes: TensorRT must refuse
    with pytest.raises(IncompatibleEngineError, match="could not deserialize"):
        TensorRTRunner(copy).activate()
