"""The runner interface every backend implements (Polygraphy style), torch-free.

    with open_runner("export/model.onnx") as runner:      # activate() / deactivate()
        outputs = runner.infer({"images": batch})          # dict[str, np.ndarray]

A runner is created from an artifact and its manifest; it knows nothing about images or detections.
"""

from __future__ import annotations

import abc
import time
from concurrent.futures import Future
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np

from ssdtrt.manifest import Manifest, verify_artifact


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

    @property
    def name(self) -> str:
        return f"{self.backend}:{self.manifest.precision}"

    def activate(self) -> None:
        if not self.is_active:
            self._verify_artifact()
            self._activate()
            self.is_active = True

    def deactivate(self) -> None:
        if self.is_active:
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

    def optimal_in_flight(self) -> int:
        """How many `infer_async` requests are worth keeping in flight (1: no overlap by default)."""
        return 1

    def infer_async(self, feeds: dict[str, np.ndarray]) -> Future[dict[str, np.ndarray]]:
        """`infer` as a Future (default: computed now, in the caller's thread; backends that overlap override it)."""
        future: Future[dict[str, np.ndarray]] = Future()
        try:
            future.set_result(self.infer(feeds))
        except Exception as err:  # noqa: BLE001  (delivered through the future, as an executor would)
            future.set_exception(err)
        return future

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
