"""Postprocess benchmark: our torch (CPU, GPU) and numpy postprocess against torchvision's SSD postprocess.

All implementations get bit-identical heads; their outputs are checked equal (tie-aware, explicit tolerances)
before anything is timed, so a speed-up can never come from doing less work. torchvision's
`SSD.postprocess_detections` is called unbound on a minimal object carrying its settings, with the priors as
pixel xyxy anchors of the network input size (how torchvision itself runs SSD300).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from ssdtrt.bench.postprocess_cases import HeadsCase, take_batch
from ssdtrt.core.config import PostprocessSpec
from ssdtrt.core.detections import Detections
from ssdtrt.core.errors import ParityError

#: torchvision's ssd300_vgg16 defaults (score_thresh, nms_thresh, topk_candidates, detections_per_img).
TORCHVISION_SETTINGS = PostprocessSpec(0.01, 0.45, 400, 200, 0.0)
#: Equality tolerances: boxes in normalized units (0.03 px at 300 px), scores absolute.
BOX_ATOL = 1e-4
SCORE_ATOL = 1e-5
#: Timed iterations kept however slow a call is (with --max-seconds).
MIN_ITERS = 3


class PostprocessMismatchError(ParityError):
    """Two postprocess implementations gave different detections on the same heads (nothing is timed)."""


@dataclass(frozen=True)
class PostprocessTiming:
    """Latency of one implementation on one case and batch size (milliseconds per call, whole batch)."""

    case: str
    batch: int
    impl: str
    iters: int
    p50_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    detections_per_image: float
    reference: str | None = None  # the torchvision implementation this one is compared with
    ratio_vs_torchvision: float | None = None  # reference p50 / this p50 (> 1: this one is faster)


@dataclass
class PostprocessBenchReport:
    settings: dict[str, Any]
    warmup: int
    iters: int
    max_seconds: float | None
    threads: int
    cases: list[dict[str, Any]] = field(default_factory=list)
    results: list[PostprocessTiming] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tolerances"] = {"box_atol_normalized": BOX_ATOL, "score_atol": SCORE_ATOL}
        return d


def resolve_settings(case: HeadsCase, which: str) -> tuple[PostprocessSpec, list[str]]:
    """The settings every implementation uses on `case`: torchvision's defaults, or the case model's preset.

    torchvision has no minimum box size, so a preset's `min_size` is set to 0 (with a note) to keep outputs equal.
    """
    if which == "torchvision":
        return TORCHVISION_SETTINGS, []
    if which != "preset":
        raise ValueError(f"settings must be 'torchvision' or 'preset', got {which!r}")
    notes = []
    spec = case.settings
    if spec.min_size > 0:
        notes.append(f"{case.name}: preset min_size {spec.min_size:.4g} set to 0 (torchvision's postprocess has none)")
        spec = replace(spec, min_size=0.0)
    return spec, notes


def _torchvision_fn(case: HeadsCase, spec: PostprocessSpec, device: str) -> Callable[[], list[Detections]]:
    import torch
    from torchvision.models.detection._utils import BoxCoder
    from torchvision.models.detection.ssd import SSD

    from ssdtrt.core.boxes import cxcywh_to_xyxy

    h, w = case.image_hw
    scale = torch.tensor([w, h, w, h], dtype=torch.float32)
    anchors = (cxcywh_to_xyxy(torch.from_numpy(case.priors_cxcywh)) * scale).to(device)
    owner = _TorchvisionSettings(
        box_coder=BoxCoder(tuple(1.0 / v for v in case.variances)),
        score_thresh=spec.score_threshold,
        nms_thresh=spec.iou_threshold,
        topk_candidates=spec.topk_candidates if spec.topk_candidates is not None else case.num_priors,
        detections_per_img=spec.max_detections,
    )
    heads = {"bbox_regression": torch.from_numpy(case.locs).to(device),
             "cls_logits": torch.from_numpy(case.logits).to(device)}
    image_anchors, image_shapes = [anchors] * case.batch, [(h, w)] * case.batch
    scale = scale.to(device)

    def run() -> list[Detections]:
        out = SSD.postprocess_detections(owner, heads, image_anchors, image_shapes)  # type: ignore[arg-type]
        return [Detections(d["boxes"] / scale, d["scores"], d["labels"]) for d in out]

    return run


@dataclass
class _TorchvisionSettings:
    """The attributes `SSD.postprocess_detections` reads from `self` (no network is built)."""

    box_coder: Any
    score_thresh: float
    nms_thresh: float
    topk_candidates: int
    detections_per_img: int


def implementations(case: HeadsCase, spec: PostprocessSpec, *, cuda: bool | None = None) -> dict[str, Callable[[], Any]]:
    """Name → zero-argument callable running that implementation on `case` with inputs already in place.

    torch-cpu, numpy, torchvision-cpu always; torch-cuda and torchvision-cuda when CUDA is available (or `cuda`).
    The CUDA callables synchronize before returning, so a clock around them measures the finished work.
    """
    import torch

    from ssdtrt.postprocess.host_torch import postprocess
    from ssdtrt.postprocess.host_numpy import postprocess_numpy

    kwargs = dict(spec.as_kwargs(), variances=case.variances)
    locs_t, logits_t = torch.from_numpy(case.locs), torch.from_numpy(case.logits)
    priors_t = torch.from_numpy(case.priors_cxcywh)
    fns: dict[str, Callable[[], Any]] = {
        "torch-cpu": lambda: postprocess(locs_t, logits_t, priors_t, **kwargs),
        "numpy": lambda: postprocess_numpy(case.locs, case.logits, case.priors_cxcywh, **kwargs),
        "torchvision-cpu": _torchvision_fn(case, spec, "cpu"),
    }
    if cuda is None:
        cuda = torch.cuda.is_available()
    if cuda:
        dev = torch.device("cuda")
        locs_g, logits_g, priors_g = locs_t.to(dev), logits_t.to(dev), priors_t.to(dev)
        tv_gpu = _torchvision_fn(case, spec, "cuda")

        def torch_gpu() -> list[Detections]:
            out = postprocess(locs_g, logits_g, priors_g, **kwargs)
            torch.cuda.synchronize()
            return out

        def torchvision_gpu() -> list[Detections]:
            out = tv_gpu()
            torch.cuda.synchronize()
            return out

        fns["torch-cuda"] = torch_gpu
        fns["torchvision-cuda"] = torchvision_gpu
    return fns


def reference_of(impl: str) -> str:
    """The torchvision implementation `impl` is compared with (same device; numpy runs on the CPU)."""
    return "torchvision-cuda" if impl.endswith("cuda") else "torchvision-cpu"


def _rows(d: Detections) -> np.ndarray:
    """[K, 6] float64 rows (label, score, x1, y1, x2, y2) in canonical order: label, score descending, box."""
    d = d.numpy()
    rows = np.concatenate([d.labels.astype(np.float64)[:, None], d.scores.astype(np.float64)[:, None],
                           d.boxes.astype(np.float64).reshape(-1, 4)], axis=1)
    return rows[np.lexsort((*rows[:, 2:].T[::-1], -rows[:, 1], rows[:, 0]))]


def _close(a: np.ndarray, b: np.ndarray, box_atol: float, score_atol: float) -> np.ndarray:
    """Row-wise (or broadcast pairwise) equality: same label, scores and boxes within the tolerances."""
    return ((a[..., 0] == b[..., 0]) & (np.abs(a[..., 1] - b[..., 1]) <= score_atol)
            & (np.abs(a[..., 2:] - b[..., 2:]) <= box_atol).all(-1))


def detections_equal(a: Detections, b: Detections, *, box_atol: float = BOX_ATOL, score_atol: float = SCORE_ATOL) -> str | None:
    """None when `a` and `b` hold the same detections (order-free, tie-aware), else what differs."""
    if len(a) != len(b):
        return f"{len(a)} vs {len(b)} detections"
    ra, rb = _rows(a), _rows(b)
    bad = np.flatnonzero(~_close(ra, rb, box_atol, score_atol))
    if bad.size == 0:
        return None
    # Scores equal within the tolerance may sort differently: match the differing rows one to one instead.
    ok = _close(ra[bad][:, None, :], rb[bad][None, :, :], box_atol, score_atol)  # [m, m]
    taken = np.zeros(bad.size, dtype=bool)
    for i in range(bad.size):  # only the few rows that differ after sorting
        free = np.flatnonzero(ok[i] & ~taken)
        if free.size == 0:
            row = ra[bad[i]]
            j = bad[np.argmin(np.abs(rb[bad, 1] - row[1]))]
            return (f"detection (label {int(row[0])}, score {row[1]:.6g}, box {np.round(row[2:], 5).tolist()}) has no "
                    f"match; nearest: label {int(rb[j, 0])}, score {rb[j, 1]:.6g}, box {np.round(rb[j, 2:], 5).tolist()}")
        taken[free[0]] = True
    return None


def check_equal(case: str, batch: int, outputs: dict[str, list[Detections]], **tolerances: float) -> None:
    """Raise PostprocessMismatchError unless every implementation's output equals its torchvision reference."""
    for impl, dets in outputs.items():
        ref_name = reference_of(impl)
        if impl == ref_name or ref_name not in outputs:
            continue
        ref = outputs[ref_name]
        if len(dets) != len(ref):
            raise PostprocessMismatchError(f"case {case!r} batch {batch}: {impl} returned {len(dets)} images, {ref_name} {len(ref)}")
        for i, (d, r) in enumerate(zip(dets, ref)):
            why = detections_equal(d, r, **tolerances)
            if why is not None:
                raise PostprocessMismatchError(f"case {case!r} batch {batch} image {i}: {impl} differs from {ref_name}: {why}")


