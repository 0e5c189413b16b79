"""`ssdtrt bench throughput`: images per second of the whole overlapped pipeline next to the backend's bare throughput.

    report = bench_throughput([Path("engines/model-int8.xml")], ThroughputSettings(seconds=20))
    report.results[0].ratio          # pipeline images/s ÷ the backend's own throughput on the same model

Per model, in one process and on one opened runner (throughput mode):
- bare: the backend alone on a random input of the model's shape, as many requests in flight as the pipeline uses
  (`Runner.run_saturated` — OpenVINO: an `AsyncInferQueue` loop without pre/post, what `benchmark_app -hint
  throughput` runs; ONNX Runtime: concurrent `run` calls on the session; others: `infer_async` futures in flight);
- pipeline: `Detector.stream` on decoded RGB images (cycled) → detections in pixels, with per-image latency;
- sequential (optional): `Detector.detect` batch by batch on a latency-mode runner — the pre-stream `detect` path.
Bare and pipeline alternate in `rounds` short rounds and the ratio is the median of the rounds' ratios, so machine
drift (30% on shared VMs, within a minute) hits both sides alike.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ssdtrt.bench.run_record import BenchRecord
from ssdtrt.core.errors import SSDTRTError

#: called with (model label, phase, seconds elapsed in the phase, planned seconds)
Progress = Callable[[str, str, float, float], None]


@dataclass(frozen=True)
class ThroughputSettings:
    """What every model is measured with (recorded in the JSON). None = the backend's choice."""

    seconds: float = 10.0  # timed seconds of the pipeline (and as many of bare), split over `rounds`
    warmup_seconds: float = 2.0
    rounds: int = 3  # alternations bare → pipeline; ratio = median of the per-round ratios
    requests: int | None = None  # inference requests in flight
    batch_size: int | None = None  # images per request
    backend: str | None = None
    sequential: bool = True  # also time the sequential detect path
    sequential_batch: int = 8
    data: str = "synthetic"
    num_images: int = 16  # distinct decoded images, cycled
    image_size_hw: tuple[int, int] | None = None
    verify_hash: bool = True  # check each model's sha256 against its manifest on open (the size is always checked)

    def __post_init__(self) -> None:
        if self.seconds <= 0 or self.warmup_seconds < 0:
            raise ValueError(f"seconds must be > 0 and warmup_seconds >= 0, got {self.seconds}, {self.warmup_seconds}")
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        for name in ("requests", "batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")


@dataclass
class ThroughputResult:
    model: str
    label: str
    backend: str
    precision: str
    images_per_second: float
    bare_images_per_second: float
    ratio: float
    latency_ms: dict[str, float]
    images: int
    sequential_images_per_second: float | None
    speedup_vs_sequential: float | None
    settings: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    rounds: list[dict[str, float]] = field(default_factory=list)  # per round: pipeline / bare images/s, ratio


@dataclass
class ThroughputReport(BenchRecord):
    settings: ThroughputSettings
    results: list[ThroughputResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.head_dict(),
            "results": [asdict(r) for r in self.results],
            "errors": self.errors,
        }


def bench_images(settings: ThroughputSettings) -> list[np.ndarray]:
    from ssdtrt.compare import load_images

    images = load_images(settings.data, settings.num_images)
    if settings.image_size_hw is not None:
        import cv2

        h, w = settings.image_size_hw
        images = [cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR) for img in images]
    return images


def bench_throughput(
    models: Sequence[Path], settings: ThroughputSettings, progress: Progress | None = None
) -> ThroughputReport:
    """Measure every model (a model that fails is recorded in `errors`, the others still run)."""
    from ssdtrt.bench.machine import machine_info

    images = bench_images(settings)
    report = ThroughputReport(settings, machine_info(), [tuple(img.shape[:2]) for img in images])
    for model in models:
        try:
            report.results.append(measure_model(model, images, settings, progress))
        except SSDTRTError as err:
            report.errors.append(str(err) if str(model) in str(err) else f"{model}: {err}")
    return report


