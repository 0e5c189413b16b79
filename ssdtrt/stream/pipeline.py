"""The overlapped pipeline behind `Detector.stream`: read → preprocess → async infer → postprocess, in input order.

    feeder thread ──► decode pool ──► submit thread: batch + preprocess + runner.infer_async ──► caller: postprocess
                    (bounded: depth)                (bounded: in_flight requests pending)         → yield in order

Three things run at once on a CPU: image decoding (OpenCV, GIL released), the backend's own inference threads on
`in_flight` requests, and Python pre/postprocessing of the batches around them. Every queue is bounded, so memory
depends on `in_flight`, `batch_size` and `depth`, never on how many images go through. Results are the sequential
path's exactly: the same `Detector.preprocess` / `postprocess` run on the same batches, only interleaved in time.
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
    from concurrent.futures import Future

    from ssdtrt.inference.detector import Detector


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
    whose single-image request takes TARGET_REQUEST_MS or more, as `benchmark_app` runs, up to the Detector's
    `batch_size` for a small one, whose per-request Python cost would otherwise dominate).
    in_flight: requests pending at once
    (default `runner.optimal_in_flight()`). depth: decoded images read ahead. decode_workers: image decoding threads.
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
    future: Future[dict[str, np.ndarray]] | None = None
    real: int = 0  # good images in the batch (the rest of a static batch is zero padding)


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


def auto_batch(detector: Detector) -> int:
    """Images per request for a stream when nobody chose: 1 when a one-image request takes ONE_IMAGE_MS or more,
    else enough that one request carries TARGET_REQUEST_MS, at most `detector.batch_size` (what `detect` batches).
    Probed once per Detector with batch-1 requests on zeros and remembered (`detector.stream_batch`)."""
    if detector.stream_batch is not None:
        return detector.stream_batch
    batch = 1
    if detector.batch_size > 1:
        pre = detector.spec.preprocess
        feeds = {detector.input.name: np.zeros((1, 3, pre.height, pre.width), dtype=np.dtype(detector.input.dtype))}
        detector.runner.infer(feeds)
        samples_ms = []
        for _ in range(PROBE_REQUESTS):
            start = time.perf_counter()
            detector.runner.infer(feeds)
            samples_ms.append((time.perf_counter() - start) * 1e3)
        request_ms = min(samples_ms)  # the least disturbed sample: a noisy machine should not shrink the batch
        if request_ms < ONE_IMAGE_MS:
            batch = int(min(detector.batch_size, max(1, np.ceil(TARGET_REQUEST_MS / max(request_ms, 1e-3)))))
    detector.stream_batch = batch
    return batch


def resolved(detector: Detector, settings: StreamSettings) -> tuple[int, int, int]:
    """(batch_size, in_flight, depth) after filling the backend's defaults (the batch: the model's static batch,
    else `auto_batch`), on the activated runner (the probe and the optimal request count need it)."""
    detector.runner.activate()
    batch = settings.batch_size or detector.static_batch or auto_batch(detector)
    in_flight = settings.in_flight or max(1, detector.runner.optimal_in_flight())
    depth = settings.depth or max(2 * batch * in_flight, 4)
    return batch, in_flight, depth


def stream_detect(detector: Detector, inputs: Iterable[StreamInput], settings: StreamSettings | None = None) -> Iterator[StreamResult]:
    """Detections of every image / frame of `inputs` in input order, stages overlapped (see the module docstring)."""
    settings = settings or StreamSettings()
    batch, in_flight, depth = resolved(detector, settings)  # activates the runner
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
                    slot.future = _start(detector, slot, batch)
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
            yield from _finish(detector, value, settings.on_error)
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


def _start(detector: Detector, slot: _Slot, batch: int) -> Future[dict[str, np.ndarray]]:
    """Preprocess the slot's good images (zero-padded to a static batch) and start their inference."""
    images = [it.image_rgb for it in slot.items if it.ok]
    tensor = detector.preprocess(images)  # type: ignore[arg-type]
    if detector.static_batch and tensor.shape[0] < detector.static_batch:
        pad = np.zeros((detector.static_batch - tensor.shape[0], *tensor.shape[1:]), tensor.dtype)
        tensor = np.concatenate([tensor, pad])
    return detector.runner.infer_async({detector.input.name: tensor})


def _finish(detector: Detector, slot: _Slot, on_error: str) -> Iterator[StreamResult]:
    dets: list[Detections] = []
    if slot.future is not None:
        outputs = slot.future.result()
        outputs = {k: v[: slot.real] for k, v in outputs.items()}
        dets = detector.postprocess(outputs, [it.image_rgb.shape[:2] for it in slot.items if it.ok])  # type: ignore[union-attr]
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
