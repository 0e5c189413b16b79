"""Compare two models (checkpoint / ONNX; later engines) on the same preprocessed images, Polygraphy style.

Per shared output (same name and shape): max / mean absolute and relative error, pass if every element satisfies
|a - b| <= atol + rtol * |b|. Detections: the match rate (a detection of one side matches one of the other with
the same label and IoU >= 0.99), pass if >= `min_match`. Both sides use the same postprocess settings (those baked
into an `nms` graph when either side has one, else A's). Every model side is a `RunnerSubject`: a runner from
`ssdtrt.runtime.open_runner` (torch for a checkpoint) and the shared batching and postprocess stages; a Polygraphy
RunResults file as a side is `ssdtrt.compare_polygraphy.PolygraphySubject`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ssdtrt.core.config import ModelSpec, PostprocessSpec
from ssdtrt.core.detections import Detections
from ssdtrt.core.errors import ClassCountMismatchError, ParityError
from ssdtrt.runtime.base import Runner

#: Outputs compared element-wise when both sides expose them (nms outputs are compared as detections).
TENSOR_OUTPUTS = ("locs", "logits", "boxes", "scores")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")


class Subject:
    """One side of a comparison: runs a preprocessed batch, turns outputs into normalized Detections."""

    name: str
    spec: ModelSpec
    num_classes: int
    mode: str
    postprocess: PostprocessSpec
    input_name: str = "images"  # the graph input a Polygraphy feed dict names

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def preprocess(self, images_rgb: list[np.ndarray]) -> np.ndarray:
        """The network input of `images_rgb` for this subject (default: the host stage's float NCHW batch)."""
        from ssdtrt.preprocess.host import preprocess_images

        return preprocess_images(images_rgb, self.spec.preprocess)

    def detections(self, outputs: dict[str, np.ndarray], settings: PostprocessSpec) -> list[Detections]:
        raise NotImplementedError

    def close(self) -> None:
        """Release sessions (default: nothing)."""


class RunnerSubject(Subject):
    """Any model behind a `ssdtrt.runtime` Runner (checkpoint in torch, ONNX, OpenVINO IR, TensorRT plan), run
    through the shared stages: the batching helper feeds a static batch, the postprocess stage of its export mode.

    A checkpoint side also exposes its decoded boxes / softmax scores (decoded in torch), so a checkpoint compares
    element-wise against a `decoded` export too."""

    def __init__(self, runner: Runner, label: str) -> None:
        self.runner = runner
        self.runner.activate()
        m = self.runner.manifest
        self.checkpoint = m.kind == "checkpoint"
        self.name = f"torch:{label}" if self.checkpoint else f"{self.runner.backend}:{label}:{m.precision}"
        self.spec = m.model_spec
        self.num_classes = m.num_classes
        self.mode = m.export_mode
        self.postprocess = PostprocessSpec(**m.postprocess) if m.postprocess else self.spec.postprocess
        self.input_name = m.inputs[0].name if m.inputs else "images"
        self.input_format = m.input_format

    def preprocess(self, images_rgb: list[np.ndarray]) -> np.ndarray:
        """The model's own preprocessing stage (a uint8-nhwc model gets the resized uint8 images)."""
        from ssdtrt.preprocess.stages import preprocessor_for

        meta = next(iter(self.runner.input_metadata().values()))
        return preprocessor_for(self.runner.manifest, meta)(images_rgb)

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        from ssdtrt.inference.batching import run_in_batches

        out = run_in_batches(batch, self.runner.fixed_batch, lambda rows: self.runner.infer({self.input_name: rows}))
        out = {k: np.asarray(v) for k, v in out.items()}
        if self.checkpoint:
            out.update(decoded_heads(out["locs"], out["logits"], self.spec))
        return out

    def detections(self, outputs: dict[str, np.ndarray], settings: PostprocessSpec) -> list[Detections]:
        return detections_from_outputs(outputs, self.mode, self.spec, settings if self.mode != "nms" else self.postprocess)

    def close(self) -> None:
        self.runner.deactivate()


def decoded_heads(locs: np.ndarray, logits: np.ndarray, spec: ModelSpec) -> dict[str, np.ndarray]:
    """What a `decoded` export of these heads outputs: xyxy boxes clipped to [0, 1] and softmax scores (in torch)."""
    import torch

    from ssdtrt.core.codec import decode
    from ssdtrt.core.priors import default_boxes

    with torch.no_grad():
        priors = torch.from_numpy(default_boxes(spec))
        boxes = decode(torch.from_numpy(locs), priors, spec.variances).clamp(0.0, 1.0)
        scores = torch.softmax(torch.from_numpy(logits), dim=-1)
    return {"boxes": boxes.numpy(), "scores": scores.numpy()}


def detections_from_outputs(
    outputs: dict[str, np.ndarray], mode: str, spec: ModelSpec, settings: PostprocessSpec
) -> list[Detections]:
    """Normalized detections from the outputs of an export in `mode`, by the shared postprocess stage (host numpy;
    an nms graph's rows un-padded, with `settings` taken as what the graph applied)."""
    from ssdtrt.postprocess.settings import EXPORT_OUTPUTS
    from ssdtrt.postprocess.stages import postprocessor_for

    stage = postprocessor_for(mode, spec, settings, baked=settings)
    return stage({role: np.asarray(outputs[role]) for role in EXPORT_OUTPUTS[mode]})


def load_subject(path: str | os.PathLike[str], backend: str | None = None, **runner_options: Any) -> Subject:
    """The hook to extend: a checkpoint in torch (CPU), every manifest-carrying artifact through `open_runner`."""
    p = Path(path)
    if p.suffix in CHECKPOINT_SUFFIXES and backend in (None, "torch"):
        from ssdtrt.runtime.torch_runner import TorchRunner

        if not p.is_file():
            from ssdtrt.core.errors import CheckpointError

            raise CheckpointError(f"{p}: no such checkpoint file")
        return RunnerSubject(TorchRunner(p), p.name)  # a checkpoint has no sidecar manifest: verify_hash does not apply
    from ssdtrt.runtime import open_runner

    return RunnerSubject(open_runner(p, backend=backend, **runner_options), p.name)


@dataclass
class OutputDiff:
    name: str
    max_abs: float
    mean_abs: float
    max_rel: float
    mean_rel: float
    passed: bool


@dataclass
class CompareReport:
    a: str
    b: str
    num_images: int
    atol: float
    rtol: float
    min_match: float
    outputs: list[OutputDiff] = field(default_factory=list)
    detections_a: int = 0
    detections_b: int = 0
    matched: int = 0
    postprocess: dict[str, Any] = field(default_factory=dict)

    @property
    def match_rate(self) -> float:
        denom = max(self.detections_a, self.detections_b)
        return 1.0 if denom == 0 else self.matched / denom

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs) and self.match_rate >= self.min_match

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "match_rate": self.match_rate, "passed": self.passed}


