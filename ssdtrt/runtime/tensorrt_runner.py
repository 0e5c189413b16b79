"""TensorRT runner (10.x / 11.x API): a serialized `.plan` + its manifest, I/O by tensor name, non-default streams.

    with TensorRTRunner("engines/model.plan") as runner:                 # cuda-python buffers, no torch
        outputs = runner.infer({"images": batch})
        futures = [runner.infer_async({"images": b}) for b in batches]   # up to optimal_in_flight() overlap
    with TensorRTRunner("engines/model.plan", buffers="torch") as runner:
        heads = runner.infer_torch({"images": cuda_batch})                # CUDA tensors in and out: zero copies

Before deserializing, the manifest's TensorRT version and GPU are checked against this host (tensorrt_rules.py).
Every in-flight slot owns one execution context, one CUDA stream, device buffers and pinned host buffers, so
batches on different slots overlap copies and compute. GPU `device_index` is made current before anything touches
CUDA, in every thread that does.
"""

from __future__ import annotations

import os
import queue
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ssdtrt.core.errors import BackendUnavailableError, IncompatibleEngineError, ManifestError
from ssdtrt.core.manifest import Manifest, read_manifest
from ssdtrt.runtime.base import Runner, TensorMeta
from ssdtrt.runtime.cuda_buffers import TRT_INSTALL_HINT, GpuInfo, gpu_info
from ssdtrt.runtime.tensorrt_rules import (  # noqa: F401  (check_engine_compatibility: re-exported)
    TensorBindingError,
    check_engine_compatibility,
    check_tensor_address,
    plan_batch_chunks,
)
from ssdtrt.runtime.tensorrt_torch import TorchBuffersMixin, import_torch_cuda

BUFFER_KINDS = ("cuda-python", "torch")
PLAN_SUFFIXES = (".plan", ".engine")
DEFAULT_IN_FLIGHT = 2  # one slot copying while the other computes


def import_tensorrt() -> Any:
    """The `tensorrt` module, or BackendUnavailableError with the install command."""
    try:
        import tensorrt as trt
    except ImportError as err:
        raise BackendUnavailableError(f"TensorRT is not installed: {TRT_INSTALL_HINT}") from err
    if not hasattr(trt, "Runtime"):  # the PyPI placeholder package without NVIDIA's wheels behind it
        raise BackendUnavailableError(f"the installed 'tensorrt' package is a placeholder: {TRT_INSTALL_HINT}")
    return trt


@dataclass
class _Slot:
    """What one in-flight inference owns: an execution context, a stream and its buffers (reused call to call)."""

    context: Any
    stream: Any  # cuda_buffers.CudaStream, or torch.cuda.Stream with buffers="torch"
    device: dict[str, Any] = field(default_factory=dict)  # name -> DeviceBuffer
    pinned: dict[str, Any] = field(default_factory=dict)  # name -> PinnedHostBuffer


