"""CUDA memory through cuda-python (no torch): device buffers, pinned host buffers, a stream, copies, GPU identity.

NVIDIA's TensorRT samples moved from pycuda to cuda-python; every cudart call returns `(err, *values)`.
`import_cudart()` accepts the current (`cuda.bindings.runtime`) and the older (`cuda.cudart`) module paths.
Streams, allocations and events belong to the calling thread's *current* device: call `set_device(cudart, i)` first
(NVIDIA/TensorRT samples/python/attention_mdtrt/attention_mdtrt.py calls `cudart.cudaSetDevice(rank)` before any
other work); the current device is per host thread, so every worker thread sets it again.
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ssdtrt.core.errors import BackendUnavailableError, SSDTRTError

# One extra per CUDA major: the TensorRT wheel and cuda-python must be linked against the same CUDA runtime major,
# and the driver must support it (cuda-python 13.x reports cudaErrorInsufficientDriver on a CUDA 12 driver).
TRT_INSTALL_HINT = (
    'pip install "ssdtrt[trt-cu12]" (CUDA 12 driver) or "ssdtrt[trt-cu13]" (CUDA 13 driver) '
    "--extra-index-url https://pypi.nvidia.com"
)


class CudaError(SSDTRTError):
    """A CUDA runtime call failed (out of memory, invalid device pointer, ...)."""


def import_cudart() -> Any:
    """The cuda-python runtime module, or BackendUnavailableError with the install hint."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # type: ignore[no-redef]  # older cuda-python
        except ImportError as err:
            raise BackendUnavailableError(f"cuda-python is not installed: {TRT_INSTALL_HINT}") from err
    return cudart


def nvidia_driver_present() -> bool:
    """A cheap check (no CUDA import): is there an NVIDIA driver / device node on this host?"""
    return Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidiactl").exists()