def _iou_matrix(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    from ssdtrt.core.boxes import box_iou_xyxy

    if a_xyxy.shape[0] == 0 or b_xyxy.shape[0] == 0:
        return np.zeros((a_xyxy.shape[0], b_xyxy.shape[0]), dtype=np.float64)
    return box_iou_xyxy(a_xyxy.astype(np.float64), b_xyxy.astype(np.float64))


def match_detections(a: Detections, b: Detections, iou_threshold: float = 0.99) -> int:
    """Detections that have a partner on the other side with the same label and IoU >= `iou_threshold`.

    NMS leaves no two same-label boxes with IoU > its threshold, so at IoU 0.99 a partner is unique and the count
    is min(#A with a partner, #B with a partner).
    """
    a, b = a.numpy(), b.numpy()
    ok = (_iou_matrix(a.boxes, b.boxes) >= iou_threshold) & (a.labels[:, None] == b.labels[None, :])
    return int(min(ok.any(axis=1).sum(), ok.any(axis=0).sum()))


def _diff(name: str, a: np.ndarray, b: np.ndarray, atol: float, rtol: float) -> OutputDiff:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    abs_err = np.abs(a64 - b64)
    rel_err = abs_err / np.maximum(np.abs(b64), 1e-12)
    passed = bool(np.all(abs_err <= atol + rtol * np.abs(b64)))
    return OutputDiff(name, float(abs_err.max(initial=0.0)), float(abs_err.mean()) if abs_err.size else 0.0,
                      float(rel_err.max(initial=0.0)), float(rel_err.mean()) if rel_err.size else 0.0, passed)


def compare_models(
    a: Subject, b: Subject, images_rgb: list[np.ndarray], *, batch_size: int = 8, **options: Any
) -> CompareReport:
    """Run both subjects on the same images (each through its own preprocessing stage: a uint8-nhwc model gets the
    resized uint8 images) and measure how far apart they are.

    `options` are `compare_batches`' tolerances and progress callback (atol, rtol, min_match, progress).
    """
    from ssdtrt.inference.batching import chunks

    parts = [images_rgb[part] for part in chunks(len(images_rgb), batch_size)]
    return compare_batches(a, b, [(a.preprocess(p), b.preprocess(p)) for p in parts], **options)


def preprocess_batches(images_rgb: list[np.ndarray], spec: ModelSpec, batch_size: int = 8) -> list[np.ndarray]:
    """The network inputs (float32 NCHW) of `images_rgb`, `batch_size` images per batch (the host stage)."""
    from ssdtrt.inference.batching import chunks
    from ssdtrt.preprocess.host import preprocess_images

    return [preprocess_images(images_rgb[part], spec.preprocess) for part in chunks(len(images_rgb), batch_size)]


def compare_batches(
    a: Subject,
    b: Subject,
    batches: list[np.ndarray] | list[tuple[np.ndarray, np.ndarray]],
    *,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    min_match: float = 0.99,
    progress: Callable[[int], None] | None = None,
) -> CompareReport:
    """Run both subjects on the same preprocessed batches (e.g. Polygraphy's saved inputs), or on (batch for a,
    batch for b) pairs of the same images, and compare."""
    if a.num_classes != b.num_classes:
        raise ClassCountMismatchError(f"{a.name} has {a.num_classes} classes, {b.name} has {b.num_classes}")
    if a.spec.preprocess != b.spec.preprocess or a.spec.priors != b.spec.priors:
        raise ParityError(f"{a.name} and {b.name} use different presets ({a.spec.name} vs {b.spec.name})")
    settings = b.postprocess if b.mode == "nms" and a.mode != "nms" else a.postprocess
    pairs = [x if isinstance(x, tuple) else (x, x) for x in batches]
    report = CompareReport(a.name, b.name, sum(x[0].shape[0] for x in pairs), atol, rtol, min_match,
                           postprocess=asdict(settings))
    collected: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for batch_a, batch_b in pairs:
        out_a, out_b = a.run(batch_a), b.run(batch_b)
        if "nms" not in (a.mode, b.mode):
            for name in TENSOR_OUTPUTS:
                if name in out_a and name in out_b and out_a[name].shape == out_b[name].shape:
                    collected.setdefault(name, []).append((out_a[name], out_b[name]))
        dets_a, dets_b = a.detections(out_a, settings), b.detections(out_b, settings)
        report.detections_a += sum(len(d) for d in dets_a)
        report.detections_b += sum(len(d) for d in dets_b)
        report.matched += sum(match_detections(x, y) for x, y in zip(dets_a, dets_b))
        if progress is not None:
            progress(batch_a.shape[0])
    for name, pairs in collected.items():
        report.outputs.append(
            _diff(name, np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs]), atol, rtol)
        )
    return report


def load_images(data: str, num_images: int, split: str = "val") -> list[np.ndarray]:
    """The first `num_images` RGB images of a dataset spec."""
    from ssdtrt.data import open_dataset

    ds = open_dataset(data, split)
    n = min(num_images, len(ds))
    if n == 0:
        raise ParityError(f"dataset {data!r} ({split}) has no images to compare on")
    return [ds[i].image for i in range(n)]
