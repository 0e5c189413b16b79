"""TensorRT runner (10.x / 11.x API): a serialized `.plan` + its manifest, I/O by tensor name, a non-default stream.

    with TensorRTRunner("engines/model.plan") as runner:                 # cuda-python device buffers, no torch
        outputs = runner.infer({"images": batch})
    with TensorRTRunner("engines/model.plan", buffers="torch") as runner:
        heads = runner.infer_torch({"images": cuda_batch})                # CUDA tensors in and out: zero copies

Before deserializing, the manifest's TensorRT version and GPU are checked against this host: a plan runs only on the
TensorRT version and GPU architecture it was built for unless built version-compatible (then a same-major, newer
TensorRT may run it) or with a hardware compatibility level.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ssdtrt.errors import BackendUnavailableError, IncompatibleEngineError, ManifestError
from ssdtrt.manifest import Manifest, read_manifest
from ssdtrt.runtime.base import Runner, TensorMeta
from ssdtrt.runtime.cuda_buffers import TRT_INSTALL_HINT, GpuInfo, gpu_info

BUFFER_KINDS = ("cuda-python", "torch")
PLAN_SUFFIXES = (".plan", ".engine")


def import_tensorrt() -> Any:
    """The `tensorrt` module, or BackendUnavailableError with the install command."""
    try:
        import tensorrt as trt
    except ImportError as err:
        raise BackendUnavailableError(f"TensorRT is not installed: {TRT_INSTALL_HINT}") from err
    if not hasattr(trt, "Runtime"):  # the PyPI placeholder package without NVIDIA's wheels behind it
        raise BackendUnavailableError(f"the installed 'tensorrt' package is a placeholder: {TRT_INSTALL_HINT}")
    return trt


def _version_tuple(version: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in str(version).split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def check_engine_compatibility(manifest: Manifest, trt_version: str, gpu: GpuInfo, where: str = "engine") -> None:
    """Raise IncompatibleEngineError when this TensorRT version or GPU cannot run the engine the manifest describes."""
    eng = manifest.engine
    built = str(eng.get("tensorrt_version", ""))
    if not built:
        raise ManifestError(f"{where}: the manifest records no TensorRT version (not built by `ssdtrt build-engine`?)")
    built_gpu = f"{eng.get('gpu_name', '?')} (compute capability {eng.get('compute_capability', '?')})"
    rebuild = "rebuild it on this machine with `ssdtrt build-engine`"
    b, r = _version_tuple(built), _version_tuple(trt_version)
    if eng.get("version_compatible"):
        if r[0] != b[0] or r < b:
            raise IncompatibleEngineError(
                f"{where}: built version-compatible with TensorRT {built}; it runs on TensorRT {b[0]}.x >= {built}, "
                f"this host has {trt_version} — {rebuild}"
            )
    elif r != b:
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


class TensorRTRunner(Runner):
    """One deserialized TensorRT engine and execution context on one GPU."""

    backend = "tensorrt"

    def __init__(
        self,
        plan_path: str | os.PathLike[str],
        *,
        buffers: str = "cuda-python",
        device_index: int = 0,
        manifest: Manifest | None = None,
    ) -> None:
        self.path = Path(plan_path)
        if self.path.suffix not in PLAN_SUFFIXES:
            raise ManifestError(f"{self.path}: a TensorRT engine file ends in {' or '.join(PLAN_SUFFIXES)}")
        if not self.path.is_file():
            raise ManifestError(f"{self.path}: no such engine file")
        if buffers not in BUFFER_KINDS:
            raise ValueError(f"buffers must be one of {BUFFER_KINDS}, not {buffers!r}")
        super().__init__(manifest if manifest is not None else read_manifest(self.path))
        if self.manifest.kind != "tensorrt":
            raise ManifestError(f"{self.path}: its manifest describes a {self.manifest.kind!r} artifact, not a TensorRT engine")
        self.buffers = buffers
        self.device_index = device_index
        self.gpu: GpuInfo | None = None
        self._trt: Any = None
        self._cudart: Any = None
        self._engine: Any = None
        self._context: Any = None
        self._runtime: Any = None
        self._stream: Any = None
        self._device_buffers: dict[str, Any] = {}
        self._io: dict[str, tuple[bool, np.dtype]] = {}  # name -> (is_input, dtype)

    # -- lifecycle -------------------------------------------------------------------------------------------------
    def _activate(self) -> None:
        trt = import_tensorrt()
        if self.buffers == "cuda-python":
            from ssdtrt.runtime.cuda_buffers import CudaStream, import_cudart

            cudart = import_cudart()
            self.gpu = gpu_info(self.device_index)
            self._cudart = cudart
            stream_factory = lambda: CudaStream(cudart)  # noqa: E731
        else:
            torch = _import_torch_cuda()
            self.gpu = gpu_info(self.device_index)
            torch.cuda.set_device(self.device_index)
            stream_factory = lambda: torch.cuda.Stream(device=self.device_index)  # noqa: E731
        check_engine_compatibility(self.manifest, trt.__version__, self.gpu, where=str(self.path))
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        if self.manifest.engine.get("version_compatible"):
            runtime.engine_host_code_allowed = True  # version-compatible plans embed the lean runtime
        engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise IncompatibleEngineError(
                f"{self.path}: TensorRT {trt.__version__} could not deserialize it (corrupt file, or built for another "
                f"TensorRT/GPU: manifest says TensorRT {self.manifest.engine.get('tensorrt_version')} on "
                f"{self.manifest.engine.get('gpu_name')}) — rebuild it with `ssdtrt build-engine`"
            )
        context = engine.create_execution_context()
        if context is None:
            raise BackendUnavailableError(f"{self.path}: TensorRT could not create an execution context (GPU memory?)")
        self._trt, self._runtime, self._engine, self._context = trt, runtime, engine, context
        self._io = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            self._io[name] = (is_input, np.dtype(trt.nptype(engine.get_tensor_dtype(name))))
        self._check_io_names()
        self._stream = stream_factory()

    def _check_io_names(self) -> None:
        engine_names = set(self._io)
        manifest_names = {t.name for t in self.manifest.inputs} | {t.name for t in self.manifest.outputs}
        if engine_names != manifest_names:
            raise ManifestError(f"{self.path}: engine tensors {sorted(engine_names)} disagree with the manifest's {sorted(manifest_names)}")

    def _deactivate(self) -> None:
        for buf in self._device_buffers.values():
            buf.free()
        self._device_buffers = {}
        if self.buffers == "cuda-python" and self._stream is not None:
            self._stream.destroy()
        self._stream = None
        self._context = None  # the context before the engine, the engine before the runtime
        self._engine = None
        self._runtime = None

    # -- inference -------------------------------------------------------------------------------------------------
    def _set_input_shapes(self, shapes: dict[str, tuple[int, ...]]) -> None:
        for name, (is_input, _) in self._io.items():
            if not is_input:
                continue
            if name not in shapes:
                raise KeyError(f"missing input {name!r} (the engine takes {self.input_names})")
            if not self._context.set_input_shape(name, tuple(int(d) for d in shapes[name])):
                profile = self.manifest.engine.get("profile", {}).get(name)
                raise ValueError(f"input {name!r} shape {tuple(shapes[name])} is outside the engine's profile {profile}")

    def _output_shape(self, name: str) -> tuple[int, ...]:
        shape = tuple(int(d) for d in self._context.get_tensor_shape(name))
        if any(d < 0 for d in shape):
            raise ManifestError(f"{self.path}: output {name!r} has a data-dependent shape {shape}; export fixed-size outputs")
        return shape

    @property
    def max_batch(self) -> int | None:
        """The largest batch of the engine's optimization profile (None: static batch or no profile recorded)."""
        maxima = [int(p["max"][0]) for p in self.manifest.engine.get("profile", {}).values() if p["min"] != p["max"]]
        return min(maxima) if maxima else None

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Host arrays in and out; a batch above the profile's maximum runs in chunks of that maximum."""
        return self._infer_chunks(feeds, None)

    def infer_timed(self, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """`infer` with CUDA-event times of the host-to-device copy, the engine and the device-to-host copy (ms)."""
        if not self.is_active:
            self.activate()
        timing = {"h2d": 0.0, "inference": 0.0, "d2h": 0.0}
        return self._infer_chunks(feeds, timing), timing

    def _infer_chunks(self, feeds: dict[str, np.ndarray], timing: dict[str, float] | None) -> dict[str, np.ndarray]:
        limit = self.max_batch
        n = int(next(iter(feeds.values())).shape[0]) if feeds else 0
        if limit is None or n <= limit:
            return self._infer_once(feeds, timing)
        parts = [self._infer_once({k: v[s : s + limit] for k, v in feeds.items()}, timing) for s in range(0, n, limit)]
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}

    def _infer_once(self, feeds: dict[str, np.ndarray], timing: dict[str, float] | None = None) -> dict[str, np.ndarray]:
        if self.buffers == "torch":
            return self._infer_once_torch(feeds, timing)
        from ssdtrt.runtime.cuda_buffers import CudaEvent, DeviceBuffer

        events = [CudaEvent(self._cudart) for _ in range(4)] if timing is not None else []
        try:
            host_in = {n: np.ascontiguousarray(feeds[n], dtype=dt) for n, (inp, dt) in self._io.items() if inp and n in feeds}
            self._set_input_shapes({n: a.shape for n, a in host_in.items()})
            host_out: dict[str, np.ndarray] = {}
            if events:
                events[0].record(self._stream)
            for name, (is_input, dtype) in self._io.items():
                buf = self._device_buffers.setdefault(name, DeviceBuffer(self._cudart))
                if is_input:
                    ptr = buf.ensure(host_in[name].nbytes)
                    self._stream.copy_to_device(ptr, host_in[name])
                else:
                    host_out[name] = np.empty(self._output_shape(name), dtype)
                    ptr = buf.ensure(host_out[name].nbytes)
                self._context.set_tensor_address(name, ptr)
            if events:
                events[1].record(self._stream)
            if not self._context.execute_async_v3(self._stream.ptr):
                raise BackendUnavailableError(f"{self.path}: TensorRT execution failed (see the TensorRT log above)")
            if events:
                events[2].record(self._stream)
            for name, arr in host_out.items():
                self._stream.copy_to_host(arr, self._device_buffers[name].ptr)
            if events:
                events[3].record(self._stream)
            self._stream.synchronize()  # host_in stays referenced until here
            if timing is not None:
                for stage, (a, b) in zip(("h2d", "inference", "d2h"), zip(events, events[1:])):
                    timing[stage] += a.elapsed_ms(b)
            return host_out
        finally:
            for event in events:
                event.destroy()

    def _infer_once_torch(self, feeds: dict[str, np.ndarray], timing: dict[str, float] | None) -> dict[str, np.ndarray]:
        torch = _import_torch_cuda()
        dev = f"cuda:{self.device_index}"
        events = [torch.cuda.Event(enable_timing=True) for _ in range(4)] if timing is not None else []
        if events:
            events[0].record()
        inputs = {k: torch.from_numpy(np.ascontiguousarray(v)).to(dev) for k, v in feeds.items()}
        if events:
            events[1].record()
        out = self.infer_torch(inputs)
        if events:
            events[2].record()
        host = {k: v.cpu().numpy() for k, v in out.items()}
        if events:
            events[3].record()
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
        torch = _import_torch_cuda()
        dev = torch.device(f"cuda:{self.device_index}")
        to_torch = {np.dtype(np.float32): torch.float32, np.dtype(np.float16): torch.float16,
                    np.dtype(np.int32): torch.int32, np.dtype(np.int64): torch.int64, np.dtype(np.int8): torch.int8,
                    np.dtype(np.bool_): torch.bool, np.dtype(np.uint8): torch.uint8}
        inputs = {
            n: feeds[n].to(device=dev, dtype=to_torch[dt]).contiguous()
            for n, (inp, dt) in self._io.items() if inp
        }
        self._set_input_shapes({n: tuple(t.shape) for n, t in inputs.items()})
        outputs = {
            n: torch.empty(self._output_shape(n), dtype=to_torch[dt], device=dev)
            for n, (inp, dt) in self._io.items() if not inp
        }
        for name, tensor in {**inputs, **outputs}.items():
            self._context.set_tensor_address(name, tensor.data_ptr())
        current = torch.cuda.current_stream(dev)
        self._stream.wait_stream(current)
        if not self._context.execute_async_v3(self._stream.cuda_stream):
            raise BackendUnavailableError(f"{self.path}: TensorRT execution failed (see the TensorRT log above)")
        current.wait_stream(self._stream)
        for tensor in (*inputs.values(), *outputs.values()):
            tensor.record_stream(self._stream)  # the caching allocator must not reuse them before the engine is done
        return outputs

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

    @property
    def fixed_batch(self) -> int | None:
        """The static batch size of the input, or None for a dynamic batch (as `OnnxRuntimeRunner.fixed_batch`)."""
        dim = self.manifest.inputs[0].shape[0]
        return dim if isinstance(dim, int) else None

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {**super().describe(), "buffers": self.buffers, "device_index": self.device_index}
        if self.gpu is not None:
            info.update(gpu_name=self.gpu.name, compute_capability=self.gpu.compute_capability)
        if self._trt is not None:
            info["tensorrt_version"] = self._trt.__version__
        info["built_with"] = {k: self.manifest.engine.get(k) for k in ("tensorrt_version", "gpu_name", "compute_capability")}
        return info


def _import_torch_cuda() -> Any:
    try:
        import torch
    except ImportError as err:
        raise BackendUnavailableError("buffers='torch' needs PyTorch with CUDA (or use buffers='cuda-python')") from err
    if not torch.cuda.is_available():
        raise BackendUnavailableError("buffers='torch' needs a CUDA GPU, torch sees none")
    return torch
