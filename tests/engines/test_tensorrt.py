"""TensorRT: engine compatibility rules, address/batch rules, pinned views, the artifact pair, the missing-backend and
driver-mismatch paths (run everywhere); build + run on a GPU (`tensorrt` marker and the `trt_gpu` fixture: skipped
with the reason where TensorRT, cuda-python, a GPU or CUDA torch is missing)."""

from __future__ import annotations

import ctypes
import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ssdtrt.core.errors import BackendUnavailableError, EngineBuildError, IncompatibleEngineError, ManifestError
from ssdtrt.core.manifest import manifest_path_for, read_manifest, stamp_artifact, write_artifact_with_manifest, write_manifest
from ssdtrt.runtime import available_backends
from ssdtrt.runtime.cuda_buffers import GpuInfo, driver_mismatch_message, host_array_at
from ssdtrt.runtime.tensorrt_rules import (
    BatchChunk,
    TensorBindingError,
    check_tensor_address,
    plan_batch_chunks,
    runtime_can_load,
)
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


def test_version_compatible_engine_runs_on_newer_runtimes_including_11(small_raw_onnx: Path) -> None:
    """TensorRT 11.4 support matrix: 10.x version-compatible engines run on 11.x; older runtimes and 12.x do not."""
    m = engine_manifest(small_raw_onnx, version_compatible=True)
    for newer in ("10.13.0.40", "10.14.1", "11.0.0", "11.4.0.106"):
        check_engine_compatibility(m, newer, A10)
    for older_or_unsupported_major in ("10.12.0", "9.3.0", "12.0.0"):
        with pytest.raises(IncompatibleEngineError, match=r"version-compatible.*major 10 or 11"):
            check_engine_compatibility(m, older_or_unsupported_major, A10)


def test_version_compatibility_rule() -> None:
    assert runtime_can_load("10.13.0.35", "10.13.0.99", version_compatible=False)  # build number ignored
    assert not runtime_can_load("10.13.0", "10.13.1", version_compatible=False)
    assert not runtime_can_load("10.13.0", "11.0.0", version_compatible=False)
    assert runtime_can_load("8.6.1", "10.0.1", version_compatible=True)  # the other documented cross-major pair
    assert not runtime_can_load("8.6.1", "11.0.0", version_compatible=True)  # "a TensorRT 8 engine cannot run with 11"
    assert not runtime_can_load("8.5.3", "8.6.1", version_compatible=True)  # version compatibility starts at 8.6
    assert not runtime_can_load("11.1.0", "10.16.1", version_compatible=True)  # never backwards
    assert runtime_can_load("11.0.0", "11.4.0", version_compatible=True)


def test_tensor_address_must_be_256_byte_aligned() -> None:
    check_tensor_address("images", 0x7F00_0000_0100)
    with pytest.raises(TensorBindingError, match=r"'images'.*0x7f0000000104 is not 256-byte aligned"):
        check_tensor_address("images", 0x7F00_0000_0104)  # e.g. a torch view starting one float in
    with pytest.raises(TensorBindingError, match="null"):
        check_tensor_address("locs", 0)


def test_batch_chunks_pad_below_profile_minimum() -> None:
    assert plan_batch_chunks(10, 2, 4) == [BatchChunk(0, 4, 4), BatchChunk(4, 8, 4), BatchChunk(8, 10, 2)]
    assert plan_batch_chunks(9, 2, 4)[-1] == BatchChunk(8, 9, 2)  # remainder 1 < min 2: padded by one row
    assert plan_batch_chunks(9, 2, 4)[-1].pad == 1
    assert plan_batch_chunks(1, 4, 8) == [BatchChunk(0, 1, 4)]  # a whole request below the minimum
    assert plan_batch_chunks(3, None, None) == [BatchChunk(0, 3, 3)]
    assert plan_batch_chunks(0, 1, 8) == []
    rows = [c.stop - c.start for c in plan_batch_chunks(37, 3, 8)]
    assert sum(rows) == 37 and all(3 <= c.run_size <= 8 for c in plan_batch_chunks(37, 3, 8))
    with pytest.raises(ValueError, match="exceeds"):
        plan_batch_chunks(4, 8, 4)