def _cuda_python_version() -> str:
    for dist in ("cuda-bindings", "cuda-python"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return "?"


def driver_mismatch_message(cuda_python: str, runtime_major: int, driver_version: int) -> str:
    """One line for cudaErrorInsufficientDriver: the CUDA major cuda-python needs, the driver's (cudaDriverGetVersion
    encoding, 12040 = 12.4; 0 = no driver), and the install that pairs TensorRT and cuda-python with that driver."""
    driver_major = driver_version // 1000
    have = f"CUDA {driver_major}.{driver_version % 1000 // 10}" if driver_version else "no NVIDIA driver"
    if driver_major in (12, 13):
        fix = f'pip install "ssdtrt[trt-cu{driver_major}]" --extra-index-url https://pypi.nvidia.com, or update the NVIDIA driver'
    else:
        fix = "install an NVIDIA driver that supports CUDA 12 or 13"
    return (
        f"cuda-python {cuda_python} needs a CUDA {runtime_major or '?'} driver but this machine has {have} "
        f"(cudaErrorInsufficientDriver): {fix}"
    )


def insufficient_driver_message(cudart: Any) -> str:
    """`driver_mismatch_message` filled in from this cuda-python and driver."""
    ok = cudart.cudaError_t.cudaSuccess
    runtime_v, driver_v = cudart.cudaRuntimeGetVersion(), cudart.cudaDriverGetVersion()
    runtime_major = int(runtime_v[1]) // 1000 if runtime_v[0] == ok else 0
    return driver_mismatch_message(_cuda_python_version(), runtime_major, int(driver_v[1]) if driver_v[0] == ok else 0)


def cuda_call(cudart: Any, result: Any) -> Any:
    """Unpack `(err, *values)`; raise CudaError on failure; return None, the value, or the tuple of values.

    A driver older than cuda-python's CUDA runtime (cudaErrorInsufficientDriver) and a machine without a GPU
    (cudaErrorNoDevice) raise BackendUnavailableError with one line naming the fix.
    """
    err, values = result[0], result[1:]
    if err != cudart.cudaError_t.cudaSuccess:
        if err == cudart.cudaError_t.cudaErrorInsufficientDriver:
            raise BackendUnavailableError(insufficient_driver_message(cudart))
        if err == cudart.cudaError_t.cudaErrorNoDevice:
            raise BackendUnavailableError("CUDA sees no GPU (cudaErrorNoDevice): TensorRT needs a CUDA GPU")
        name = cudart.cudaGetErrorName(err)[1]
        raise CudaError(f"CUDA runtime error {name.decode() if isinstance(name, bytes) else name}")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def set_device(cudart: Any, device_index: int) -> None:
    """Make GPU `device_index` current for this thread (streams, cudaMalloc, engines then land on it)."""
    cuda_call(cudart, cudart.cudaSetDevice(int(device_index)))


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    compute_capability: str  # "8.6"

    @property
    def sm(self) -> str:
        return "sm_" + self.compute_capability.replace(".", "")


def gpu_info(device_index: int = 0) -> GpuInfo:
    """Name and compute capability of a GPU via cuda-python, else via torch; BackendUnavailableError if none.

    A cuda-python that cannot talk to this driver (cudaErrorInsufficientDriver) does not hide a GPU torch can see
    (buffers="torch" needs no cuda-python); when neither works, cuda-python's one-line reason is raised.
    """
    if not nvidia_driver_present():
        raise BackendUnavailableError("no NVIDIA GPU / driver on this machine (TensorRT needs a CUDA GPU)")
    cuda_python_problem: BackendUnavailableError | None = None
    try:
        return _gpu_info_cudart(import_cudart(), device_index)
    except BackendUnavailableError as err:
        cuda_python_problem = err
    try:
        import torch
    except ImportError:
        raise cuda_python_problem from None
    if not torch.cuda.is_available() or device_index >= torch.cuda.device_count():
        raise cuda_python_problem
    major, minor = torch.cuda.get_device_capability(device_index)
    return GpuInfo(device_index, torch.cuda.get_device_name(device_index), f"{major}.{minor}")


def _gpu_info_cudart(cudart: Any, device_index: int) -> GpuInfo:
    try:
        count = cuda_call(cudart, cudart.cudaGetDeviceCount())  # BackendUnavailableError names a driver mismatch
    except CudaError as err:
        raise BackendUnavailableError(f"CUDA cannot see a GPU ({err})") from err
    if device_index >= count:
        raise BackendUnavailableError(f"GPU {device_index} requested but CUDA sees {count}")
    prop = cuda_call(cudart, cudart.cudaGetDeviceProperties(device_index))
    name = prop.name.decode(errors="replace").rstrip("\x00") if isinstance(prop.name, bytes) else str(prop.name)
    return GpuInfo(device_index, name, f"{prop.major}.{prop.minor}")


class DeviceBuffer:
    """A growable cudaMalloc allocation (reallocated only when a larger tensor arrives; cudaMalloc is 256-byte aligned)."""

    def __init__(self, cudart: Any) -> None:
        self._cudart = cudart
        self.ptr = 0
        self.nbytes = 0

    def ensure(self, nbytes: int) -> int:
        if nbytes > self.nbytes:
            self.free()
            self.ptr = int(cuda_call(self._cudart, self._cudart.cudaMalloc(max(nbytes, 1))))
            self.nbytes = nbytes
        return self.ptr

    def free(self) -> None:
        if self.ptr:
            cuda_call(self._cudart, self._cudart.cudaFree(self.ptr))
        self.ptr, self.nbytes = 0, 0


def host_array_at(ptr: int, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """A numpy view of `prod(shape)` items of `dtype` at host address `ptr` (no copy; the memory must outlive it).

    As NVIDIA's samples/python/common_runtime.py `HostDeviceMem` wraps cudaMallocHost memory
    (`np.ctypeslib.as_array(ctypes.cast(ptr, POINTER(...)), shape)`), via bytes so any numpy dtype works.
    """
    dt = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    raw = np.ctypeslib.as_array(ctypes.cast(int(ptr), ctypes.POINTER(ctypes.c_uint8)), (max(nbytes, 1),))
    return raw[:nbytes].view(dt).reshape(shape)


class PinnedHostBuffer:
    """Growable page-locked host memory (cudaMallocHost): cudaMemcpyAsync from/to it is truly asynchronous.

    Copies from pageable numpy memory are staged by the driver and block the host, so H2D, compute and D2H of
    in-flight batches cannot overlap (CUDA C Programming Guide, "Page-Locked Host Memory").
    """

    def __init__(self, cudart: Any) -> None:
        self._cudart = cudart
        self.ptr = 0
        self.nbytes = 0

    def array(self, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
        """A view of this buffer as an array of `shape` / `dtype` (grown first when too small)."""
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if nbytes > self.nbytes:
            self.free()
            self.ptr = int(cuda_call(self._cudart, self._cudart.cudaMallocHost(max(nbytes, 1))))
            self.nbytes = nbytes
        return host_array_at(self.ptr, shape, dtype)

    def free(self) -> None:
        if self.ptr:
            cuda_call(self._cudart, self._cudart.cudaFreeHost(self.ptr))
        self.ptr, self.nbytes = 0, 0


class CudaStream:
    """A non-default CUDA stream with async host↔device copies (host arrays must stay alive until `synchronize`)."""

    def __init__(self, cudart: Any) -> None:
        self._cudart = cudart
        self.handle = cuda_call(cudart, cudart.cudaStreamCreate())

    @property
    def ptr(self) -> int:
        return int(self.handle)

    def copy_to_device(self, device_ptr: int, host: np.ndarray) -> None:
        kind = self._cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        cuda_call(self._cudart, self._cudart.cudaMemcpyAsync(device_ptr, host.ctypes.data, host.nbytes, kind, self.handle))

    def copy_to_host(self, host: np.ndarray, device_ptr: int) -> None:
        kind = self._cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        cuda_call(self._cudart, self._cudart.cudaMemcpyAsync(host.ctypes.data, device_ptr, host.nbytes, kind, self.handle))

    def synchronize(self) -> None:
        cuda_call(self._cudart, self._cudart.cudaStreamSynchronize(self.handle))

    def destroy(self) -> None:
        if self.handle is not None:
            cuda_call(self._cudart, self._cudart.cudaStreamDestroy(self.handle))
            self.handle = None


class CudaEvent:
    """A CUDA event: recorded on a stream, it times GPU work without stalling the host (cudaEventElapsedTime)."""

    def __init__(self, cudart: Any) -> None:
        self._cudart = cudart
        self.handle = cuda_call(cudart, cudart.cudaEventCreate())

    def record(self, stream: CudaStream) -> None:
        cuda_call(self._cudart, self._cudart.cudaEventRecord(self.handle, stream.handle))

    def elapsed_ms(self, later: CudaEvent) -> float:
        """Milliseconds from this event to `later` (both recorded and completed: synchronize the stream first)."""
        return float(cuda_call(self._cudart, self._cudart.cudaEventElapsedTime(self.handle, later.handle)))

    def destroy(self) -> None:
        if self.handle is not None:
            cuda_call(self._cudart, self._cudart.cudaEventDestroy(self.handle))
            self.handle = None


def round_trip(host: np.ndarray, *, pinned: bool = True, device_index: int = 0) -> np.ndarray:
    """Host → device → host through cuda-python on a fresh stream (a self-test of the buffer path)."""
    return round_trip_timed(host, pinned=pinned, device_index=device_index, repeats=1)[0]


def round_trip_timed(
    host: np.ndarray, *, pinned: bool, device_index: int = 0, repeats: int = 10
) -> tuple[np.ndarray, float]:
    """Copy `host` to GPU `device_index` and back `repeats` times; (the last copy back, median round trip in ms).

    pinned=True stages through cudaMallocHost buffers (as the TensorRT runner does), False copies from/to the
    pageable numpy arrays themselves; the GPU check compares the two.
    """
    cudart = import_cudart()
    set_device(cudart, device_index)
    stream = CudaStream(cudart)
    device, staging_in, staging_out = DeviceBuffer(cudart), PinnedHostBuffer(cudart), PinnedHostBuffer(cudart)
    try:
        src = np.ascontiguousarray(host)
        result = np.empty_like(src)
        times_ms = []
        for _ in range(max(1, repeats)):
            start = time.perf_counter()
            if pinned:
                pinned_in = staging_in.array(src.shape, src.dtype)
                pinned_in[...] = src
                pinned_out = staging_out.array(src.shape, src.dtype)
                stream.copy_to_device(device.ensure(src.nbytes), pinned_in)
                stream.copy_to_host(pinned_out, device.ptr)
                stream.synchronize()
                result[...] = pinned_out
            else:
                stream.copy_to_device(device.ensure(src.nbytes), src)
                stream.copy_to_host(result, device.ptr)
                stream.synchronize()
            times_ms.append((time.perf_counter() - start) * 1e3)
        return result, float(np.median(times_ms))
    finally:
        device.free()
        staging_in.free()
        staging_out.free()
        stream.destroy()
