"""`ssdtrt bench latency`: every backend × precision × batch size through the same Detector pipeline, per stage.

    report = bench_models([Path("model.pt"), Path("model-raw.onnx")], LatencySettings(batch_sizes=(1, 8)))
    report.results[0].stages["e2e"].p50        # ms, decoded RGB images in, detections in pixels out

Each iteration runs preprocess → (host-to-device) → inference → (device-to-host) → postprocess on the same images
and times every stage (perf_counter on the host; CUDA events for the GPU stages, see `Runner.infer_timed`) plus the
whole span end to end. Warm-up iterations are excluded; min and max are kept so noise is visible.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ssdtrt.bench.run_record import BenchRecord
from ssdtrt.core.errors import ManifestError, SSDTRTError

STAGES = ("preprocess", "h2d", "inference", "d2h", "postprocess")
PRECISION_ALIASES = {"f32": "fp32", "float32": "fp32", "f16": "fp16", "float16": "fp16", "i8": "int8"}
#: called after each timed iteration: (variant label, batch size, iterations done, iterations planned)
Progress = Callable[[str, int, int, int], None]


@dataclass(frozen=True)
class Stats:
    """Latency statistics in milliseconds over the timed iterations."""

    p50: float
    p90: float
    p99: float
    mean: float
    min: float
    max: float

    @classmethod
    def of(cls, samples_ms: Sequence[float]) -> Stats:
        a = np.asarray(samples_ms, dtype=np.float64)
        if a.size == 0:
            raise ValueError("no samples to summarize")
        p50, p90, p99 = np.percentile(a, [50, 90, 99])
        return cls(float(p50), float(p90), float(p99), float(a.mean()), float(a.min()), float(a.max()))


@dataclass(frozen=True)
class LatencySettings:
    """What every variant is measured with (recorded in the JSON)."""

    batch_sizes: tuple[int, ...] = (1,)
    warmup: int = 10
    iters: int = 100
    #: stop a slow configuration early after this many seconds of timed iterations (at least `min_iters` are kept);
    #: warm-up also ends after this many seconds (at least one warm-up iteration)
    max_seconds: float | None = None
    min_iters: int = 10
    threads: int | None = None  # None: each backend's default (all cores)
    data: str = "synthetic"  # dataset spec the images come from (val split)
    image_size_hw: tuple[int, int] | None = None  # resize the decoded images first (camera-like input); None: as stored
    device: str = "cpu"  # torch backend device
    verify_hash: bool = True  # check each artifact's sha256 against its manifest (the size is always checked)

    def __post_init__(self) -> None:
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ValueError(f"batch sizes must be >= 1, got {self.batch_sizes}")
        if self.warmup < 0 or self.iters < 1:
            raise ValueError(f"warmup must be >= 0 and iters >= 1, got {self.warmup} and {self.iters}")
        if self.min_iters < 1:
            raise ValueError(f"min_iters must be >= 1, got {self.min_iters}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")


@dataclass(frozen=True)
class Variant:
    """One model artifact on one backend at one precision, with the runner options that select it."""

    model: Path
    backend: str
    precision: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.backend} {self.precision} · {self.model.name}"


@dataclass
class LatencyResult:
    model: str
    backend: str
    precision: str
    batch_size: int
    iters: int
    stages: dict[str, Stats]  # STAGES present on this backend, plus "e2e"
    images_per_s: float
    runner: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    warmup_iters: int = 0  # untimed iterations run first (fewer than asked when --max-seconds cut the warm-up)

    @property
    def label(self) -> str:
        return f"{self.backend} {self.precision} · {Path(self.model).name}"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["label"] = self.label
        return out


@dataclass
class LatencyReport(BenchRecord):
    settings: LatencySettings
    results: list[LatencyResult] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"variant": label, "reason": one line}

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "ssdtrt.bench.latency",
            **self.head_dict(),
            "results": [r.to_dict() for r in self.results],
            "skipped": self.skipped,
        }

    def best(self, batch_size: int = 1) -> LatencyResult | None:
        """The fastest end-to-end configuration at this batch size (p50)."""
        rows = [r for r in self.results if r.batch_size == batch_size]
        return min(rows, key=lambda r: r.stages["e2e"].p50) if rows else None


def normalize_precision(name: str) -> str:
    key = name.lower()
    return PRECISION_ALIASES.get(key, key)


def plan_variants(
    models: Sequence[str | Path],
    backends: Sequence[str] | None = None,
    precisions: Sequence[str] | None = None,
    *,
    threads: int | None = None,
    device: str = "cpu",
    verify_hash: bool = True,
) -> list[Variant]:
    """The backend × precision variants each artifact can run as here, filtered by `backends` / `precisions`.

    checkpoint → torch fp32 and bf16 (autocast); ONNX → onnxruntime at the file's precision, and openvino (fp32
    ONNX: f32 and bf16 hints; Q/DQ: int8); OpenVINO IR → openvino at its precision (f32 and bf16 hints for an f32 IR);
    TensorRT plan → tensorrt. Raises ManifestError for an unreadable or unknown artifact, or one that is not the
    file its manifest describes (size, and sha256 unless `verify_hash` is False): one line naming both.
    """
    from ssdtrt.core.manifest import read_manifest, verify_artifact
    from ssdtrt.runtime import artifact_and_kind, normalize_backend

    wanted_backends = {normalize_backend(b) for b in backends} if backends else None
    wanted_precisions = {normalize_precision(p) for p in precisions} if precisions else None
    out: list[Variant] = []
    for model in models:
        artifact, kind = artifact_and_kind(Path(model))
        if not artifact.exists():
            raise ManifestError(f"{artifact}: no such file")
        candidates: list[Variant] = []
        if kind == "checkpoint":
            candidates += [
                Variant(artifact, "torch", "fp32", {"device": device}),
                Variant(artifact, "torch", "bf16", {"device": device, "autocast_bf16": True}),
            ]
        else:
            manifest = read_manifest(artifact)
            verify_artifact(manifest, artifact, verify_hash=verify_hash)
            precision = normalize_precision(manifest.precision)
            if kind == "onnx":
                candidates.append(Variant(artifact, "onnxruntime", precision, _threads("onnxruntime", threads)))
            if kind in ("onnx", "openvino"):
                ov = _threads("openvino", threads)
                if precision in ("int8", "fp16"):
                    candidates.append(Variant(artifact, "openvino", precision, {**ov, "precision_hint": "f32"}))
                else:
                    candidates += [
                        Variant(artifact, "openvino", "fp32", {**ov, "precision_hint": "f32"}),
                        Variant(artifact, "openvino", "bf16", {**ov, "precision_hint": "bf16"}),
                    ]
            if kind == "tensorrt":
                candidates.append(Variant(artifact, "tensorrt", precision, {}))
        out += [
            v for v in candidates
            if (wanted_backends is None or v.backend in wanted_backends)
            and (wanted_precisions is None or v.precision in wanted_precisions)
        ]
    return out


def _threads(backend: str, threads: int | None) -> dict[str, Any]:
    from ssdtrt.runtime import runner_class

    return {} if threads is None else runner_class(backend).thread_options(threads)


def bench_images(settings: LatencySettings) -> list[np.ndarray]:
    """max(batch_sizes) decoded RGB images from the dataset (cycled if it has fewer), resized if asked."""
    from ssdtrt.compare import load_images

    need = max(settings.batch_sizes)
    images = load_images(settings.data, need)
    images = [images[i % len(images)] for i in range(need)]
    if settings.image_size_hw is not None:
        import cv2

        h, w = settings.image_size_hw
        images = [cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR) for img in images]
    return images


def measure(
    variant: Variant, images: Sequence[np.ndarray], settings: LatencySettings, progress: Progress | None = None
) -> list[LatencyResult]:
    """Time `variant` at every batch size of `settings` on `images` (one opened runner for all batch sizes).

    The variant comes from `plan_variants`, which checked the artifact against its manifest (sha256 unless
    `settings.verify_hash` is False): the runner re-checks only the size, so a model is hashed once, not per variant."""
    from ssdtrt.inference.detector import Detector

    torch_threads = _set_torch_threads(settings.threads) if variant.backend == "torch" else None
    try:
        with Detector(variant.model, backend=variant.backend, batch_size=max(settings.batch_sizes),
                      verify_hash=False, **variant.options) as det:
            return [_measure_batch(det, variant, list(images[:bs]), settings, progress) for bs in settings.batch_sizes]
    finally:
        if torch_threads is not None:
            _set_torch_threads(torch_threads)


def _measure_batch(
    det: Any, variant: Variant, images: list[np.ndarray], settings: LatencySettings, progress: Progress | None
) -> LatencyResult:
    sizes = [img.shape[:2] for img in images]
    samples: dict[str, list[float]] = {}
    total = settings.warmup + settings.iters
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside a timed iteration is noise, not the pipeline's cost
    try:
        timed_start = None
        warmup = settings.warmup
        warmup_start = time.perf_counter()
        for i in range(total):
            if (
                timed_start is None and i > 0 and settings.max_seconds is not None
                and time.perf_counter() - warmup_start > settings.max_seconds
            ):
                warmup = i  # a slow variant: at least one warm-up iteration, then at most max_seconds of them
            if i == warmup:
                timed_start = time.perf_counter()
            t0 = time.perf_counter()
            batch = det.preprocess(images)
            t1 = time.perf_counter()
            outputs, device_ms = det.infer_timed(batch)
            t2 = time.perf_counter()
            det.postprocess(outputs, sizes)
            t3 = time.perf_counter()
            if i >= warmup:
                host_infer_ms = (t2 - t1) * 1e3
                row = {"preprocess": (t1 - t0) * 1e3, "postprocess": (t3 - t2) * 1e3, "e2e": (t3 - t0) * 1e3}
                if "h2d" in device_ms:  # GPU: CUDA-event times; the host span also holds launch and sync overhead
                    row.update(h2d=device_ms["h2d"], inference=device_ms["inference"], d2h=device_ms["d2h"])
                else:
                    row["inference"] = host_infer_ms
                for stage, value in row.items():
                    samples.setdefault(stage, []).append(value)
            if progress is not None:
                progress(variant.label, len(images), i + 1, total)
            done = i + 1 - warmup
            if done >= settings.iters:
                break
            if (
                settings.max_seconds is not None and timed_start is not None and done >= settings.min_iters
                and time.perf_counter() - timed_start > settings.max_seconds
            ):
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    stages = {stage: Stats.of(samples[stage]) for stage in (*STAGES, "e2e") if stage in samples}
    runner_info = det.describe()
    return LatencyResult(
        model=str(variant.model),
        backend=variant.backend,
        precision=variant.precision,
        batch_size=len(images),
        iters=len(samples["e2e"]),
        stages=stages,
        images_per_s=len(images) * 1e3 / stages["e2e"].mean,
        runner=runner_info,
        notes=_notes(variant, runner_info),
        warmup_iters=warmup,
    )


def _notes(variant: Variant, runner_info: dict[str, Any]) -> list[str]:
    """What a reader must know to read the row right (a bf16 request this CPU ran as f32, chunked static batches)."""
    notes = []
    compiled = str(runner_info.get("compiled_inference_precision_hint", "")).lower()
    if variant.backend == "openvino" and variant.precision == "bf16" and compiled and "bf16" not in compiled:
        notes.append(f"bf16 requested, OpenVINO compiled {compiled} (no bf16 support on this CPU)")
    if variant.backend == "torch" and variant.precision == "bf16":
        from ssdtrt.bench.machine import machine_info

        flags = machine_info().get("cpu_flags") or {}
        if flags and not (flags.get("avx512_bf16") or flags.get("amx_bf16")) and not str(runner_info.get("device", "cpu")).startswith("cuda"):
            notes.append("bf16 autocast without bf16 instructions on this CPU: emulated")
    static = runner_info.get("static_batch")
    if static and runner_info.get("batch_size", 0) and static < runner_info.get("batch_size", 0):
        notes.append(f"static batch {static}: a larger batch runs in chunks of {static}")
    return notes


def _set_torch_threads(threads: int | None) -> int | None:
    """Set torch's intra-op threads, returning the previous count (None when no change was asked)."""
    if threads is None:
        return None
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    return previous