def test_host_array_at_views_foreign_memory_without_copy() -> None:
    """The pointer -> numpy view used for cudaMallocHost buffers, here over a ctypes allocation."""
    raw = (ctypes.c_uint8 * 64)()
    view = host_array_at(ctypes.addressof(raw), (2, 4), np.float32)
    view[...] = np.arange(8, dtype=np.float32).reshape(2, 4)
    assert bytes(raw)[:32] == np.arange(8, dtype=np.float32).tobytes()  # wrote through, no copy
    assert view.dtype == np.float32 and view.shape == (2, 4)


def test_driver_mismatch_message_names_the_fix() -> None:
    line = driver_mismatch_message("13.0.1", 13, 12040)
    assert "\n" not in line and "CUDA 13 driver" in line and "CUDA 12.4" in line
    assert 'pip install "ssdtrt[trt-cu12]"' in line and "pypi.nvidia.com" in line
    assert 'pip install "ssdtrt[trt-cu13]"' in driver_mismatch_message("13.2.0", 13, 13000)
    assert "install an NVIDIA driver" in driver_mismatch_message("12.9.0", 12, 0)


def test_real_cuda_python_without_a_driver_raises_one_line() -> None:
    """The installed cuda-python on a host whose driver cannot serve it: BackendUnavailableError, one line."""
    cudart = pytest.importorskip("cuda.bindings.runtime", reason="cuda-python (cuda-bindings) is not installed")
    from ssdtrt.runtime.cuda_buffers import cuda_call

    err = cudart.cudaGetDeviceCount()[0]
    if err != cudart.cudaError_t.cudaErrorInsufficientDriver:
        pytest.skip(f"this host's driver serves cuda-python (cudaGetDeviceCount -> {err.name})")
    with pytest.raises(BackendUnavailableError) as info:
        cuda_call(cudart, cudart.cudaGetDeviceCount())
    assert info.value.exit_code == 2
    message = str(info.value)
    assert "\n" not in message and "cudaErrorInsufficientDriver" in message and "driver" in message
    from ssdtrt.engines.tensorrt_builder import make_device_current

    with pytest.raises(BackendUnavailableError, match="cudaErrorInsufficientDriver"):
        make_device_current(0)  # the builder's cudaSetDevice: same line, torch has no GPU to fall back on either


def test_artifact_pair_is_written_whole_or_not_at_all(small_raw_onnx: Path, tmp_path: Path) -> None:

    good = engine_manifest(small_raw_onnx)
    plan = tmp_path / "m.plan"
    assert write_artifact_with_manifest(plan, b"plan-1", good) == manifest_path_for(plan)
    assert plan.read_bytes() == b"plan-1" and read_manifest(plan).engine["tensorrt_version"] == "10.13.0.35"
    # a manifest that cannot be written (not JSON-serializable) must leave the previous pair untouched
    broken = engine_manifest(small_raw_onnx, not_json=object())
    with pytest.raises(TypeError):
        write_artifact_with_manifest(plan, b"plan-2", broken)
    assert plan.read_bytes() == b"plan-1" and read_manifest(plan).engine == good.engine
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.plan"]  # no temp files left
    # ...and a fresh destination gets neither file
    with pytest.raises(TypeError):
        write_artifact_with_manifest(tmp_path / "new.plan", b"x", broken)
    assert not (tmp_path / "new.plan").exists() and not (tmp_path / "new.json").exists()
    write_artifact_with_manifest(plan, b"plan-3", replace(good, engine={**good.engine, "tensorrt_version": "11.4.0"}))
    assert plan.read_bytes() == b"plan-3" and read_manifest(plan).engine["tensorrt_version"] == "11.4.0"


