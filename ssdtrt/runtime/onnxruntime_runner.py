"""ONNX Runtime runner (torch-free): CPU EP everywhere, CUDA EP first where it is usable; reads the manifest.

    with OnnxRuntimeRunner("export/demo_nms.onnx") as runner:
        outputs = runner.infer({"images": batch})

Throughput mode (`performance_mode="throughput"`): `infer_async` runs several `session.run` calls at once on the one
session (ORT's `run` is thread-safe and releases the GIL). On the CPU each concurrent call then gets
cores / requests intra-op threads (1 on a 2-core machine: no spinning pool threads fighting over the cores), so the
requests use the cores side by side instead of all taking turns on every core.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ssdtrt.core.errors import BackendUnavailableError, ClassCountMismatchError, ManifestError
from ssdtrt.core.manifest import Manifest, read_manifest
from ssdtrt.runtime.base import Runner, TensorMeta

_ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int32)": np.int32,
    "tensor(int64)": np.int64, "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_,
}


def default_providers() -> list[str]:
    """CUDA EP first when onnxruntime has it and a device answers, then CPU (always)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    providers = ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available and _cuda_device_present():
        providers.insert(0, "CUDAExecutionProvider")
    return providers


def _cuda_device_present() -> bool:
    """onnxruntime-gpu lists the CUDA EP even on hosts without a GPU; look for a device node / driver first."""
    return Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia/version").exists()


