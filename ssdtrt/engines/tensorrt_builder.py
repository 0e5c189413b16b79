"""TensorRT engine builder (10.x / 11.x API): ONNX → strongly typed network → plain serialized `.plan` + manifest.

Precision comes from the ONNX variant (fp32, fp16 weights/casts, int8 Q/DQ): the network is strongly typed (a flag
on 10.x, always on in 11.x where the precision builder flags are gone). A dynamic batch gets one optimization
profile (min / opt / max). The plan has no header so `trtexec --loadEngine` and other tools read it; what the
runner must check (TensorRT version, GPU, compute capability) lives in the manifest beside it.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

from ssdtrt.engines.openvino_builder import EngineBuildResult, engine_out_path, read_onnx_manifest
from ssdtrt.core.errors import BackendUnavailableError, EngineBuildError
from ssdtrt.io.files import atomic_write_bytes, sha256_file
from ssdtrt.core.manifest import Manifest, tool_versions, write_artifact_with_manifest
from ssdtrt.runtime.cuda_buffers import gpu_info
from ssdtrt.runtime.tensorrt_runner import import_tensorrt

MAX_PARSER_ERRORS_SHOWN = 20


class TimingCacheWarning(UserWarning):
    """A timing cache that could not be used or saved; the engine is built (and written) regardless."""


def make_device_current(device_index: int) -> None:
    """cudaSetDevice(device_index) before the builder touches CUDA, so the plan is built on the GPU the manifest
    names (samples/python/attention_mdtrt/attention_mdtrt.py: `cudart.cudaSetDevice(rank)` first)."""
    from ssdtrt.runtime.cuda_buffers import import_cudart, set_device

    try:
        set_device(import_cudart(), device_index)
    except BackendUnavailableError as err:  # no cuda-python, or one built for another CUDA major than the driver
        try:
            import torch
        except ImportError:
            raise err from None
        if not torch.cuda.is_available():
            raise
        torch.cuda.set_device(device_index)


def attach_timing_cache(config: Any, cache_path: Path | None) -> tuple[Any, str]:
    """Attach a saved timing cache, or a fresh one when it is missing or from another GPU/TensorRT; (cache, status).

    NvInfer.h IBuilderConfig::setTimingCache returns false when the cache's device properties differ from this
    GPU's; ignoreMismatch=False keeps such a cache out (it "may lead to functional/performance bugs"), so it is
    replaced by an empty cache with a warning. The returned cache must stay alive until the build ends (NvInfer.h).
    """
    blob = cache_path.read_bytes() if cache_path is not None and cache_path.is_file() else b""
    try:
        cache = config.create_timing_cache(blob)
    except (RuntimeError, TypeError, ValueError):
        cache = None
    if cache is not None and config.set_timing_cache(cache, False):
        return cache, "loaded" if blob else "new"
    if blob:
        warnings.warn(
            f"{cache_path}: timing cache from another GPU or TensorRT version (or corrupt); not used, a new one will "
            "replace it",
            TimingCacheWarning,
            stacklevel=3,
        )
        cache = config.create_timing_cache(b"")
        if cache is not None and config.set_timing_cache(cache, False):
            return cache, "replaced"
    warnings.warn("TensorRT refused a new timing cache; building without one", TimingCacheWarning, stacklevel=3)
    return None, "none"


def save_timing_cache(config: Any, cache_path: Path) -> bool:
    """Serialize the builder's timing cache to `cache_path`; a warning (never an exception) when it cannot.

    `get_timing_cache()` may return None (Polygraphy backend/trt/loader.py guards it with `if timing_cache:`).
    """
    cache = config.get_timing_cache()
    if not cache:
        warnings.warn(f"{cache_path}: TensorRT has no timing cache to save", TimingCacheWarning, stacklevel=3)
        return False
    try:
        atomic_write_bytes(cache_path, bytes(memoryview(cache.serialize())))
    except (OSError, RuntimeError, TypeError, ValueError) as err:
        warnings.warn(f"{cache_path}: timing cache not saved ({err})", TimingCacheWarning, stacklevel=3)
        return False
    return True


def batch_profile(min_batch: int, opt_batch: int | None, max_batch: int | None) -> tuple[int, int, int]:
    """(min, opt, max) batch sizes: opt defaults to max, max to max(8, min); raises on an unordered triple."""
    max_b = max_batch if max_batch is not None else max(8, min_batch, opt_batch or 0)
    opt_b = opt_batch if opt_batch is not None else max_b
    if not 1 <= min_batch <= opt_b <= max_b:
        raise EngineBuildError(f"batch profile must satisfy 1 <= min <= opt <= max, got {min_batch}/{opt_b}/{max_b}")
    return min_batch, opt_b, max_b


def format_parser_errors(parser: Any) -> list[str]:
    """One line per ONNX parser error, naming the node (name and operator) where this TensorRT reports them."""
    lines = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        where = []
        for attr, label in (("node_name", "node"), ("node_operator", "op")):
            fn = getattr(err, attr, None)
            value = fn() if callable(fn) else None
            if value:
                where.append(f"{label} {value!r}")
        if not where:
            node = err.node() if callable(getattr(err, "node", None)) else -1
            if node is not None and int(node) >= 0:
                where.append(f"node #{int(node)}")
        lines.append(f"{', '.join(where) or 'graph'}: {err.desc()} ({err.code()})")
    return lines


def build_tensorrt(
    onnx_path: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    min_batch: int = 1,
    opt_batch: int | None = None,
    max_batch: int | None = None,
    workspace_mb: int | None = None,
    timing_cache: str | os.PathLike[str] | None = None,
    version_compatible: bool = False,
    device_index: int = 0,
    detailed_profile: bool = False,
    verbose: bool = False,
) -> EngineBuildResult:
    """Build a `.plan` from an exported ONNX on GPU `device_index`; the manifest records how and where.

    The plan and its manifest are written together (both or neither); the timing cache after them, best effort.
    detailed_profile=True records layer parameters and precisions for IEngineInspector (ProfilingVerbosity.DETAILED).
    """
    trt = import_tensorrt()  # first: a host without TensorRT gets the install hint, whatever else is missing
    gpu = gpu_info(device_index)
    onnx_path, src = read_onnx_manifest(onnx_path)
    dest = engine_out_path(out, onnx_path, ".plan")
    make_device_current(device_index)

    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    strongly_typed = hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    if strongly_typed:  # opt-in on 10.x; on 11.x networks are always strongly typed
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = format_parser_errors(parser)
        shown = "\n  ".join(errors[:MAX_PARSER_ERRORS_SHOWN])
        more = f"\n  ... and {len(errors) - MAX_PARSER_ERRORS_SHOWN} more" if len(errors) > MAX_PARSER_ERRORS_SHOWN else ""
        raise EngineBuildError(f"{onnx_path}: TensorRT's ONNX parser rejected it ({len(errors)} errors):\n  {shown}{more}")

    config = builder.create_builder_config()
    if workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if detailed_profile:  # IEngineInspector reports layer precisions only for DETAILED engines (NvInferRuntime.h)
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    profile_record = _add_batch_profile(builder, network, config, min_batch, opt_batch, max_batch)

    cache_path = Path(timing_cache) if timing_cache is not None else None
    cache, cache_status = attach_timing_cache(config, cache_path) if cache_path is not None else (None, "off")

    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    build_s = time.perf_counter() - start
    if serialized is None:
        raise EngineBuildError(f"{onnx_path}: TensorRT could not build an engine (see the TensorRT log above)")
    plan = bytes(memoryview(serialized))

    manifest = engine_manifest(
        src,
        dest,
        onnx_path,
        engine={
            "backend": "tensorrt",
            "tensorrt_version": trt.__version__,
            "gpu_name": gpu.name,
            "compute_capability": gpu.compute_capability,
            "version_compatible": bool(version_compatible),
            "hardware_compatibility_level": "none",
            "strongly_typed": True,
            "profile": profile_record,
            "workspace_mb": workspace_mb,
            "timing_cache": str(cache_path) if cache_path is not None else None,
            "timing_cache_status": cache_status,
            "profiling_verbosity": "detailed" if detailed_profile else "layer_names_only",
            "device_index": int(device_index),
            "build_seconds": round(build_s, 2),
            "plan_bytes": len(plan),
        },
        tools=tool_versions("tensorrt", "cuda-bindings", "cuda-python"),
    )
    manifest_path = write_artifact_with_manifest(dest, plan, manifest)
    if cache_path is not None and cache is not None:
        save_timing_cache(config, cache_path)
    return EngineBuildResult(dest, manifest_path, manifest, {"build_seconds": build_s, "gpu": gpu.name})


def _add_batch_profile(
    builder: Any, network: Any, config: Any, min_batch: int, opt_batch: int | None, max_batch: int | None
) -> dict[str, dict[str, list[int]]]:
    """One optimization profile covering every input whose batch dimension is dynamic; {} for a static graph."""
    record: dict[str, dict[str, list[int]]] = {}
    dynamic = []
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shape = list(tensor.shape)
        if any(d < 0 for d in shape[1:]):
            raise EngineBuildError(f"input {tensor.name!r} has dynamic non-batch dimensions {shape}; export a fixed size")
        if shape and shape[0] < 0:
            dynamic.append((tensor.name, shape))
        else:
            record[tensor.name] = {"min": shape, "opt": shape, "max": shape}
    if dynamic:
        lo, opt, hi = batch_profile(min_batch, opt_batch, max_batch)
        profile = builder.create_optimization_profile()
        for name, shape in dynamic:
            dims = {"min": [lo, *shape[1:]], "opt": [opt, *shape[1:]], "max": [hi, *shape[1:]]}
            profile.set_shape(name, dims["min"], dims["opt"], dims["max"])
            record[name] = dims
        config.add_optimization_profile(profile)
    return record


def engine_manifest(
    src: Manifest, dest: Path, onnx_path: Path, *, engine: dict[str, Any], tools: dict[str, str]
) -> Manifest:
    """The ONNX's manifest re-targeted at an engine file (precision, classes, spec and I/O carry over)."""
    return replace(
        src,
        artifact=dest.name,
        kind="tensorrt",
        source={**src.source, "onnx": onnx_path.name, "onnx_sha256": sha256_file(onnx_path)},
        tools={**src.tools, **tools},
        engine=engine,
    )
