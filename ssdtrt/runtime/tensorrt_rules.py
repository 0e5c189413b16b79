"""TensorRT's rules that need no TensorRT to check: engine/runtime version and GPU compatibility, tensor-address
alignment, and how a host batch is cut into chunks the engine's optimization profile accepts.

Kept apart from the runner so they run (and are tested) on machines without TensorRT or a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from ssdtrt.core.errors import IncompatibleEngineError, ManifestError, SSDTRTError
from ssdtrt.core.manifest import Manifest
from ssdtrt.runtime.cuda_buffers import GpuInfo

# NvInferRuntime.h, IExecutionContext::setTensorAddress: "The pointer must have at least 256-byte alignment."
TENSOR_ALIGNMENT_BYTES = 256

# Version-compatible engines (BuilderFlag.VERSION_COMPATIBLE, TensorRT >= 8.6) run on the same or a newer runtime of
# the same major; across majors only these (built, runtime) pairs are supported (TensorRT 11.4 support matrix,
# "Engine Portability": "TensorRT 10 version-compatible engines can run with a TensorRT 11 runtime, and TensorRT 8
# version-compatible engines can run with a TensorRT 10 runtime. No other combination across major versions").
CROSS_MAJOR_VERSION_COMPATIBLE = frozenset({(8, 10), (10, 11)})
MIN_VERSION_COMPATIBLE = (8, 6, 0)


class TensorBindingError(SSDTRTError):
    """TensorRT refused a tensor address (unknown name, or a pointer without the 256-byte alignment it needs)."""


def version_tuple(version: str) -> tuple[int, int, int]:
    """"10.13.0.35" -> (10, 13, 0): major.minor.patch; the build number never decides compatibility."""
    parts: list[int] = []
    for piece in str(version).split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    while len(parts) < 3:
        parts.append(0)
    return parts[0], parts[1], parts[2]


def runtime_can_load(built: str, runtime: str, *, version_compatible: bool) -> bool:
    """TensorRT's documented rule: a normal engine needs the exact major.minor.patch it was built with; a
    version-compatible one the same or a newer runtime, within the major or across a supported major pair."""
    b, r = version_tuple(built), version_tuple(runtime)
    if not version_compatible:
        return r == b
    if b < MIN_VERSION_COMPATIBLE or r < b:
        return False
    return r[0] == b[0] or (b[0], r[0]) in CROSS_MAJOR_VERSION_COMPATIBLE


def check_engine_compatibility(manifest: Manifest, trt_version: str, gpu: GpuInfo, where: str = "engine") -> None:
    """Raise IncompatibleEngineError when this TensorRT version or GPU cannot run the engine the manifest describes."""
    eng = manifest.engine
    built = str(eng.get("tensorrt_version", ""))
    if not built:
        raise ManifestError(f"{where}: the manifest records no TensorRT version (not built by `ssdtrt build-engine`?)")
    built_gpu = f"{eng.get('gpu_name', '?')} (compute capability {eng.get('compute_capability', '?')})"
    rebuild = "rebuild it on this machine with `ssdtrt build-engine`"
    version_compatible = bool(eng.get("version_compatible"))
    if not runtime_can_load(built, trt_version, version_compatible=version_compatible):
        if version_compatible:
            majors = sorted({version_tuple(built)[0]} | {r for b, r in CROSS_MAJOR_VERSION_COMPATIBLE if b == version_tuple(built)[0]})
            raise IncompatibleEngineError(
                f"{where}: built version-compatible with TensorRT {built}; it runs on TensorRT >= {built} of major "
                f"{' or '.join(map(str, majors))}, this host has {trt_version} — {rebuild}"
            )
        raise IncompatibleEngineError(
            f"{where}: built with TensorRT {built} on {built_gpu}, this host has TensorRT {trt_version} — {rebuild} "
            "(or build with --version-compatible)"
        )
    level = str(eng.get("hardware_compatibility_level", "") or "").upper()
    built_cc = str(eng.get("compute_capability", ""))
    if built_cc and built_cc != gpu.compute_capability and level in ("", "NONE"):
        raise IncompatibleEngineError(
            f"{where}: built for {built_gpu}, this GPU is {gpu.name} (compute capability {gpu.compute_capability}) — "
            f"{rebuild}"
        )


def check_tensor_address(name: str, ptr: int) -> None:
    """Raise TensorBindingError for a null pointer or one without TensorRT's 256-byte alignment (e.g. a torch view
    with a storage offset), before TensorRT is asked to run on it."""
    if not ptr:
        raise TensorBindingError(f"tensor {name!r}: null device pointer")
    if ptr % TENSOR_ALIGNMENT_BYTES:
        raise TensorBindingError(
            f"tensor {name!r}: device pointer {ptr:#x} is not {TENSOR_ALIGNMENT_BYTES}-byte aligned as TensorRT "
            "requires (a view into a larger tensor? pass a fresh .contiguous().clone())"
        )


@dataclass(frozen=True)
class BatchChunk:
    """Rows [start, stop) of the host batch, run as a batch of `run_size` (>= stop - start: padded up to the
    profile minimum by repeating the last row; the padded rows' outputs are dropped)."""

    start: int
    stop: int
    run_size: int

    @property
    def pad(self) -> int:
        return self.run_size - (self.stop - self.start)


def plan_batch_chunks(n: int, min_batch: int | None, max_batch: int | None) -> list[BatchChunk]:
    """Cut n rows into chunks of at most max_batch; a chunk below min_batch (a remainder, or a small request) is
    padded to min_batch, since `set_input_shape` rejects a batch outside the profile's [min, max]."""
    if n <= 0:
        return []
    lo = max(1, min_batch or 1)
    hi = max_batch or n
    if lo > hi:
        raise ValueError(f"profile minimum batch {lo} exceeds its maximum {hi}")
    return [BatchChunk(s, min(s + hi, n), max(min(s + hi, n) - s, lo)) for s in range(0, n, hi)]