def measure_model(
    model: Path, images: Sequence[np.ndarray], settings: ThroughputSettings, progress: Progress | None = None
) -> ThroughputResult:
    from ssdtrt.inference.detector import Detector
    from ssdtrt.runtime import backend_for
    from ssdtrt.stream import StreamSettings
    from ssdtrt.stream.pipeline import resolved

    backend = backend_for(model, settings.backend)[1]
    with contextlib.ExitStack() as stack:
        det = stack.enter_context(Detector(model, backend=backend, verify_hash=settings.verify_hash, mode="throughput",
                                           requests=settings.requests))
        label = f"{det.runner.name} · {model.name}"
        stream_settings = StreamSettings(batch_size=settings.batch_size, in_flight=settings.requests)
        batch, in_flight, _ = resolved(det, stream_settings)
        bare_context, reference = reference_runner(det, model, backend, settings)
        bare_runner = stack.enter_context(bare_context)
        feeds = random_feeds(bare_runner, det.static_batch or batch)
        tick = (lambda phase, t, total: progress(label, phase, t, total)) if progress else None  # noqa: E731
        per_round = settings.seconds / settings.rounds
        bare_run(bare_runner, feeds, in_flight, settings.warmup_seconds, None)  # warm-up of the backend alone
        _warm_pipeline(det, images, stream_settings, settings.warmup_seconds)
        rounds: list[dict[str, float]] = []
        latencies: list[float] = []
        for r in range(settings.rounds):
            done_s = r * per_round
            n, t = bare_run(bare_runner, feeds, in_flight, per_round,
                            tick and (lambda t, d=done_s: tick("bare", d + t, settings.seconds)))
            count, elapsed, lat = pipeline_run(
                det, images, stream_settings, settings, tick and (lambda ph, t, _, d=done_s: tick(ph, d + t, settings.seconds)),
                seconds=per_round, warmup=False,
            )
            latencies += lat
            rounds.append({"pipeline_images_per_second": count / elapsed, "bare_images_per_second": n * batch / t,
                           "ratio": (count / elapsed) / (n * batch / t), "pipeline_images": count,
                           "pipeline_s": elapsed, "bare_images": n * batch, "bare_s": t})
        runner_info = det.runner.describe()
    bare_ips = sum(r["bare_images"] for r in rounds) / sum(r["bare_s"] for r in rounds)
    ips = sum(r["pipeline_images"] for r in rounds) / sum(r["pipeline_s"] for r in rounds)
    ratio = float(np.median([r["ratio"] for r in rounds]))
    seq_ips = sequential_run(model, backend, images, settings, tick) if settings.sequential else None
    p50, p90, p99 = np.percentile(np.asarray(latencies), [50, 90, 99])
    return ThroughputResult(
        model=str(model), label=label, backend=backend, precision=str(runner_info.get("precision")),
        images_per_second=ips, bare_images_per_second=bare_ips, ratio=ratio, rounds=rounds,
        latency_ms={"p50": float(p50), "p90": float(p90), "p99": float(p99)}, images=len(latencies),
        sequential_images_per_second=seq_ips, speedup_vs_sequential=(ips / seq_ips) if seq_ips else None,
        settings={"batch_size": batch, "requests": in_flight, "runner": runner_info, "bare_reference": reference,
                  "sequential_batch": settings.sequential_batch if settings.sequential else None},
    )


def reference_runner(det: Any, model: Path, backend: str, settings: ThroughputSettings) -> tuple[Any, str]:
    """(context manager giving the runner the bare loop times, what it is): for a model with pre/postprocessing compiled in (an OpenVINO
    build with `--postprocess engine` / `--input uint8-nhwc`, `engine["reference_ir"]` beside it) the raw-heads IR
    of the same network — the ratio then says what the pipeline gains, not a shrunken denominator — else the same
    model (a runner that is already open: entering it again is a no-op)."""
    from ssdtrt.runtime import open_runner

    name = det.manifest.engine.get("reference_ir")
    if not name:
        return _NoClose(det.runner), "same model"
    path = Path(model).with_name(str(name))
    runner = open_runner(path, backend, mode="throughput", requests=settings.requests, verify_hash=settings.verify_hash)
    return runner, f"raw-heads IR {path.name}"