def time_calls(fn: Callable[[], Any], warmup: int, iters: int) -> np.ndarray:
    """Latency in ms of `iters` calls of `fn` after `warmup` untimed calls (perf_counter; `fn` syncs a GPU)."""
    for _ in range(warmup):
        fn()
    out = np.empty(iters, dtype=np.float64)
    for i in range(iters):
        t0 = time.perf_counter()
        fn()
        out[i] = (time.perf_counter() - t0) * 1e3
    return out


def _budget(first_s: float, warmup: int, iters: int, max_seconds: float | None) -> tuple[int, int]:
    """(warm-up, iterations) fitting about `max_seconds` of calls lasting `first_s`, keeping >= MIN_ITERS timed."""
    if max_seconds is None:
        return warmup, iters
    fit = int(max_seconds / max(first_s, 1e-9))
    return min(warmup, fit), max(min(iters, MIN_ITERS), min(iters, fit))


def candidates_per_image(case: HeadsCase, spec: PostprocessSpec) -> float:
    """Mean number of (prior, class) candidates entering NMS per image (scores above threshold, top-k capped)."""
    z = case.logits - case.logits.max(-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(-1, keepdims=True)
    above = (p[..., 1:] > spec.score_threshold).sum(1)  # [N, C-1]
    if spec.topk_candidates is not None:
        above = np.minimum(above, spec.topk_candidates)
    return float(above.sum(1).mean())


def bench_case(
    case: HeadsCase, batch_sizes: Sequence[int], spec: PostprocessSpec, *, warmup: int, iters: int,
    max_seconds: float | None = None, cuda: bool | None = None, progress: Callable[[str], None] | None = None,
) -> tuple[list[PostprocessTiming], list[dict[str, Any]]]:
    """Check then time every implementation on `case` at each batch size; (timings, per-batch case info).

    `progress(description)` is called after each implementation is timed.
    """
    timings: list[PostprocessTiming] = []
    info: list[dict[str, Any]] = []
    for batch in batch_sizes:
        sub = take_batch(case, batch)
        fns = implementations(sub, spec, cuda=cuda)
        outputs, first_s = {}, {}
        for name, fn in fns.items():  # the checked call doubles as the first warm-up
            t0 = time.perf_counter()
            outputs[name] = fn()
            first_s[name] = time.perf_counter() - t0
        check_equal(sub.name, batch, outputs)
        info.append({"case": sub.name, "batch": batch, "description": sub.description, "num_priors": sub.num_priors,
                     "num_classes": sub.num_classes, "image_hw": list(sub.image_hw),
                     "candidates_per_image": candidates_per_image(sub, spec)})
        p50: dict[str, float] = {}
        rows = []
        for name, fn in fns.items():
            n_warm, n_iter = _budget(first_s[name], warmup, iters, max_seconds)
            ms = time_calls(fn, n_warm, n_iter)
            if progress is not None:
                progress(f"{sub.name} batch {batch}: {name}")
            p50[name] = float(np.median(ms))
            dets = sum(len(d) for d in outputs[name]) / batch
            rows.append((name, ms, dets))
        for name, ms, dets in rows:
            ref = reference_of(name)
            ratio = p50[ref] / p50[name] if ref in p50 and name != ref else None
            timings.append(PostprocessTiming(
                sub.name, batch, name, ms.size, p50[name], float(np.percentile(ms, 90)), float(ms.mean()),
                float(ms.min()), float(ms.max()), dets, ref if ref in p50 else None, ratio,
            ))
    return timings, info


def run_postprocess_bench(
    cases: Sequence[HeadsCase], batch_sizes: Sequence[int], *, settings: str = "torchvision", warmup: int = 3,
    iters: int = 10, max_seconds: float | None = None, threads: int | None = None, cuda: bool | None = None,
    progress: Callable[[str], None] | None = None,
) -> PostprocessBenchReport:
    """Benchmark every case × batch size × implementation; raises PostprocessMismatchError before timing on a
    mismatch. `max_seconds` caps the timed calls of one configuration (>= MIN_ITERS kept); `threads` sets
    torch's intra-op threads. `progress` is called after each (case, batch, implementation) is timed."""
    from ssdtrt.bench.machine import machine_info

    if warmup < 0 or iters < 1:
        raise ValueError(f"need warmup >= 0 and iters >= 1, got {warmup} and {iters}")
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    report = PostprocessBenchReport(settings={"source": settings, "per_case": {}}, warmup=warmup, iters=iters,
                                    max_seconds=max_seconds, threads=torch.get_num_threads(), machine=machine_info())
    for case in cases:
        spec, notes = resolve_settings(case, settings)
        report.settings["per_case"][case.name] = spec.as_kwargs()
        report.notes.extend(notes)
        timings, info = bench_case(case, batch_sizes, spec, warmup=warmup, iters=iters, max_seconds=max_seconds,
                                   cuda=cuda, progress=progress)
        report.results.extend(timings)
        report.cases.extend(info)
    return report