def test_inspector_json_of_both_majors_is_parsed() -> None:
    """IEngineInspector JSON: 10.x "Format/Datatype" and 11.x "DataType" (TensorRT 11 migration guide)."""
    from ssdtrt.engines.tensorrt_inspect import parse_engine_information, precision_summary

    info = {"Layers": [
        {"Name": "conv1", "LayerType": "CaskConvolution",
         "Inputs": [{"Name": "x", "Format/Datatype": "Four wide channel vectorized row major Int8 format"}],
         "Outputs": [{"Name": "y", "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format"}]},
        {"Name": "head", "LayerType": "CaskConvolution", "Inputs": [{"Name": "y", "DataType": "Int8"}],
         "Outputs": [{"Name": "z", "DataType": "Half", "Format": "kLINEAR"}]},
        {"Name": "decode", "LayerType": "Myelin", "Inputs": [], "Outputs": [{"Name": "b", "DataType": "Float"}]},
        "reformat_0",  # LAYER_NAMES_ONLY verbosity
    ]}
    layers = parse_engine_information(info)
    assert [layer.output_precisions for layer in layers] == [("int8",), ("fp16",), ("fp32",), ()]
    assert layers[1].input_precisions == ("int8",)
    assert precision_summary(layers) == {"int8": 1, "fp16": 1, "fp32": 1, "?": 1}


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
    runner = TensorRTRunner(plan, in_flight=3)
    assert runner.max_batch == 8 and runner.min_batch == 1  # larger host batches run in chunks of 8
    assert runner.optimal_in_flight() == 3 and runner.describe()["in_flight"] == 3  # one context per slot
    with pytest.raises(ValueError, match="in_flight"):
        TensorRTRunner(plan, in_flight=0)
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
    assert 'pip install "ssdtrt[trt-cu12]"' in lines[0] and "ssdtrt[trt-cu13]" in lines[0]
    assert "pypi.nvidia.com" in lines[0]


# --- on a GPU with TensorRT ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trt_gpu() -> GpuInfo:
    """Skip (with the reason) unless `import tensorrt` really works and CUDA sees a GPU through cuda-python/torch."""
    from ssdtrt.runtime.cuda_buffers import gpu_info
    from ssdtrt.runtime.tensorrt_runner import import_tensorrt

    try:
        import_tensorrt()
        return gpu_info(0)
    except BackendUnavailableError as err:
        pytest.skip(f"TensorRT GPU test: {err}")


def torch_cuda():  # noqa: ANN201
    """torch with a CUDA device, or skip: TensorRT may be present where torch is CPU-only."""
    torch = pytest.importorskip("torch", reason="buffers='torch' needs PyTorch")
    if not torch.cuda.is_available():
        pytest.skip("buffers='torch' needs CUDA torch; torch.cuda.is_available() is False")
    return torch