def bench_models(
    models: Sequence[str | Path],
    settings: LatencySettings,
    *,
    backends: Sequence[str] | None = None,
    precisions: Sequence[str] | None = None,
    progress: Progress | None = None,
    on_skip: Callable[[str, str], None] | None = None,
) -> LatencyReport:
    """Measure every variant of every model; a variant that cannot open or run here is recorded in `skipped`."""
    variants = plan_variants(models, backends, precisions, threads=settings.threads, device=settings.device,
                             verify_hash=settings.verify_hash)
    return bench_variants(variants, settings, progress=progress, on_skip=on_skip)


def bench_variants(
    variants: Sequence[Variant],
    settings: LatencySettings,
    *,
    progress: Progress | None = None,
    on_skip: Callable[[str, str], None] | None = None,
) -> LatencyReport:
    """`bench_models` on variants already planned (and verified) by `plan_variants`."""
    from ssdtrt.bench.machine import machine_info

    images = bench_images(settings)
    report = LatencyReport(settings, machine_info(), [tuple(img.shape[:2]) for img in images])
    for variant in variants:
        try:
            report.results += measure(variant, images, settings, progress)
        except (SSDTRTError, ValueError, RuntimeError) as err:
            reason = _first_line(err)
            report.skipped.append({"variant": variant.label, "reason": reason})
            if on_skip is not None:
                on_skip(variant.label, reason)
    return report


def _first_line(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return lines[0][:300] if lines else type(err).__name__
