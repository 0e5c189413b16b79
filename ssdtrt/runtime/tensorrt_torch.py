"""The `buffers="torch"` path of TensorRTRunner: CUDA tensors in and out, allocated by torch's caching allocator, so
GPU postprocessing reads the engine's outputs in place (no device-to-host copy).

A mixin so the runner module keeps the cuda-python path and the lifecycle; it uses the runner's slots, I/O table and
binding checks (`_acquire`, `_free`, `_io`, `_bind`, `_set_input_shapes`, `_output_shape`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ssdtrt.core.errors import BackendUnavailableError


def import_torch_cuda() -> Any:
    """torch with a CUDA device, or BackendUnavailableError saying what buffers='torch' needs."""
    try:
        import torch
    except ImportError as err:
        raise BackendUnavailableError("buffers='torch' needs PyTorch with CUDA (or use buffers='cuda-python')") from err
    if not torch.cuda.is_available():
        raise BackendUnavailableError("buffers='torch' needs a CUDA GPU, torch sees none")
    return torch


class TorchBuffersMixin:
    """infer_torch and the torch-buffer host path of TensorRTRunner (see the module docstring)."""

    _torch: Any
    _io: dict[str, tuple[bool, np.dtype]]
    device_index: int
    buffers: str
    is_active: bool

    def _run_torch_host(self, slot: Any, feeds: dict[str, np.ndarray], timing: dict[str, float] | None) -> dict[str, np.ndarray]:
        torch = self._torch
        dev = torch.device(f"cuda:{self.device_index}")
        current = torch.cuda.current_stream(dev)
        events = [torch.cuda.Event(enable_timing=True) for _ in range(4)] if timing is not None else []
        if events:
            events[0].record(current)  # on GPU N's stream, not the calling thread's current device
        inputs = {k: torch.from_numpy(np.ascontiguousarray(v)).to(dev) for k, v in feeds.items()}
        if events:
            events[1].record(current)
        out = self._run_torch(slot, inputs)
        if events:
            events[2].record(current)
        host = {k: v.cpu().numpy() for k, v in out.items()}
        if events:
            events[3].record(current)
            events[3].synchronize()
            for stage, (a, b) in zip(("h2d", "inference", "d2h"), zip(events, events[1:])):
                timing[stage] += a.elapsed_time(b)  # type: ignore[index]
        return host

    def infer_torch(self, feeds: dict[str, Any]) -> dict[str, Any]:
        """CUDA tensors in, CUDA tensors out (allocated by torch): GPU postprocess reads the engine's outputs directly.

        Works in ordered fashion with torch's current stream: the engine's stream waits for it before running and
        the current stream waits for the engine afterwards, so callers need no extra synchronization.
        """
        if self.buffers != "torch":
            raise ValueError("infer_torch needs a runner created with buffers='torch'")
        if not self.is_active:
            self.activate()
        slot = self._acquire()
        try:
            return self._run_torch(slot, feeds)
        finally:
            self._free.put(slot)

    def _run_torch(self, slot: Any, feeds: dict[str, Any]) -> dict[str, Any]:
        torch = self._torch
        dev = torch.device(f"cuda:{self.device_index}")
        to_torch = {np.dtype(np.float32): torch.float32, np.dtype(np.float16): torch.float16,
                    np.dtype(np.int32): torch.int32, np.dtype(np.int64): torch.int64, np.dtype(np.int8): torch.int8,
                    np.dtype(np.bool_): torch.bool, np.dtype(np.uint8): torch.uint8}
        inputs = {}
        for n, (inp, dt) in self._io.items():
            if inp:
                t = feeds[n].to(device=dev, dtype=to_torch[dt]).contiguous()
                # a view with a storage offset can miss TensorRT's 256-byte alignment: a fresh allocation has it
                inputs[n] = t.clone() if t.data_ptr() % 256 else t
        self._set_input_shapes(slot.context, {n: tuple(t.shape) for n, t in inputs.items()})
        outputs = {
            n: torch.empty(self._output_shape(slot.context, n), dtype=to_torch[dt], device=dev)
            for n, (inp, dt) in self._io.items() if not inp
        }
        for name, tensor in {**inputs, **outputs}.items():
            self._bind(slot.context, name, tensor.data_ptr())
        current = torch.cuda.current_stream(dev)
        slot.stream.wait_stream(current)
        if not slot.context.execute_async_v3(slot.stream.cuda_stream):
            raise BackendUnavailableError(f"{self.path}: TensorRT execution failed (see the TensorRT log above)")
        current.wait_stream(slot.stream)
        for tensor in (*inputs.values(), *outputs.values()):
            tensor.record_stream(slot.stream)  # the caching allocator must not reuse them before the engine is done
        return outputs