@pytest.fixture(scope="module")
def plan(trt_gpu: GpuInfo, small_raw_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ssdtrt.engines.tensorrt_builder import build_tensorrt

    folder = tmp_path_factory.mktemp("trt")
    result = build_tensorrt(small_raw_onnx, folder / "small", min_batch=2, max_batch=4,
                            timing_cache=folder / "timing.cache", detailed_profile=True)
    assert (folder / "timing.cache").stat().st_size > 0
    assert result.manifest.engine["timing_cache_status"] == "new"
    return result.engine_path


@pytest.mark.tensorrt
def test_engine_matches_onnxruntime(plan: Path, small_raw_onnx: Path) -> None:
    from ssdtrt.runtime.onnxruntime_runner import OnnxRuntimeRunner
    from ssdtrt.runtime.tensorrt_runner import TensorRTRunner

    m = read_manifest(plan)
    assert m.kind == "tensorrt" and m.engine["profile"]["images"]["max"][0] == 4 and m.engine["device_index"] == 0
    x = np.random.default_rng(0).standard_normal((3, 3, 160, 160)).astype(np.float32)
    with TensorRTRunner(plan) as trt_runner, OnnxRuntimeRunner(small_raw_onnx, providers=["CPUExecutionProvider"]) as ref:
        assert trt_runner.min_batch == 2 and trt_runner.max_batch == 4
        out, expected = trt_runner.infer({"images": x}), ref.infer({"images": x})
        chunked = trt_runner.infer({"images": np.concatenate([x, x, x[:1]])})  # 7 = 4 + 3; also 1 < min 2 below
        single = trt_runner.infer({"images": x[:1]})  # padded to the profile minimum, one row back
        futures = [trt_runner.infer_async({"images": x}) for _ in range(4)]
        assert trt_runner.optimal_in_flight() == 2
        async_outs = [f.result(timeout=60) for f in futures]
    # other batch sizes may run other (TF32) tactics: same tolerance as against ONNX Runtime
    np.testing.assert_allclose(chunked["logits"][3:6], out["logits"], atol=2e-3)
    assert single["logits"].shape[0] == 1 and chunked["logits"].shape[0] == 7
    np.testing.assert_allclose(single["logits"], out["logits"][:1], atol=2e-3)
    for got in async_outs:  # same batch, same engine, other execution contexts
        np.testing.assert_allclose(got["logits"], out["logits"], atol=1e-4)
    for name in ("locs", "logits"):
        np.testing.assert_allclose(out[name], expected[name], atol=2e-3)  # TF32 convolutions


@pytest.mark.tensorrt
@pytest.mark.cuda
def test_torch_buffers_zero_copy_and_gpu_postprocess(plan: Path) -> None:
    torch = torch_cuda()
    from ssdtrt.postprocess.host_torch import postprocess
    from ssdtrt.core.priors import default_boxes
    from ssdtrt.runtime.tensorrt_runner import TensorRTRunner

    x = np.random.default_rng(1).standard_normal((2, 3, 160, 160)).astype(np.float32)
    with TensorRTRunner(plan, buffers="torch") as on_gpu, TensorRTRunner(plan) as on_host:
        heads = on_gpu.infer_torch({"images": torch.from_numpy(x).cuda()})
        big = torch.from_numpy(np.concatenate([x[:1], x])).cuda()
        shifted = on_gpu.infer_torch({"images": big[1:]})  # a view 1 image in: storage offset, copied when unaligned
        host = on_host.infer({"images": x})
        assert heads["locs"].is_cuda
        dets = postprocess(heads["locs"], heads["logits"], default_boxes("ssd-small"))  # no device-to-host copy
    np.testing.assert_allclose(heads["logits"].cpu().numpy(), host["logits"], atol=1e-5)
    np.testing.assert_allclose(shifted["logits"].cpu().numpy(), host["logits"], atol=1e-5)
    assert dets[0].boxes.is_cuda


@pytest.mark.tensorrt
def test_foreign_timing_cache_is_ignored_with_a_warning(trt_gpu: GpuInfo, small_raw_onnx: Path, tmp_path: Path) -> None:
    from ssdtrt.engines.tensorrt_builder import TimingCacheWarning, build_tensorrt

    cache = tmp_path / "foreign.cache"
    cache.write_bytes(b"not a timing cache from this GPU" * 8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = build_tensorrt(small_raw_onnx, tmp_path / "m", max_batch=2, timing_cache=cache)
    assert result.engine_path.is_file() and manifest_path_for(result.engine_path).is_file()
    # bytes without TensorRT's magic tag are never "loaded" (TensorRT logs "The timing cache will not be used!"):
    # the builder must say so, warn once, and rewrite the file with this GPU's cache
    assert result.manifest.engine["timing_cache_status"] == "replaced"
    cache_warnings = [w for w in caught if issubclass(w.category, TimingCacheWarning)]
    assert len(cache_warnings) == 1 and str(cache) in str(cache_warnings[0].message), [str(w.message) for w in caught]
    rewritten = cache.read_bytes()
    assert rewritten and rewritten != b"not a timing cache from this GPU" * 8  # rewritten with this GPU's cache
    again = build_tensorrt(small_raw_onnx, tmp_path / "m2", max_batch=2, timing_cache=cache)
    assert again.manifest.engine["timing_cache_status"] == "loaded"  # the rewritten cache is this GPU's own


@pytest.mark.tensorrt
def test_engine_inspector_lists_layer_precisions(plan: Path) -> None:
    from ssdtrt.engines.tensorrt_inspect import inspect_engine, precision_summary

    layers = inspect_engine(plan)
    assert layers and all(layer.name for layer in layers)
    assert "fp32" in precision_summary(layers) or "fp16" in precision_summary(layers)  # DETAILED: not names only


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
