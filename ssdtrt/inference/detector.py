"""`Detector`: RGB images → preprocess → runner → postprocess → Detections in pixels of each original image.

    with Detector("export/model.onnx", score_threshold=0.3) as det:
        for d in det.detect(images_rgb):                 # list[Detections], boxes xyxy in pixels, with class names
            print(d.boxes, d.scores, d.names())

A runner (`ssdtrt.runtime`) plus the model's stages (`ssdtrt.inference.stages.ModelStages`: preprocess, a
postprocess with its placement, pixel scaling) and batching (`ssdtrt.inference.batching`); nothing else. The stages
are public (`preprocess`, `infer`, `postprocess`) so benchmarks can time each; `detect` composes them and records
`last_timings_ms`. It provides `ssdtrt.inference.protocol.AsyncDetector`, which `stream` hands to `ssdtrt.stream`.
Torch-free: torch is imported only for a host-torch postprocess (`postprocess_device="cuda"` or
`postprocess_placement="host-torch"`); with a CUDA postprocess and a runner that hands back device tensors (torch
runner, TensorRT with torch buffers) the postprocess reads the engine's outputs without a device-to-host copy.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from ssdtrt.core.config import ModelSpec, PostprocessSpec
from ssdtrt.core.detections import Detections
from ssdtrt.core.errors import BackendUnavailableError, ManifestError
from ssdtrt.core.manifest import Manifest
from ssdtrt.inference.batching import PaddedRequests, chunks, run_in_batches, static_batch_of
from ssdtrt.inference.stages import ModelStages
from ssdtrt.postprocess.settings import unappliable_message
from ssdtrt.runtime.base import Runner, TensorMeta


class Detector:
    """A model (path or Runner) plus everything around it: preprocess, batching, postprocess, pixel scaling.

    model: checkpoint `.pt`, `.onnx`, OpenVINO `.xml`, TensorRT `.plan` (opened with `ssdtrt.runtime.open_runner`,
    `backend` and `runner_options` passed on, e.g. `mode="throughput"`), or an already-built Runner (not deactivated
    by `close`).
    score_threshold / iou_threshold / max_detections: override the manifest's postprocess settings (None keeps them).
    For an `nms` export the NMS is in the graph: a higher score threshold or fewer detections are applied on its
    output; a lower threshold, another IoU or more detections cannot be (a warning says so).
    batch_size: images per runner call in `detect` (a static-batch model is fed in chunks of its own batch, padded).
    postprocess_device: "cpu" or "cuda[:i]" (torch on the GPU). postprocess_placement: "host-numpy", "host-torch" or
    "engine" (default: "engine" for an nms export, "host-torch" on a CUDA device, else "host-numpy").
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | Runner,
        *,
        backend: str | None = None,
        score_threshold: float | None = None,
        iou_threshold: float | None = None,
        max_detections: int | None = None,
        batch_size: int = 8,
        postprocess_device: str = "cpu",
        postprocess_placement: str | None = None,
        **runner_options: Any,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if postprocess_device != "cpu" and not postprocess_device.startswith("cuda"):
            raise ValueError(f"postprocess_device must be 'cpu' or 'cuda[:index]', not {postprocess_device!r}")
        if postprocess_device != "cpu":
            _require_cuda(postprocess_device)
        if isinstance(model, Runner):
            self.runner, self._owns_runner = model, False
        else:
            from ssdtrt.runtime import open_runner

            self.runner, self._owns_runner = open_runner(model, backend=backend, **runner_options), True
        meta = self.runner.input_metadata()
        if len(meta) != 1:
            raise ManifestError(f"expected a model with one image input, found inputs {sorted(meta)}")
        overrides = {"score_threshold": score_threshold, "iou_threshold": iou_threshold, "max_detections": max_detections}
        self.stages = ModelStages(self.runner.manifest, input_meta=next(iter(meta.values())), overrides=overrides,
                                  postprocess_placement=postprocess_placement, postprocess_device=postprocess_device)
        if self.stages.problems:
            warnings.warn(unappliable_message(self.stages.problems), stacklevel=2)
        self.batch_size = int(batch_size)
        self.postprocess_device = postprocess_device
        self.last_timings_ms: dict[str, float] = {}
        self._request_ms: float | None = None
        # GPU postprocess + a runner that can hand back device tensors (torch runner, TensorRT with torch buffers):
        # NMS then reads the engine's outputs in place, no device-to-host copy.
        self.device_outputs = (
            postprocess_device.startswith("cuda")
            and self.stages.postprocessor.placement == "host-torch"
            and callable(getattr(self.runner, "infer_torch", None))
            and getattr(self.runner, "buffers", "torch") == "torch"
        )

    # ------------------------------------------------------------------------------------------ model facts
    @property
    def manifest(self) -> Manifest:
        return self.runner.manifest

    @property
    def export_mode(self) -> str:
        return self.stages.export_mode

    @property
    def spec(self) -> ModelSpec:
        return self.stages.spec

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.stages.class_names

    @property
    def input(self) -> TensorMeta:
        return self.stages.input

    @property
    def settings(self) -> PostprocessSpec:
        """The postprocess settings in effect (assignable: `det.settings = replace(det.settings, ...)`)."""
        return self.stages.settings

    @settings.setter
    def settings(self, value: PostprocessSpec) -> None:
        self.stages.settings = value

    @property
    def baked_settings(self) -> PostprocessSpec:
        """The manifest's postprocess settings (what the export used or baked into an nms graph)."""
        return self.stages.baked_settings

    @property
    def static_batch(self) -> int | None:
        """The model's fixed batch (None: dynamic)."""
        return static_batch_of(self.input.shape)

    # ------------------------------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Detector:
        self.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def activate(self) -> None:
        """Open (and verify) the model now; idempotent."""
        self.runner.activate()

    def close(self) -> None:
        """Release the runner if this Detector opened it."""
        if self._owns_runner:
            self.runner.deactivate()

    # ------------------------------------------------------------------------------------------ stages
    def preprocess(self, images_rgb: Sequence[np.ndarray]) -> np.ndarray:
        """HxWx3 uint8 RGB images of any sizes → one input batch in the runner's input dtype."""
        return self.stages.preprocess(images_rgb)

    def infer(self, batch: np.ndarray) -> dict[str, Any]:
        """Run the runner on a batch of any size (split / zero-padded to a static batch; padding rows dropped).

        Host numpy arrays by name, or device torch tensors when `device_outputs` (GPU postprocess on them).
        """
        return self.infer_timed(batch)[0]

    def infer_timed(self, batch: np.ndarray) -> tuple[dict[str, Any], dict[str, float]]:
        """`infer` plus milliseconds per stage, summed over static-batch chunks: "inference", and on GPU runners
        "h2d" / "d2h" timed with CUDA events (what `ssdtrt bench latency` reports)."""
        stages: dict[str, float] = {}

        def run(rows: np.ndarray) -> dict[str, Any]:
            out, ms = self._run({self.input.name: rows})
            for stage, value in ms.items():
                stages[stage] = stages.get(stage, 0.0) + value
            return out

        return run_in_batches(batch, self.static_batch, run), stages

    def postprocess(self, outputs: Mapping[str, Any], image_sizes_hw: Sequence[tuple[int, int]]) -> list[Detections]:
        """Runner outputs → numpy Detections per image, boxes xyxy in pixels of (height, width) `image_sizes_hw`."""
        return self.stages.postprocess(outputs, image_sizes_hw)

    def detect(self, images_rgb: Sequence[np.ndarray]) -> list[Detections]:
        """Detections of every image, in order, in pixel coordinates (batches of `batch_size`)."""
        timings = {"preprocess": 0.0, "infer": 0.0, "postprocess": 0.0}
        results: list[Detections] = []
        for part in chunks(len(images_rgb), self.batch_size):
            chunk = images_rgb[part]
            t0 = time.perf_counter()
            batch = self.preprocess(chunk)
            t1 = time.perf_counter()
            outputs = self.infer(batch)
            t2 = time.perf_counter()
            results.extend(self.postprocess(outputs, [img.shape[:2] for img in chunk]))
            t3 = time.perf_counter()
            timings["preprocess"] += (t1 - t0) * 1e3
            timings["infer"] += (t2 - t1) * 1e3
            timings["postprocess"] += (t3 - t2) * 1e3
        self.last_timings_ms = timings
        return results

    # ------------------------------------------------------------------------------------------ AsyncDetector
    def submit(self, batch: np.ndarray) -> PaddedRequests:
        """Start inference of a preprocessed batch and return at once (`.result()`: its outputs, padding dropped)."""
        return PaddedRequests.start(batch, self.static_batch, lambda rows: self.runner.infer_async({self.input.name: rows}))

    def fix_batch(self, batch: int) -> bool:
        """Let the runner run every later request at exactly `batch` images if that is faster for it (OpenVINO
        under the THROUGHPUT hint recompiles a dynamic-batch model, see `OpenVINORunner.fix_batch`); `static_batch`
        then says so and shorter batches are padded. True when the runner changed."""
        if not self.runner.fix_batch(batch):
            return False
        self.stages.input = next(iter(self.runner.input_metadata().values()))
        return True

    def optimal_in_flight(self) -> int:
        """Requests worth keeping pending at once on this runner."""
        return max(1, self.runner.optimal_in_flight())

    def request_ms(self, requests: int = 5) -> float:
        """Milliseconds of one single-image synchronous request: the least of `requests` timed ones after one
        untimed warm-up (the least disturbed sample). Measured on the first call, then remembered."""
        if self._request_ms is None:
            pre = self.spec.preprocess
            feeds = {self.input.name: self.preprocess([np.zeros((pre.height, pre.width, 3), np.uint8)])}
            self.runner.infer(feeds)
            samples_ms = []
            for _ in range(max(1, requests)):
                start = time.perf_counter()
                self.runner.infer(feeds)
                samples_ms.append((time.perf_counter() - start) * 1e3)
            self._request_ms = min(samples_ms)
        return self._request_ms

    def stream(
        self,
        inputs: Iterable[Any],
        *,
        batch_size: int | None = None,
        in_flight: int | None = None,
        on_error: str = "raise",
    ) -> Iterator[Any]:
        """Throughput mode: `StreamResult`s (name, image_rgb, detections in pixels) for every decoded image, image
        path or video path (one per frame) of `inputs`, in input order, with decoding, preprocess, several inference
        requests and postprocess overlapped; memory bounded by the queue depth. See `ssdtrt.stream`.

        batch_size / in_flight: None = the backend's choice. on_error: "raise" or "yield" unreadable inputs.
        """
        from ssdtrt.stream import StreamSettings, stream_detect

        settings = StreamSettings(batch_size=batch_size, in_flight=in_flight, on_error=on_error)
        return stream_detect(self, inputs, settings)

    def describe(self) -> dict[str, Any]:
        """Settings for reports: backend, precision, export mode, effective postprocess and its placement."""
        return {
            **self.runner.describe(),
            "export_mode": self.export_mode,
            "batch_size": self.batch_size,
            "static_batch": self.static_batch,
            "postprocess_device": self.postprocess_device,
            "postprocess_placement": self.stages.postprocessor.placement,
            "postprocess": asdict(self.settings),
        }

    # ------------------------------------------------------------------------------------------ internals
    def _run(self, feeds: dict[str, np.ndarray]) -> tuple[dict[str, Any], dict[str, float]]:
        if not self.device_outputs:
            return self.runner.infer_timed(feeds)
        import torch

        start = time.perf_counter()
        out = self.runner.infer_torch({k: torch.from_numpy(v) for k, v in feeds.items()})  # type: ignore[attr-defined]
        torch.cuda.synchronize()
        return out, {"inference": (time.perf_counter() - start) * 1e3}


def _require_cuda(device: str) -> None:
    """GPU postprocess needs torch with a visible CUDA device: say so in one line instead of failing mid-run."""
    try:
        import torch
    except ImportError as err:
        raise BackendUnavailableError(
            f"postprocess on {device} needs torch with CUDA (pip install torch); use postprocess_device='cpu'"
        ) from err
    if not torch.cuda.is_available():
        raise BackendUnavailableError(f"postprocess on {device}: no CUDA GPU visible to torch (use the CPU)")
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise BackendUnavailableError(f"{device}: only {torch.cuda.device_count()} CUDA device(s) visible")
