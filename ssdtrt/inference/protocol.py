"""The stage protocol of the one route from images to detections (torch-free; nothing here runs a model).

    images_rgb ──► Preprocessor ──► runner (Runner.infer / infer_async) ──► Postprocessor ──► pixel scaling
                   placement:                                              placement:
                   "host" | "engine"                                       "host-numpy" | "host-torch" | "engine"

A *placement* says where a stage's work happens. "host" / "host-numpy" / "host-torch": in this process (numpy, or
torch on a CPU / CUDA device). "engine": compiled into the model graph, so the host part is thin — an `nms` export
already ends in detections, and its Postprocessor only un-pads them (and applies a higher score threshold / fewer
detections than the graph's). A new placement is a new class that satisfies `Preprocessor` or `Postprocessor`, picked
from a manifest fact in `ssdtrt.preprocess.stages.preprocessor_for` / `ssdtrt.postprocess.stages.postprocessor_for`;
`Detector`, the stream, serving, eval, compare and the benches then use it unchanged.

`AsyncDetector` is what a scheduler (`ssdtrt.stream`) needs from a detector: preprocess a batch, submit it without
waiting, postprocess the outputs, plus the facts it sizes requests by. `ssdtrt.inference.detector.Detector`
provides it; the stream imports only this module, never the Detector.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from ssdtrt.core.config import PostprocessSpec
    from ssdtrt.core.detections import Detections
    from ssdtrt.runtime.base import TensorMeta

#: Where a preprocessing stage's work happens: all of it on the host, or part of it inside the engine graph
#: (e.g. an engine with a uint8 NHWC input that resizes nothing but normalizes and transposes itself).
PREPROCESS_PLACEMENTS: tuple[str, ...] = ("host", "engine")
#: Where a postprocessing stage's work happens: numpy on the host, torch (CPU or CUDA), or the engine graph.
POSTPROCESS_PLACEMENTS: tuple[str, ...] = ("host-numpy", "host-torch", "engine")


@runtime_checkable
class Preprocessor(Protocol):
    """Decoded HxWx3 uint8 RGB images of any sizes → one network input batch.

    placement: one of PREPROCESS_PLACEMENTS. input: the network input the batch is for (name, dtype, shape with a
    str for a dynamic dimension); the batch has that dtype and the shape with its first dimension = len(images).
    Pure: the same images give the same batch, whatever the batch they come in (no state between calls).
    """

    placement: str
    input: TensorMeta

    def __call__(self, images_rgb: Sequence[np.ndarray]) -> np.ndarray: ...


@runtime_checkable
class Postprocessor(Protocol):
    """The network outputs of a batch → one normalized `Detections` per image (xyxy in [0, 1], sorted by score).

    placement: one of POSTPROCESS_PLACEMENTS. settings: the postprocess settings it applies (after overrides).
    `outputs` is keyed by the export mode's roles (`ssdtrt.postprocess.settings.EXPORT_OUTPUTS`: raw locs/logits,
    decoded boxes/scores, nms num_detections/boxes/scores/labels), numpy arrays or (host-torch) torch tensors, first
    dimension = images. Returns numpy Detections without class names; pixels and names are added by the caller
    (`ssdtrt.inference.stages.ModelStages.postprocess`).
    """

    placement: str
    settings: PostprocessSpec

    def __call__(self, outputs: Mapping[str, Any]) -> list[Detections]: ...


class PendingOutputs(Protocol):
    """An inference request in flight: `result()` waits and returns its outputs (padding rows already dropped), or
    raises what the request raised."""

    def result(self, timeout: float | None = None) -> dict[str, Any]: ...


@runtime_checkable
class AsyncDetector(Protocol):
    """What a scheduler needs to overlap decoding, preprocessing, inference and postprocessing.

    static_batch: the model's fixed batch (None: dynamic); `submit` pads to it and drops the padding itself.
    batch_size: the most images per request the owner wants by default (`Detector(batch_size=...)`).
    activate(): open / verify the model now (idempotent), before any timing or request.
    fix_batch(batch): run every later request at exactly `batch` images when that is faster for the backend (then
    `static_batch` says so); True when it changed. A stream calls it once its batch is known.
    optimal_in_flight(): requests worth keeping pending at once on this runner.
    request_ms(requests): milliseconds of one single-image synchronous request (the least of `requests` timed ones),
    measured once per detector and remembered by it.
    preprocess(images) → batch; submit(batch) → PendingOutputs (returns at once, thread-safe);
    postprocess(outputs, image_sizes_hw) → Detections in pixels of each (height, width).
    """

    @property
    def static_batch(self) -> int | None: ...

    @property
    def batch_size(self) -> int: ...

    def activate(self) -> None: ...

    def fix_batch(self, batch: int) -> bool: ...

    def optimal_in_flight(self) -> int: ...

    def request_ms(self, requests: int = 5) -> float: ...

    def preprocess(self, images_rgb: Sequence[np.ndarray]) -> np.ndarray: ...

    def submit(self, batch: np.ndarray) -> PendingOutputs: ...

    def postprocess(self, outputs: Mapping[str, Any], image_sizes_hw: Sequence[tuple[int, int]]) -> list[Detections]: ...