class TensorRTRunner(TorchBuffersMixin, Runner):
    """One deserialized TensorRT engine on one GPU, with `in_flight` execution contexts for overlapping requests."""

    backend = "tensorrt"

    def __init__(
        self,
        plan_path: str | os.PathLike[str],
        *,
        buffers: str = "cuda-python",
        device_index: int = 0,
        in_flight: int = DEFAULT_IN_FLIGHT,
        manifest: Manifest | None = None,
    ) -> None:
        self.path = Path(plan_path)
        if self.path.suffix not in PLAN_SUFFIXES:
            raise ManifestError(f"{self.path}: a TensorRT engine file ends in {' or '.join(PLAN_SUFFIXES)}")
        if not self.path.is_file():
            raise ManifestError(f"{self.path}: no such engine file")
        if buffers not in BUFFER_KINDS:
            raise ValueError(f"buffers must be one of {BUFFER_KINDS}, not {buffers!r}")
        if in_flight < 1:
            raise ValueError(f"in_flight must be >= 1, not {in_flight}")
        super().__init__(manifest if manifest is not None else read_manifest(self.path))
        if self.manifest.kind != "tensorrt":
            raise ManifestError(f"{self.path}: its manifest describes a {self.manifest.kind!r} artifact, not a TensorRT engine")
        self.buffers = buffers
        self.device_index = int(device_index)
        self.in_flight = int(in_flight)
        self.gpu: GpuInfo | None = None
        self._trt: Any = None
        self._cudart: Any = None
        self._torch: Any = None
        self._engine: Any = None
        self._runtime: Any = None
        self._slots: list[_Slot] = []
        self._free: queue.SimpleQueue[_Slot] = queue.SimpleQueue()
        self._executor: ThreadPoolExecutor | None = None
        self._io: dict[str, tuple[bool, np.dtype]] = {}  # name -> (is_input, dtype)

    # -- lifecycle -------------------------------------------------------------------------------------------------
    def _make_current(self) -> None:
        """cudaSetDevice(device_index) for the calling thread (the current device is per thread)."""
        if self.buffers == "cuda-python":
            from ssdtrt.runtime.cuda_buffers import set_device

            set_device(self._cudart, self.device_index)
        else:
            self._torch.cuda.set_device(self.device_index)

    def _activate(self) -> None:
        trt = import_tensorrt()
        if self.buffers == "cuda-python":
            from ssdtrt.runtime.cuda_buffers import import_cudart

            self._cudart = import_cudart()
        else:
            self._torch = import_torch_cuda()
        self.gpu = gpu_info(self.device_index)
        check_engine_compatibility(self.manifest, trt.__version__, self.gpu, where=str(self.path))
        # Deserialization, contexts, streams and cudaMalloc all act on the current device: make GPU N current first
        # (samples/python/attention_mdtrt/attention_mdtrt.py: cudart.cudaSetDevice(rank) before building/running).
        self._make_current()
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)  # keeps the logger alive (pyCore.cpp: py::keep_alive<1, 2>)
        if self.manifest.engine.get("version_compatible"):
            runtime.engine_host_code_allowed = True  # version-compatible plans embed the lean runtime
        engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise IncompatibleEngineError(
                f"{self.path}: TensorRT {trt.__version__} could not deserialize it (corrupt file, or built for another "
                f"TensorRT/GPU: manifest says TensorRT {self.manifest.engine.get('tensorrt_version')} on "
                f"{self.manifest.engine.get('gpu_name')}) — rebuild it with `ssdtrt build-engine`"
            )
        self._trt, self._runtime, self._engine = trt, runtime, engine
        self._io = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            self._io[name] = (is_input, np.dtype(trt.nptype(engine.get_tensor_dtype(name))))
        self._check_io_names()
        # Several contexts of one engine may run concurrently; each new context is assigned optimization profile 0
        # (NvInferRuntime.h, ICudaEngine::createExecutionContext), which serves any batch within the profile.
        # execute_async_v3 releases the GIL (pyCore.cpp: py::call_guard<py::gil_scoped_release>), so worker threads
        # of infer_async really enqueue in parallel.
        for _ in range(self.in_flight):
            context = engine.create_execution_context()
            if context is None:
                raise BackendUnavailableError(f"{self.path}: TensorRT could not create an execution context (GPU memory?)")
            slot = _Slot(context, self._new_stream())
            self._slots.append(slot)
            self._free.put(slot)

    def _new_stream(self) -> Any:
        if self.buffers == "cuda-python":
            from ssdtrt.runtime.cuda_buffers import CudaStream

            return CudaStream(self._cudart)
        return self._torch.cuda.Stream(device=self.device_index)

    def _check_io_names(self) -> None:
        engine_names = set(self._io)
        manifest_names = {t.name for t in self.manifest.inputs} | {t.name for t in self.manifest.outputs}
        if engine_names != manifest_names:
            raise ManifestError(f"{self.path}: engine tensors {sorted(engine_names)} disagree with the manifest's {sorted(manifest_names)}")

    def _deactivate(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)  # in-flight requests finish before their buffers go
            self._executor = None
        if self._slots:
            self._make_current()
        for slot in self._slots:
            for buf in (*slot.device.values(), *slot.pinned.values()):
                buf.free()
            if self.buffers == "cuda-python":
                slot.stream.destroy()
        self._slots = []
        self._free = queue.SimpleQueue()
        self._engine = None  # contexts went with the slots; the engine before the runtime
        self._runtime = None

    # -- streaming -------------------------------------------------------------------------------------------------
    def optimal_in_flight(self) -> int:
        """Requests worth keeping in flight: one per execution context (copies of one overlap compute of another)."""
        return self.in_flight

    def infer_async(self, feeds: dict[str, np.ndarray]) -> Future[dict[str, np.ndarray]]:
        """`infer` on a free slot in a worker thread; at most `optimal_in_flight()` run at once, the rest queue."""
        if not self.is_active:
            self.activate()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=self.in_flight, thread_name_prefix="ssdtrt-trt")
        return self._executor.submit(self._infer, feeds)

    # -- inference -------------------------------------------------------------------------------------------------
    def _set_input_shapes(self, context: Any, shapes: dict[str, tuple[int, ...]]) -> None:
        for name, (is_input, _) in self._io.items():
            if not is_input:
                continue
            if name not in shapes:
                raise KeyError(f"missing input {name!r} (the engine takes {self.input_names})")
            if not context.set_input_shape(name, tuple(int(d) for d in shapes[name])):
                profile = self.manifest.engine.get("profile", {}).get(name)
                raise ValueError(f"input {name!r} shape {tuple(shapes[name])} is outside the engine's profile {profile}")

    def _output_shape(self, context: Any, name: str) -> tuple[int, ...]:
        shape = tuple(int(d) for d in context.get_tensor_shape(name))
        if any(d < 0 for d in shape):
            raise ManifestError(f"{self.path}: output {name!r} has a data-dependent shape {shape}; export fixed-size outputs")
        return shape

    def _bind(self, context: Any, name: str, ptr: int) -> None:
        """setTensorAddress with both of its conditions checked: 256-byte alignment and a True return
        (NvInferRuntime.h: returns false when the name is not an I/O tensor; the old address would stay bound;
        python/src/infer/pyCore.cpp `set_tensor_address` returns that bool to Python)."""
        try:
            check_tensor_address(name, ptr)
        except TensorBindingError as err:
            raise TensorBindingError(f"{self.path}: {err}") from None
        if not context.set_tensor_address(name, int(ptr)):
            raise TensorBindingError(f"{self.path}: TensorRT refused the address of tensor {name!r}")

    def _dynamic_profiles(self) -> list[dict[str, Any]]:
        return [p for p in self.manifest.engine.get("profile", {}).values() if p["min"] != p["max"]]

    @property
    def max_batch(self) -> int | None:
        """The largest batch of the engine's optimization profile (None: static batch or no profile recorded)."""
        maxima = [int(p["max"][0]) for p in self._dynamic_profiles()]
        return min(maxima) if maxima else None

    @property
    def min_batch(self) -> int | None:
        """The smallest batch of the engine's optimization profile (None: static batch or no profile recorded)."""
        minima = [int(p["min"][0]) for p in self._dynamic_profiles()]
        return max(minima) if minima else None

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Host arrays in and out; a batch above the profile's maximum runs in chunks, one below its minimum padded."""
        return self._infer_chunks(feeds, None)

    def infer_timed(self, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """`infer` with CUDA-event times of the host-to-device copy, the engine and the device-to-host copy (ms)."""
        if not self.is_active:
            self.activate()
        timing = {"h2d": 0.0, "inference": 0.0, "d2h": 0.0}
        return self._infer_chunks(feeds, timing), timing

    def _acquire(self) -> _Slot:
        slot = self._free.get()  # blocks while every slot is busy
        self._make_current()
        return slot

    def _infer_chunks(self, feeds: dict[str, np.ndarray], timing: dict[str, float] | None) -> dict[str, np.ndarray]:
        n = int(next(iter(feeds.values())).shape[0]) if feeds else 0
        if self.max_batch is None:
            chunks = None  # static batch: the engine's own shape check decides
        else:
            chunks = plan_batch_chunks(n, self.min_batch, self.max_batch)
        slot = self._acquire()
        try:
            if not chunks:
                return self._run(slot, feeds, timing)
            parts = []
            for c in chunks:
                part = {k: np.asarray(v)[c.start : c.stop] for k, v in feeds.items()}
                if c.pad:  # below the profile minimum: repeat the last row, drop its outputs
                    part = {k: np.concatenate([v, np.repeat(v[-1:], c.pad, axis=0)]) for k, v in part.items()}
                out = self._run(slot, part, timing)
                parts.append({k: v[: c.stop - c.start] if c.pad else v for k, v in out.items()})
        finally:
            self._free.put(slot)
        if len(parts) == 1:
            return parts[0]
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}

    def _run(self, slot: _Slot, feeds: dict[str, np.ndarray], timing: dict[str, float] | None) -> dict[str, np.ndarray]:
        if self.buffers == "torch":
            return self._run_torch_host(slot, feeds, timing)
        from ssdtrt.runtime.cuda_buffers import CudaEvent, DeviceBuffer, PinnedHostBuffer

        events = [CudaEvent(self._cudart) for _ in range(4)] if timing is not None else []
        try:
            host_in: dict[str, np.ndarray] = {}
            for name, (is_input, dtype) in self._io.items():
                if is_input and name in feeds:
                    # Pinned staging (samples/python/common_runtime.py HostDeviceMem: cudaMallocHost) keeps the
                    # cudaMemcpyAsync asynchronous; pageable numpy memory would make it synchronous.
                    src = np.asarray(feeds[name])
                    staged = slot.pinned.setdefault(name, PinnedHostBuffer(self._cudart)).array(src.shape, dtype)
                    staged[...] = src
                    host_in[name] = staged
            self._set_input_shapes(slot.context, {n: a.shape for n, a in host_in.items()})
            host_out: dict[str, np.ndarray] = {}
            if events:
                events[0].record(slot.stream)
            for name, (is_input, dtype) in self._io.items():
                buf = slot.device.setdefault(name, DeviceBuffer(self._cudart))
                if is_input:
                    ptr = buf.ensure(host_in[name].nbytes)
                    slot.stream.copy_to_device(ptr, host_in[name])
                else:
                    shape = self._output_shape(slot.context, name)
                    host_out[name] = slot.pinned.setdefault(name, PinnedHostBuffer(self._cudart)).array(shape, dtype)
                    ptr = buf.ensure(host_out[name].nbytes)
                self._bind(slot.context, name, ptr)
            if events:
                events[1].record(slot.stream)
            if not slot.context.execute_async_v3(slot.stream.ptr):
                raise BackendUnavailableError(f"{self.path}: TensorRT execution failed (see the TensorRT log above)")
            if events:
                events[2].record(slot.stream)
            for name, arr in host_out.items():
                slot.stream.copy_to_host(arr, slot.device[name].ptr)
            if events:
                events[3].record(slot.stream)
            slot.stream.synchronize()
            if timing is not None:
                for stage, (a, b) in zip(("h2d", "inference", "d2h"), zip(events, events[1:])):
                    timing[stage] += a.elapsed_ms(b)
            return {name: arr.copy() for name, arr in host_out.items()}  # the pinned buffers serve the next call
        finally:
            for event in events:
                event.destroy()

    # -- metadata --------------------------------------------------------------------------------------------------
    @property
    def input_names(self) -> list[str]:
        return [n for n, (inp, _) in self._io.items() if inp] or [t.name for t in self.manifest.inputs]

    def input_metadata(self) -> dict[str, TensorMeta]:
        meta = {t.name: TensorMeta(t.name, np.dtype(t.dtype), tuple(t.shape)) for t in self.manifest.inputs}
        if self._engine is None:
            return meta
        for name, (is_input, dtype) in self._io.items():
            if is_input:
                dims = tuple(int(d) for d in self._engine.get_tensor_shape(name))
                named = meta.get(name)
                shape = tuple(d if d >= 0 else (str(named.shape[i]) if named else "?") for i, d in enumerate(dims))
                meta[name] = TensorMeta(name, dtype, shape)
        return meta

    @classmethod
    def device_options(cls, device_index: int | None) -> dict[str, Any]:
        if device_index is None:
            raise BackendUnavailableError("TensorRT runs on a CUDA GPU; --device cpu is not possible for a .plan")
        return {"device_index": device_index}

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {**super().describe(), "buffers": self.buffers, "device_index": self.device_index,
                                "in_flight": self.in_flight}
        if self.gpu is not None:
            info.update(gpu_name=self.gpu.name, compute_capability=self.gpu.compute_capability)
        if self._trt is not None:
            info["tensorrt_version"] = self._trt.__version__
        info["built_with"] = {k: self.manifest.engine.get(k) for k in ("tensorrt_version", "gpu_name", "compute_capability")}
        return info