class OnnxRuntimeRunner(Runner):
    """One ONNX model in one onnxruntime InferenceSession."""

    backend = "onnxruntime"
    has_performance_mode = True  # throughput: concurrent `run` calls on the one session (module docstring)

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        providers: Sequence[str] | None = None,
        intra_op_threads: int | None = None,
        inter_op_threads: int | None = None,
        performance_mode: str = "latency",
        num_requests: int | None = None,
        manifest: Manifest | None = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ManifestError(f"{self.path}: no such ONNX file")
        super().__init__(manifest if manifest is not None else read_manifest(self.path))
        if performance_mode not in ("latency", "throughput"):
            raise ValueError(f"performance_mode must be 'latency' or 'throughput', not {performance_mode!r}")
        if num_requests is not None and num_requests < 1:
            raise ValueError(f"num_requests must be >= 1, got {num_requests}")
        self._providers = list(providers) if providers is not None else None
        self.performance_mode = performance_mode
        self.num_requests = num_requests
        if performance_mode == "throughput" and intra_op_threads is None and not self._gpu_requested():
            intra_op_threads = max(1, (os.cpu_count() or 1) // self.optimal_in_flight())
        self.intra_op_threads = intra_op_threads
        self.inter_op_threads = inter_op_threads
        self._session: Any = None

    def _activate(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError as err:  # pragma: no cover - a hard dependency, but keep the message clear
            raise BackendUnavailableError("onnxruntime is not installed (pip install onnxruntime)") from err
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if self.intra_op_threads:
            opts.intra_op_num_threads = int(self.intra_op_threads)
        if self.inter_op_threads:
            opts.inter_op_num_threads = int(self.inter_op_threads)
        providers = self._providers or default_providers()
        try:
            self._session = ort.InferenceSession(str(self.path), opts, providers=providers,
                                                 disabled_optimizers=_disabled_optimizers(self.manifest))
        except Exception as err:  # noqa: BLE001 - ORT raises its own exception types
            raise ManifestError(f"{self.path}: onnxruntime cannot load it ({str(err).splitlines()[0]})") from err
        self._check_against_manifest()

    def _check_against_manifest(self) -> None:
        """The graph's class axis must agree with the manifest (a swapped or stale sidecar is caught here)."""
        outs = {o.name: o.shape for o in self._session.get_outputs()}
        for name in ("logits", "scores"):
            shape = outs.get(name)
            if shape is not None and len(shape) == 3 and isinstance(shape[2], int):
                if shape[2] != self.manifest.num_classes:
                    raise ClassCountMismatchError(
                        f"{self.path}: output {name!r} has {shape[2]} classes, its manifest says {self.manifest.num_classes}"
                    )
        expected = {t.name for t in self.manifest.outputs}
        if expected and expected != set(outs):
            raise ManifestError(f"{self.path}: outputs {sorted(outs)} disagree with the manifest's {sorted(expected)}")

    def _deactivate(self) -> None:
        self._session = None

    def _gpu_requested(self) -> bool:
        providers = self._providers if self._providers is not None else default_providers()
        return any((p[0] if isinstance(p, tuple) else p) != "CPUExecutionProvider" for p in providers)

    def optimal_in_flight(self) -> int:
        """Concurrent `run` calls that keep the session busy: `num_requests`, else in throughput mode one per core on
        the CPU (each with cores / requests intra-op threads) or 2 on a GPU provider (copy beside compute); in latency
        mode 1 request with every core (more would only contend for the same intra-op threads). At most 8 requests:
        beyond that each would get several threads anyway."""
        if self.num_requests:
            return int(self.num_requests)
        if self.performance_mode == "latency":
            return 1
        if self._gpu_requested():
            return 2
        return min(max(2, os.cpu_count() or 2), 8)

    @classmethod
    def device_options(cls, device_index: int | None) -> dict[str, Any]:
        cpu = ["CPUExecutionProvider"]
        return {"providers": cpu if device_index is None else [("CUDAExecutionProvider", {"device_id": device_index}), *cpu]}

    @classmethod
    def thread_options(cls, threads: int) -> dict[str, Any]:
        return {"intra_op_threads": int(threads)}

    def _run_saturated(self, feeds: dict[str, np.ndarray], in_flight: int, seconds: float) -> tuple[int, float]:
        """`in_flight` threads calling `infer` (ORT's `run`, GIL released) back to back on the one session."""
        counts = [0] * in_flight
        start = time.perf_counter()
        deadline = start + seconds

        def loop(i: int) -> None:
            while time.perf_counter() < deadline:
                self.infer(feeds)
                counts[i] += 1

        threads = [threading.Thread(target=loop, args=(i,), name=f"ssdtrt-bare-{i}") for i in range(in_flight)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sum(counts), time.perf_counter() - start

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [o.name for o in self._session.get_outputs()]
        results = self._session.run(names, feeds)
        return dict(zip(names, results))

    def input_metadata(self) -> dict[str, TensorMeta]:
        if self._session is None:
            return {t.name: TensorMeta(t.name, np.dtype(t.dtype), tuple(t.shape)) for t in self.manifest.inputs}
        return {
            i.name: TensorMeta(i.name, np.dtype(_ORT_TYPES.get(i.type, np.float32)), tuple(i.shape))
            for i in self._session.get_inputs()
        }

    @property
    def providers(self) -> list[str]:
        return list(self._session.get_providers()) if self._session is not None else list(self._providers or [])

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "providers": self.providers,
            "intra_op_threads": self.intra_op_threads,
            "inter_op_threads": self.inter_op_threads,
            "performance_mode": self.performance_mode,
            "in_flight": self.optimal_in_flight(),
            "export_mode": self.manifest.export_mode,
        }


def _disabled_optimizers(manifest: Manifest) -> list[str]:
    """ORT's WeightBiasQuantization int32-quantizes a float Conv bias by x_scale·w_scale. TensorRT keeps biases float,
    and so does this for every INT8 graph: with fp16 Q/DQ scales bias / scale overflows fp16 (demo model: logits mean
    error 0.35 instead of 0.055), and even with fp32 scales the rounded biases put a random ssd-small 27 dB of head
    SQNR away from the reference Q/DQ result (benchmarks/precision/fallback), as far as INT8 is from FP32."""
    return ["WeightBiasQuantization"] if manifest.precision == "int8" else []
