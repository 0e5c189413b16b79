"""The overlapped pipeline behind `Detector.stream`: read → preprocess → async infer → postprocess, in input order.

    feeder thread ──► decode pool ──► submit thread: batch + preprocess + runner.infer_async ──► caller: postprocess
                    (bounded: depth)                (bounded: in_flight requests pending)         → yield in order

Three things run at once on a CPU: image decoding (OpenCV, GIL released), the backend's own inference threads on
`in_flight` requests, and Python pre/postprocessing of the batches around them. Every queue is bounded, so memory
depends on `in_flight`, `batch_size` and `depth`, never on how many images go through. Results are the sequential
path's exactly: the same `preprocess` / `postprocess` run on the same batches, only interleaved in time.

The stream drives any `ssdtrt.inference.protocol.AsyncDetector` (a `Detector` is one): it preprocesses a batch,
submits it, postprocesses the outputs, and reads the target's static batch, batch cap, request count and one-image
request time — it never reaches into a runner or writes into the target.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ssdtrt.core.detections import Detections
from ssdtrt.core.errors import ImageReadError
from ssdtrt.io.images import InputItem
from ssdtrt.stream.reader import StreamInput, read_ordered

if TYPE_CHECKING:
    from ssdtrt.inference.protocol import AsyncDetector, PendingOutputs


@dataclass
class StreamResult:
    """One image (or video frame) out of the stream: its detections in pixels, or the error that stopped it.

    latency_ms: from the image entering the submit stage (decoded) to its detections being ready.
    """

    name: str
    image_rgb: np.ndarray | None
    detections: Detections | None
    error: ImageReadError | None = None
    path: Path | None = None
    frame: int | None = None
    latency_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class StreamSettings:
    """How a stream overlaps its stages; None = the backend's choice.

    batch_size: images per inference request (default: the model's static batch, else `auto_batch`: 1 for a model
    whose single-image request takes ONE_IMAGE_MS or more, as `benchmark_app` runs, up to the target's
    `batch_size` for a small one, whose per-request Python cost would otherwise dominate).
    in_flight: requests pending at once
    (default the target's `optimal_in_flight()`). depth: decoded images read ahead. decode_workers: image decoding threads.
    on_error: "raise" the first unreadable input's ImageReadError, or "yield" it as a result with `.error` set.
    """

    batch_size: int | None = None
    in_flight: int | None = None
    depth: int | None = None
    decode_workers: int = 2
    on_error: str = "raise"

    def __post_init__(self) -> None:
        for name in ("batch_size", "in_flight", "depth"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.decode_workers < 1:
            raise ValueError(f"decode_workers must be >= 1, got {self.decode_workers}")
        if self.on_error not in ("raise", "yield"):
            raise ValueError(f"on_error must be 'raise' or 'yield', not {self.on_error!r}")


@dataclass
class _Slot:
    """Consecutive items in input order; the good ones form one inference batch (`future`), errors ride along."""

    items: list[InputItem]
    started_s: list[float]
    future: PendingOutputs | None = None
    real: int = 0  # good images in the batch


#: A request should carry at least this much work, as timed by the probe (one synchronous request: inference on one
#: CPU stream plus the runner's copies): Python's per-request cost (hand-off, start, callback, future, the
#: postprocess's fixed part) is then small beside it. Measured on 2 cores (benchmarks/throughput/): the demo model
#: (OpenVINO INT8; probe 2.9-3.3 ms) streams 159 img/s at batch 1 and 769 at the batch 8 this picks;
#: SSD300-ResNet50 INT8 (probe 51-86 ms) keeps batch 1, as `benchmark_app` runs it.
TARGET_REQUEST_MS = 40.0
#: A model whose one-image request takes at least this long keeps 1 image per request (its per-request cost is
#: already small beside it; two regimes far apart keep the choice stable when the probe is noisy).
ONE_IMAGE_MS = 10.0
#: Timed batch-1 requests of the probe behind the automatic stream batch (after one untimed warm-up request).
PROBE_REQUESTS = 5


def auto_batch(target: AsyncDetector) -> int:
    """Images per request for a stream when nobody chose: 1 when a one-image request takes ONE_IMAGE_MS or more,
    else enough that one request carries TARGET_REQUEST_MS, at most `target.batch_size` (what `detect` batches).
    The one-image request time is probed once per target (`target.request_ms`, which remembers it)."""
    if target.batch_size <= 1:
        return 1
    request_ms = target.request_ms(PROBE_REQUESTS)
    if request_ms >= ONE_IMAGE_MS:
        return 1
    return int(min(target.batch_size, max(1, np.ceil(TARGET_REQUEST_MS / max(request_ms, 1e-3)))))


def resolved(target: AsyncDetector, settings: StreamSettings) -> tuple[int, int, int]:
    """(batch_size, in_flight, depth) after filling the backend's defaults (the batch: the model's static batch,
    else `auto_batch`), on the activated target (the probe and the optimal request count need it), which is then
    asked to fix its batch at that size (`AsyncDetector.fix_batch`)."""
    target.activate()
    batch = settings.batch_size or target.static_batch or auto_batch(target)
    target.fix_batch(batch)  # e.g. OpenVINO recompiles a dynamic batch at this size (faster in-graph stages)
    in_flight = settings.in_flight or max(1, target.optimal_in_flight())
    depth = settings.depth or max(2 * batch * in_flight, 4)
    return batch, in_flight, depth


def stream_detect(
    target: AsyncDetector, inputs: Iterable[StreamInput], settings: StreamSettings | None = None
) -> Iterator[StreamResult]:
    """Detections of every image / frame of `inputs` in input order, stages overlapped (see the module docstring)."""
    settings = settings or StreamSettings()
    batch, in_flight, depth = resolved(target, settings)  # activates the model
    slots: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=in_flight)
    stop = threading.Event()
    items = read_ordered(inputs, workers=settings.decode_workers, depth=depth)

    def put(message: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                slots.put(message, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def submit() -> None:
        try:
            for slot in _slots(items, batch):
                if slot.real:
                    slot.future = _start(target, slot)
                if not put(("slot", slot)):
                    return
            put(("end", None))
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
            put(("error", err))
        finally:
            items.close()  # type: ignore[attr-defined]  # stops the reader threads from this thread

    worker = threading.Thread(target=submit, name="ssdtrt-stream-submit", daemon=True)
    worker.start()
    try:
        while True:
            kind, value = slots.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield from _finish(target, value, settings.on_error)
    finally:
        stop.set()
        worker.join(timeout=30)
        _drain(slots)


def _slots(items: Iterator[InputItem], batch: int) -> Iterator[_Slot]:
    """Group items in order so that each slot carries `batch` good images (the last one may carry fewer)."""
    slot = _Slot([], [])
    for item in items:
        slot.items.append(item)
        slot.started_s.append(time.perf_counter())
        if item.ok:
            slot.real += 1
            if slot.real == batch:
                yield slot
                slot = _Slot([], [])
    if slot.items:
        yield slot


def _start(target: AsyncDetector, slot: _Slot) -> PendingOutputs:
    """Preprocess the slot's good images and start their inference (the target pads a static batch)."""
    images = [it.image_rgb for it in slot.items if it.ok]
    return target.submit(target.preprocess(images))  # type: ignore[arg-type]


def _finish(target: AsyncDetector, slot: _Slot, on_error: str) -> Iterator[StreamResult]:
    dets: list[Detections] = []
    if slot.future is not None:
        outputs = slot.future.result()
        dets = target.postprocess(outputs, [it.image_rgb.shape[:2] for it in slot.items if it.ok])  # type: ignore[union-attr]
    done = time.perf_counter()
    good = iter(dets)
    for item, started in zip(slot.items, slot.started_s):
        if not item.ok:
            if on_error == "raise":
                raise item.error  # type: ignore[misc]
            yield StreamResult(item.name, None, None, item.error, item.path, item.frame)
            continue
        yield StreamResult(item.name, item.image_rgb, next(good), None, item.path, item.frame, (done - started) * 1e3)


def _drain(slots: queue.Queue[tuple[str, Any]]) -> None:
    """Wait for requests still in flight after an early exit (the runner must not be torn down under them)."""
    while True:
        try:
            kind, value = slots.get_nowait()
        except queue.Empty:
            return
        if kind == "slot" and value.future is not None:
            try:
                value.future.result()
            except Exception:  # noqa: BLE001 - the caller has gone; nothing to report to
                pass
