"""CUDA device memory through cuda-python (no torch): device buffers, a stream, copies, and GPU identification.

NVIDIA's TensorRT samples moved from pycuda to cuda-python; every cudart call returns `(err, *values)`.
`import_cudart()` accepts the current (`cuda.bindings.runtime`) and the older (`cuda.cudart`) module paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ssdtrt.errors import BackendUnavailableError, SSDTRTError

TRT_INSTALL_HINT = 'pip install "ssdtrt[trt]" --extra-index-url https://pypi.nvidia.com'


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


def cuda_call(cudart: Any, result: Any) -> Any:
    """Unpack `(err, *values)`; raise CudaError on failure; return None, the value, or the tuple of values."""
    err, values = result[0], result[1:]
    if err != cudart.cudaError_t.cudaSuccess:
        name = cudart.cudaGetErrorName(err)[1]
        raise CudaError(f"CUDA runtime error {name.decode() if isinstance(name, bytes) else name}")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    compute_capability: str  # "8.6"

    @property
    def sm(self) -> str:
        return "sm_" + self.compute_capability.replace(".", "")


def gpu_info(device_index: int = 0) -> GpuInfo:
    """Name and compute capability of a GPU via cuda-python, else via torch; BackendUnavailableError if none."""
    if not nvidia_driver_present():
        raise BackendUnavailableError("no NVIDIA GPU / driver on this machine (TensorRT needs a CUDA GPU)")
    try:
        cudart = import_cudart()
    except BackendUnavailableError:
        cudart = None
    if cudart is not None:
        try:
            count = cuda_call(cudart, cudart.cudaGetDeviceCount())
        except CudaError as err:
            raise BackendUnavailableError(f"CUDA cannot see a GPU ({err})") from err
        if device_index >= count:
            raise BackendUnavailableError(f"GPU {device_index} requested but CUDA sees {count}")
        prop = cuda_call(cudart, cudart.cudaGetDeviceProperties(device_index))
        name = prop.name.decode(errors="replace").rstrip("\x00") if isinstance(prop.name, bytes) else str(prop.name)
        return GpuInfo(device_index, name, f"{prop.major}.{prop.minor}")
    try:
        import torch
    except ImportError as err:
        raise BackendUnavailableError(f"cuda-python is not installed: {TRT_INSTALL_HINT}") from err
    if not torch.cuda.is_available() or device_index >= torch.cuda.device_count():
        raise BackendUnavailableError("torch sees no CUDA GPU")
    major, minor = torch.cuda.get_device_capability(device_index)
    return GpuInfo(device_index, torch.cuda.get_device_name(device_index), f"{major}.{minor}")


class DeviceBuffer:
    """A growable cudaMalloc allocation (reallocated only when a larger tensor arrives)."""

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


def round_trip(host: np.ndarray) -> np.ndarray:
    """Host → device → host through cuda-python on a fresh stream (a self-test of the buffer path)."""
    cudart = import_cudart()
    stream = CudaStream(cudart)
    buf = DeviceBuffer(cudart)
    try:
        src = np.ascontiguousarray(host)
        out = np.empty_like(src)
        stream.copy_to_device(buf.ensure(src.nbytes), src)
        stream.copy_to_host(out, buf.ptr)
        stream.synchronize()
        return out
    finally:
        buf.free()
        stream.destroy()
