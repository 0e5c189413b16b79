"""OpenVINO runner (torch-free): an OpenVINO IR (`.xml` + `.bin`) or an ONNX file compiled for a device (CPU).

    with OpenVINORunner("engines/model.xml", precision_hint="bf16") as runner:
        outputs = runner.infer({"images": batch})

Inference precision is a compile-time hint (`f32` or `bf16`); a Q/DQ ONNX runs its quantized layers in int8
whatever the hint. On a CPU without bf16 instructions OpenVINO keeps f32: `describe()` reports what it compiled to.

`performance_mode="throughput"` compiles with OpenVINO's THROUGHPUT hint (several CPU streams) and serves
`infer_async` from an `AsyncInferQueue` of the compiled model's optimal number of infer requests (what
`benchmark_app -hint throughput` does); the default LATENCY hint gives one request all cores.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

from ssdtrt.core.errors import BackendUnavailableError, ClassCountMismatchError, ManifestError
from ssdtrt.core.manifest import Manifest, read_manifest
from ssdtrt.runtime.base import Runner, TensorMeta

PRECISION_HINTS = ("f32", "bf16")
PERFORMANCE_MODES = ("latency", "throughput")
INSTALL_HINT = 'pip install "ssdtrt[openvino]" (or: pip install openvino)'


def import_openvino() -> Any:
    """The `openvino` module, or BackendUnavailableError with the install command."""
    try:
        import openvino as ov
    except ImportError as err:
        raise BackendUnavailableError(f"OpenVINO is not installed: {INSTALL_HINT}") from err
    return ov


_CORE: Any = None
_CORE_LOCK = threading.Lock()


def openvino_core() -> Any:
    """The process's one `ov.Core`, shared by every runner, build and graph edit of ssdtrt (created on first use).

    One Core, not one per use: OpenVINO's CPU plugin (2026.4), when a Core first compiles for CPU, installs its own
    signal alternate stack on that thread (`sigaltstack`) and, when that Core's plugin is destroyed, puts back the
    stack it found. Two Cores whose lifetimes overlap without nesting (A created, B created, A freed, B freed) leave
    the thread on A's freed stack; the next signal with a handler (e.g. torch DataLoader's SIGCHLD handler when a
    subprocess exits) cannot be delivered and the kernel kills the process with SIGSEGV (faulthandler cannot report
    it: its handler needs the same stack). With one Core the plugin is created once and lives until exit.
    Compile settings are passed per `compile_model` call, never set on the Core, so sharing it changes no result.
    """
    global _CORE
    with _CORE_LOCK:
        if _CORE is None:
            _CORE = import_openvino().Core()
        return _CORE


class OpenVINORunner(Runner):
    """One model compiled by OpenVINO for one device: one sync infer request, plus an AsyncInferQueue for
    `infer_async` (created on first use; `num_requests` or the compiled model's optimal number of requests)."""

    backend = "openvino"
    has_performance_mode = True  # throughput: the THROUGHPUT hint and an AsyncInferQueue (module docstring)

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        device: str = "CPU",
        precision_hint: str | None = None,
        num_threads: int | None = None,
        num_streams: int | None = None,
        performance_mode: str = "latency",
        num_requests: int | None = None,
        manifest: Manifest | None = None,
    ) -> None:
        self.path = Path(path)
        if self.path.suffix not in (".xml", ".onnx"):
            raise ManifestError(f"{self.path}: OpenVINO runs an IR (.xml) or an ONNX (.onnx) file")
        if not self.path.is_file():
            raise ManifestError(f"{self.path}: no such model file")
        if self.path.suffix == ".xml" and not self.path.with_suffix(".bin").is_file():
            raise ManifestError(f"{self.path}: its weights file {self.path.with_suffix('.bin').name} is missing")
        super().__init__(manifest if manifest is not None else read_manifest(self.path))
        if precision_hint is None:  # an engine built with a hint keeps it; anything else runs f32
            precision_hint = str(self.manifest.engine.get("precision_hint", "f32")) if self.manifest.kind == "openvino" else "f32"
        if precision_hint not in PRECISION_HINTS:
            raise ValueError(f"precision_hint must be one of {PRECISION_HINTS}, not {precision_hint!r}")
        if performance_mode not in PERFORMANCE_MODES:
            raise ValueError(f"performance_mode must be one of {PERFORMANCE_MODES}, not {performance_mode!r}")
        if num_requests is not None and num_requests < 1:
            raise ValueError(f"num_requests must be >= 1, got {num_requests}")
        self.device = device
        self.precision_hint = precision_hint
        self.performance_mode = performance_mode
        self.num_requests = num_requests
        self._queue: Any = None
        self._queue_lock = threading.Lock()
        self._pending: set[Future[dict[str, np.ndarray]]] = set()
        self.num_threads = num_threads
        self.num_streams = num_streams
        self._compiled: Any = None
        self._request: Any = None
        self._output_names: list[str] = []
        self._fixed_batch: int | None = None  # `fix_batch`: the dynamic batch compiled at this size
        self._input_ports: list[tuple[Any, str, list[int | None], str]] = []  # `_feed_problem`: read per compile

    def compile_config(self) -> dict[str, Any]:
        """The compile properties (keyed by OpenVINO property name) this runner passes to `compile_model`."""
        ov = import_openvino()
        props = ov.properties
        mode = props.hint.PerformanceMode.THROUGHPUT if self.performance_mode == "throughput" else props.hint.PerformanceMode.LATENCY
        config: dict[str, Any] = {
            props.hint.performance_mode(): mode,
            props.hint.inference_precision(): ov.Type.bf16 if self.precision_hint == "bf16" else ov.Type.f32,
        }
        if self.num_threads:
            config[props.inference_num_threads()] = int(self.num_threads)
        if self.num_streams:
            config[props.num_streams()] = int(self.num_streams)
        return config

    def _activate(self) -> None:
        core = openvino_core()
        try:
            model = core.read_model(str(self.path))
        except Exception as err:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses of its own
            raise ManifestError(f"{self.path}: OpenVINO cannot read it ({_first_line(err)})") from err
        if self._fixed_batch is not None:
            _reshape_batch(model, self._fixed_batch)
        try:
            self._compiled = core.compile_model(model, self.device, self.compile_config())
        except Exception as err:  # noqa: BLE001
            raise BackendUnavailableError(
                f"{self.path}: OpenVINO cannot compile it for {self.device} ({_first_line(err)})"
            ) from err
        expected = [t.name for t in self.manifest.outputs]
        self._output_names = output_port_names(self._compiled.outputs, expected)
        if expected and set(expected) != set(self._output_names):
            raise ManifestError(
                f"{self.path}: outputs {sorted(self._output_names)} disagree with the manifest's {sorted(expected)}"
            )
        self._check_class_count()
        self._request = self._compiled.create_infer_request()
        self._input_ports = [
            (port.get_names(), port.get_any_name(), [None if d.is_dynamic else d.get_length() for d in port.get_partial_shape()],
             str(port.get_partial_shape()))
            for port in self._compiled.inputs
        ]

    def _check_class_count(self) -> None:
        """The IR's class axis (NPC outputs) must agree with the manifest: a swapped or stale sidecar is caught here."""
        layouts = {t.name: t.layout for t in self.manifest.outputs}
        for port, name in zip(self._compiled.outputs, self._output_names):
            shape = port.get_partial_shape()
            if layouts.get(name) == "NPC" and shape.rank.get_length() == 3 and shape[2].is_static:
                if shape[2].get_length() != self.manifest.num_classes:
                    raise ClassCountMismatchError(
                        f"{self.path}: output {name!r} has {shape[2].get_length()} classes, its manifest says "
                        f"{self.manifest.num_classes}"
                    )

    def _deactivate(self) -> None:
        # wait on our own futures, not `AsyncInferQueue.wait_all()`: that one holds the GIL while the completion
        # callbacks need it (a deadlock once a callback is still running)
        with self._queue_lock:
            pending, self._pending = list(self._pending), set()
        for future in pending:
            try:
                future.result()
            except Exception:  # noqa: BLE001 - its caller sees the error; here we only wait for it to end
                pass
        self._queue = None
        self._request = None
        self._compiled = None
        self._input_ports = []

    # ------------------------------------------------------------------------------------------ throughput mode
    @classmethod
    def device_options(cls, device_index: int | None) -> dict[str, Any]:
        if device_index is not None:
            raise BackendUnavailableError("OpenVINO runs on the CPU here; use --device cpu (or TensorRT for CUDA)")
        return {"device": "CPU"}

    @classmethod
    def thread_options(cls, threads: int) -> dict[str, Any]:
        return {"num_threads": int(threads)}

    def _run_saturated(self, feeds: dict[str, np.ndarray], in_flight: int, seconds: float) -> tuple[int, float]:
        """benchmark_app's loop: an AsyncInferQueue on the compiled model, no callback, inputs shared."""
        ov = import_openvino()
        infer_queue = ov.AsyncInferQueue(self.compiled_model, in_flight)
        started = 0
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            infer_queue.start_async(feeds, share_inputs=True)  # blocks (GIL released) while every request is busy
            started += 1
        infer_queue.wait_all()  # no Python callback is registered, so this cannot wait on the GIL
        return started, time.perf_counter() - start

    def fix_batch(self, batch: int) -> bool:
        """Under the THROUGHPUT hint, recompile a dynamic-batch model at a fixed `batch` > 1 (a stream's batch).

        With static shapes the CPU plugin fuses an in-graph uint8 preprocess (convert, normalize, NHWC -> NCHW) into
        the first quantize and plans the appended DetectionOutput once: the demo model's INT8 engine with pre- and
        postprocess ran 0.80x -> 0.85x of its raw-heads network's bare throughput at 8 images (2-core EPYC,
        `benchmarks/latency/placement-variants.txt`). Batch 1 keeps the dynamic model (nothing to gain worth a
        recompile on a large network)."""
        if self.performance_mode != "throughput" or batch <= 1 or self._fixed_batch == batch:
            return False
        self.activate()
        if not self._compiled.inputs[0].get_partial_shape()[0].is_dynamic:
            return False
        self._deactivate()  # waits for requests in flight
        self._fixed_batch = int(batch)
        self._activate()
        return True

    def optimal_in_flight(self) -> int:
        """`num_requests` if given; else the compiled model's OPTIMAL_NUMBER_OF_INFER_REQUESTS under the LATENCY hint
        (1), and twice it under THROUGHPUT (one request per CPU stream computing, one queued behind it), so a stream
        has work while a finished request's completion callback waits for the GIL. Small once the batch is fixed:
        the demo stream ran 1627 -> 1634 img/s (198% -> 199% CPU; `benchmarks/latency/placement-variants.txt`);
        the recorded placement benchmarks ran with it."""
        if self.num_requests:
            return int(self.num_requests)
        if self._compiled is None:
            self.activate()
        optimal = max(1, int(self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        return 2 * optimal if self.performance_mode == "throughput" else optimal

    def infer_async(self, feeds: dict[str, np.ndarray]) -> Future[dict[str, np.ndarray]]:
        """Start a request on the AsyncInferQueue (blocks while every request is busy); the Future gets copies of
        the outputs from OpenVINO's completion callback, or its exception.

        The request reads contiguous inputs of the model's dtype in place (`share_inputs`: no copy of the batch; the
        arrays are held until the request is done): do not write into them before the Future is done."""
        if not self.is_active:
            self.activate()
        future: Future[dict[str, np.ndarray]] = Future()
        future.set_running_or_notify_cancel()
        inputs = {name: np.ascontiguousarray(arr) for name, arr in feeds.items()}
        problem = self._feed_problem(inputs)
        if problem is not None:  # a request failing inside OpenVINO never calls back: refuse it here instead
            future.set_exception(ValueError(f"{self.path}: {problem}"))
            return future
        with self._queue_lock:  # start_async is not meant for several submitting threads at once
            if self._queue is None:
                ov = import_openvino()
                self._queue = ov.AsyncInferQueue(self._compiled, self.optimal_in_flight())
                self._queue.set_callback(self._on_done)
            try:
                self._queue.start_async(inputs, (future, inputs), share_inputs=True)
            except Exception as err:  # noqa: BLE001 - wrong shapes / types surface as OpenVINO RuntimeErrors
                future.set_exception(err)
            else:
                self._pending.add(future)
                future.add_done_callback(self._pending.discard)
        return future

    def _feed_problem(self, inputs: dict[str, np.ndarray]) -> str | None:
        """Why OpenVINO would refuse these feeds (a missing input, a wrong rank or static dimension), or None; checked
        in Python against the ports' shapes read once per compile (OpenVINO's own shape objects cost ~0.1 ms a call)."""
        for names, name, dims, shown in self._input_ports:
            arr = next((inputs[n] for n in names if n in inputs), None)
            if arr is None:
                return f"no feed for input {name!r} (got {sorted(inputs)})"
            if len(arr.shape) != len(dims) or any(d is not None and d != s for d, s in zip(dims, arr.shape)):
                return f"input {name!r} has shape {tuple(arr.shape)}, the model takes {shown}"
        return None

    def _on_done(self, request: Any, userdata: tuple[Future[dict[str, np.ndarray]], Any]) -> None:
        future = userdata[0]  # userdata[1]: the shared inputs, held until now
        try:  # copies: the request's output memory is reused by its next run
            out = {name: np.array(request.get_output_tensor(i).data) for i, name in enumerate(self._output_names)}
        except Exception as err:  # noqa: BLE001
            future.set_exception(err)
        else:
            future.set_result(out)

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        inputs = {name: np.ascontiguousarray(arr) for name, arr in feeds.items()}
        self._request.infer(inputs)
        # copies: the request reuses its output memory on the next call
        return {name: np.array(self._request.get_output_tensor(i).data) for i, name in enumerate(self._output_names)}

    def input_metadata(self) -> dict[str, TensorMeta]:
        from_manifest = {t.name: TensorMeta(t.name, np.dtype(t.dtype), tuple(t.shape)) for t in self.manifest.inputs}
        if self._compiled is None:
            return from_manifest
        out: dict[str, TensorMeta] = {}
        for port in self._compiled.inputs:
            name = port.get_any_name()
            named = from_manifest.get(name)
            dims = tuple(
                d.get_length() if d.is_static else (str(named.shape[i]) if named is not None else "?")
                for i, d in enumerate(port.get_partial_shape())
            )
            out[name] = TensorMeta(name, np.dtype(port.get_element_type().to_dtype()), dims)
        return out

    @property
    def compiled_model(self) -> Any:
        """The `ov.CompiledModel` (activating the runner if needed): for tools that drive OpenVINO directly."""
        if self._compiled is None:
            self.activate()
        return self._compiled

    def layer_precisions(self) -> dict[str, dict[str, int]]:
        """Executed precision per layer type of the compiled model, e.g. {"Convolution": {"u8": 25}} for int8."""
        if self._compiled is None:
            self.activate()
        counts: dict[str, dict[str, int]] = {}
        for op in self._compiled.get_runtime_model().get_ops():
            info = op.get_rt_info()
            if "layerType" not in info or "runtimePrecision" not in info:
                continue
            layer, prec = info["layerType"].astype(str), info["runtimePrecision"].astype(str)
            counts.setdefault(layer, {}).setdefault(prec, 0)
            counts[layer][prec] += 1
        return counts

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            **super().describe(),
            "device": self.device,
            "precision_hint": self.precision_hint,
            "num_threads": self.num_threads,
            "num_streams": self.num_streams,
            "performance_mode": self.performance_mode,
            "export_mode": self.manifest.export_mode,
        }
        if self._compiled is not None:
            for key in ("INFERENCE_PRECISION_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS", "PERFORMANCE_HINT",
                        "OPTIMAL_NUMBER_OF_INFER_REQUESTS"):
                try:
                    value = self._compiled.get_property(key)
                except Exception:  # noqa: BLE001 - a device may not report every property
                    continue
                info[f"compiled_{key.lower()}"] = value.to_string() if hasattr(value, "to_string") else str(value)
        return info


def output_port_names(ports: Any, expected: list[str]) -> list[str]:
    """One name per output port: the expected (manifest) name among the port's tensor names, else any name.

    Compiling folds the Identity nodes that name the `nms` outputs, so a compiled port carries the graph-internal
    name too (e.g. {"num_detections", "nms/ReduceSum_28_o0"}) and `get_any_name()` may return either; looking the
    manifest name up in the port's name set is what `compiled.output(name)` does, and holds whatever OpenVINO merges.
    """
    wanted = set(expected)
    names: list[str] = []
    for port in ports:
        hits = wanted & set(port.get_names())
        names.append(hits.pop() if len(hits) == 1 else port.get_any_name())
    return names


def _reshape_batch(model: Any, batch: int) -> None:
    """Set the batch (first) dimension of the model's one image input; the other dimensions stay as they are."""
    port = model.inputs[0]
    dims = list(port.get_partial_shape())
    model.reshape({port.get_any_name(): [batch, *dims[1:]]})


def _first_line(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return lines[0][:200] if lines else type(err).__name__