class _NoClose:
    """Context manager around a runner someone else closes."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner

    def __enter__(self) -> Any:
        return self.runner

    def __exit__(self, *exc: object) -> None:
        return None


def random_feeds(runner: Any, batch: int) -> dict[str, np.ndarray]:
    """A random input of the runner's one image input with `batch` rows (uint8 inputs get uint8 pixels)."""
    runner.activate()
    meta = next(iter(runner.input_metadata().values()))
    shape = (batch, *(int(d) for d in meta.shape[1:]))
    rng = np.random.default_rng(0)
    if np.dtype(meta.dtype) == np.uint8:
        return {meta.name: rng.integers(0, 256, size=shape, dtype=np.uint8)}
    return {meta.name: rng.normal(size=shape).astype(meta.dtype)}


def _cycle_until(images: Sequence[np.ndarray], deadline: float) -> Iterator[np.ndarray]:
    i = 0
    while time.perf_counter() < deadline:
        yield images[i % len(images)]
        i += 1


def _warm_pipeline(det: Any, images: Sequence[np.ndarray], stream_settings: Any, seconds: float) -> None:
    from ssdtrt.stream import stream_detect

    for _ in stream_detect(det, _cycle_until(images, time.perf_counter() + seconds), stream_settings):
        pass


def pipeline_run(
    det: Any, images: Sequence[np.ndarray], stream_settings: Any, settings: ThroughputSettings, tick: Any,
    *, seconds: float | None = None, warmup: bool = True,
) -> tuple[int, float, list[float]]:
    """(images done, seconds, per-image latency ms) of `Detector.stream` fed for `seconds` (default
    `settings.seconds`), after a `settings.warmup_seconds` warm-up stream unless `warmup` is False."""
    from ssdtrt.stream import stream_detect

    seconds = settings.seconds if seconds is None else seconds
    if warmup:
        _warm_pipeline(det, images, stream_settings, settings.warmup_seconds)
    gc.collect()
    latencies: list[float] = []
    start = time.perf_counter()
    last = start
    for result in stream_detect(det, _cycle_until(images, start + seconds), stream_settings):
        latencies.append(result.latency_ms)
        now = time.perf_counter()
        if tick is not None and now - last > 0.5:
            tick("pipeline", now - start, seconds)
            last = now
    if not latencies:
        raise SSDTRTError(f"no image went through the pipeline in {seconds} s")
    return len(latencies), time.perf_counter() - start, latencies


def bare_run(runner: Any, feeds: dict[str, np.ndarray], in_flight: int, seconds: float, tick: Any) -> tuple[int, float]:
    """(requests completed, seconds) of the backend alone with `in_flight` requests kept busy for `seconds`
    (`Runner.run_saturated`: each backend's own fastest loop, e.g. OpenVINO's AsyncInferQueue)."""
    return runner.run_saturated(feeds, in_flight, seconds)


def sequential_run(
    model: Path, backend: str, images: Sequence[np.ndarray], settings: ThroughputSettings, tick: Any
) -> float:
    """Images/s of `Detector.detect` batch after batch on a latency-mode runner (the `detect --sequential` path)."""
    from ssdtrt.inference.detector import Detector

    bs = settings.sequential_batch
    chunks = [[images[(i * bs + j) % len(images)] for j in range(bs)] for i in range(max(1, len(images) // bs))]
    with Detector(model, backend=backend, batch_size=bs, verify_hash=settings.verify_hash) as det:
        warm_end = time.perf_counter() + settings.warmup_seconds
        det.detect(chunks[0])
        while time.perf_counter() < warm_end:
            det.detect(chunks[0])
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < settings.seconds:
            det.detect(chunks[done % len(chunks)])
            done += 1
            if tick is not None:
                tick("sequential", time.perf_counter() - start, settings.seconds)
        return done * bs / (time.perf_counter() - start)
