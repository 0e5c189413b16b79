"""The runner interface every backend implements (Polygraphy style), torch-free.

    with open_runner("export/model.onnx") as runner:      # activate() / deactivate()
        outputs = runner.infer({"images": batch})          # dict[str, np.ndarray]

A runner is created from an artifact and its manifest; it knows nothing about images or detections.
"""

from __future__ import annotations

import abc
import os
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np

from ssdtrt.core.manifest import Manifest, verify_artifact


@dataclass(frozen=True)
class TensorMeta:
    name: str
    dtype: np.dtype
    shape: tuple[int | str, ...]  # str = dynamic dimension


class Runner(abc.ABC):
    """Loads one model for one backend. `infer` takes and returns host numpy arrays keyed by tensor name."""

    backend: str = "abstract"
    #: check the artifact's sha256 against its manifest on activate (the size is always checked); `open_runner(...,
    #: verify_hash=False)` / CLI `--no-verify` turn the hash off
    verify_hash: bool = True

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.is_active = False
        self._async_pool: ThreadPoolExecutor | None = None
        self._async_lock = threading.Lock()

    @property
    def name(self) -> str:
        return f"{self.backend}:{self.manifest.precision}"

    @property
    def fixed_batch(self) -> int | None:
        """The static batch size of the input (from the manifest), or None for a dynamic batch."""
        dim = self.manifest.inputs[0].shape[0] if self.manifest.inputs else None
        return dim if isinstance(dim, int) else None

    #: The runner's constructor takes `performance_mode` ("latency" | "throughput") and `num_requests` (OpenVINO,
    #: ONNX Runtime); others overlap `infer_async` requests as they are.
    has_performance_mode: bool = False

    @classmethod
    def throughput_options(cls, num_requests: int | None = None) -> dict[str, Any]:
        """Constructor options that make this backend serve several requests at once (`open_runner(...,
        mode="throughput")`); `num_requests`: requests in flight, None = the backend's choice."""
        if not cls.has_performance_mode:
            return {}
        return {"performance_mode": "throughput", **({"num_requests": int(num_requests)} if num_requests else {})}

    def activate(self) -> None:
        if not self.is_active:
            self._verify_artifact()
            self._activate()
            self.is_active = True

    def deactivate(self) -> None:
        if self.is_active:
            self._shutdown_async()
            self._deactivate()
            self.is_active = False

    def __enter__(self) -> Runner:
        self.activate()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.deactivate()

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self.is_active:
            self.activate()
        return self._infer(feeds)

    def infer_timed(self, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """`infer` plus milliseconds per stage: {"inference"} on CPU backends (host memory throughout);
        GPU backends override it to split host-to-device, inference and device-to-host ("h2d", "d2h") with CUDA events.
        """
        start = time.perf_counter()
        outputs = self.infer(feeds)
        return outputs, {"inference": (time.perf_counter() - start) * 1e3}

    # ------------------------------------------------------------------------------------------ throughput mode
    def fix_batch(self, batch: int) -> bool:
        """Run every later request at exactly `batch` images when that makes this backend faster (callers then
        pad a short batch, as for a static-batch model). True when the runner changed; the default keeps its shapes."""
        return False

    def optimal_in_flight(self) -> int:
        """How many `infer_async` requests keep this backend busy (the default: one per pair of cores, at least 2 —
        one request computes while the next one's inputs are handed over). Backends override it with their own
        figure (OpenVINO's optimal number of infer requests, TensorRT's execution contexts)."""
        return max(2, (os.cpu_count() or 2) // 2)

    def infer_async(self, feeds: dict[str, np.ndarray]) -> Future[dict[str, np.ndarray]]:
        """Start `infer(feeds)` and return at once; the Future holds the outputs (or the exception).

        The default runs `_infer` on a pool of `optimal_in_flight()` threads: right for backends whose `infer`
        releases the GIL and may be called concurrently. Callers bound how many futures they keep pending.
        """
        if not self.is_active:
            self.activate()
        return self._pool().submit(self._infer, feeds)

    @classmethod
    def device_options(cls, device_index: int | None) -> dict[str, Any]:
        """Constructor options that put this runner on the CPU (None) or on CUDA device `device_index`; a device the
        backend cannot use is a BackendUnavailableError. Default: the backend's own choice (no option)."""
        return {}

    @classmethod
    def thread_options(cls, threads: int) -> dict[str, Any]:
        """Constructor options for `threads` intra-op CPU threads (default: none; torch's are set process-wide)."""
        return {}

    def run_saturated(self, feeds: dict[str, np.ndarray], in_flight: int, seconds: float) -> tuple[int, float]:
        """(requests completed, seconds) of this backend alone, `in_flight` requests kept busy for `seconds` on the
        same `feeds` — its bare throughput, without pre/postprocess (`ssdtrt bench throughput`). Default:
        `infer_async` futures; backends override `_run_saturated` with their own fastest loop."""
        if seconds <= 0:
            return 0, 0.0
        if not self.is_active:
            self.activate()
        return self._run_saturated(feeds, in_flight, seconds)

    def _run_saturated(self, feeds: dict[str, np.ndarray], in_flight: int, seconds: float) -> tuple[int, float]:
        pending: deque[Future[dict[str, np.ndarray]]] = deque()
        done = 0
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            if len(pending) >= in_flight:
                pending.popleft().result()
                done += 1
            pending.append(self.infer_async(feeds))
        for fut in pending:
            fut.result()
            done += 1
        return done, time.perf_counter() - start

    def _pool(self) -> ThreadPoolExecutor:
        with self._async_lock:
            if self._async_pool is None:
                self._async_pool = ThreadPoolExecutor(self.optimal_in_flight(), thread_name_prefix=f"ssdtrt-{self.backend}")
            return self._async_pool

    def _shutdown_async(self) -> None:
        """Wait for pending async requests and drop the pool (before `_deactivate` frees what they use)."""
        with self._async_lock:
            pool, self._async_pool = self._async_pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def _verify_artifact(self) -> None:
        """The file on disk is the one the manifest describes (ManifestError otherwise; see manifest.verify_artifact)."""
        path = getattr(self, "path", None)
        if path is not None:
            verify_artifact(self.manifest, path, verify_hash=self.verify_hash)

    @abc.abstractmethod
    def _activate(self) -> None: ...

    @abc.abstractmethod
    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def _deactivate(self) -> None:
        """Release sessions, engines, buffers (default: nothing to release)."""

    @abc.abstractmethod
    def input_metadata(self) -> dict[str, TensorMeta]: ...

    def describe(self) -> dict[str, Any]:
        """Backend details for reports (device, threads, precision)."""
        return {"backend": self.backend, "precision": self.manifest.precision}
