"""Per-layer INT8 sensitivity: what quantizing each Conv costs, measured cheaply first and in mAP where it matters.

Cheap (every layer): SQNR of the head outputs (`locs`, `logits`; the worse of the two, in dB) against FP32 over a
few images, (a) with only that layer INT8 and (b) with every layer but that one INT8 (the gain over full INT8).
Graphs come from `float_variants` (rewiring, no re-quantization), FP32 outputs are computed once.
Expensive (the `top` most sensitive layers): COCO mAP on the evaluation set for the same two variants.

The ranking (lowest SQNR with the layer alone INT8 first) is the order in which `fallback` returns layers to float.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ssdtrt.core.errors import ExportError
from ssdtrt.export.float_variants import float_variant, head_graph, quantized_layers

if TYPE_CHECKING:
    import onnx

    from ssdtrt.core.manifest import Manifest

#: onnxruntime's WeightBiasQuantization int32-quantizes float Conv biases (scale x_scale·w_scale): off, ORT computes
#: the Q/DQ graph as specified (float bias, as TensorRT does; torch fake quantization matches it at 130 dB), on, it
#: deviates from that reference by ~27 dB head SQNR on a random ssd-small — as far as INT8 from FP32.
ORT_DISABLED_OPTIMIZERS = ("WeightBiasQuantization",)
#: SQNR reported for outputs identical to FP32 (no noise at all).
SQNR_IDENTICAL_DB = 200.0


@dataclass
class LayerSensitivity:
    """One quantizable layer: head SQNR alone INT8 / gain when left float (dB), and optionally mAP (points)."""

    layer: str
    sqnr_alone_db: float
    sqnr_float_gain_db: float
    map_alone_drop_pts: float | None = None
    map_float_gain_pts: float | None = None


@dataclass
class SensitivityReport:
    """Layers sorted most sensitive first, with the whole-model figures they are measured against."""

    layers: list[LayerSensitivity]
    int8_sqnr_db: float
    sqnr_images: int
    fp32_map: float | None = None
    int8_map: float | None = None
    map_images: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def ranking(self) -> list[str]:
        return [s.layer for s in self.layers]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def sqnr_db(reference: Sequence[np.ndarray], test: Sequence[np.ndarray]) -> float:
    """Signal-to-quantization-noise ratio, dB, of the worst output: 10·log10(Σref² / Σ(ref − test)²)."""
    worst = SQNR_IDENTICAL_DB
    for ref, out in zip(reference, test):
        ref64, out64 = ref.astype(np.float64), out.astype(np.float64)
        noise = float(np.sum((ref64 - out64) ** 2))
        signal = float(np.sum(ref64**2))
        if noise > 0:
            worst = min(worst, 10.0 * np.log10(max(signal, 1e-30) / noise))
    return float(worst)


class HeadRunner:
    """Runs head graphs (ONNX Runtime, CPU) on a fixed preprocessed batch [n, 3, H, W]; one session per graph."""

    def __init__(self, images: np.ndarray, *, batch_size: int = 8, threads: int | None = None) -> None:
        self.images = np.ascontiguousarray(images, dtype=np.float32)
        self.batch_size = batch_size
        self.threads = threads

    def session(self, proto: onnx.ModelProto) -> Any:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if self.threads:
            opts.intra_op_num_threads = self.threads
        return ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"],
                                    disabled_optimizers=list(ORT_DISABLED_OPTIMIZERS))

    def run(self, proto: onnx.ModelProto, images: np.ndarray | None = None) -> list[np.ndarray]:
        sess = self.session(proto)
        return run_session(sess, self.images if images is None else images, self.batch_size)


def run_session(sess: Any, images: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """All outputs of `sess` over `images`, fed `batch_size` at a time (a static batch dim is honoured, padded)."""
    inp = sess.get_inputs()[0]
    fixed = inp.shape[0] if isinstance(inp.shape[0], int) else None
    step = fixed or batch_size
    parts: list[list[np.ndarray]] = []
    for s in range(0, images.shape[0], step):
        chunk = images[s : s + step]
        n = chunk.shape[0]
        if fixed and n < fixed:
            chunk = np.concatenate([chunk, np.zeros((fixed - n, *chunk.shape[1:]), chunk.dtype)])
        parts.append([o[:n] for o in sess.run(None, {inp.name: chunk})])
    return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]


def measure_sqnr(
    fp32: onnx.ModelProto,
    int8: onnx.ModelProto,
    runner: HeadRunner,
    *,
    progress: Callable[[str, int, int], None] | None = None,
) -> SensitivityReport:
    """Both SQNR figures for every quantized layer of `int8` (head graphs of both are taken here)."""
    fp32_h, int8_h = head_graph(fp32), head_graph(int8)
    layers = quantized_layers(int8_h)
    if not layers:
        raise ExportError("the INT8 graph has no quantized Conv/Gemm/MatMul layer")
    ref = runner.run(fp32_h)
    base = sqnr_db(ref, runner.run(int8_h))
    rows = []
    for i, name in enumerate(layers, 1):
        alone = sqnr_db(ref, runner.run(float_variant(int8_h, fp32_h, [n for n in layers if n != name])))
        left = sqnr_db(ref, runner.run(float_variant(int8_h, fp32_h, [name])))
        rows.append(LayerSensitivity(name, round(alone, 3), round(left - base, 3)))
        if progress is not None:
            progress(f"SQNR {name}", i, len(layers))
    rows.sort(key=lambda r: (r.sqnr_alone_db, -r.sqnr_float_gain_db))
    return SensitivityReport(rows, round(base, 3), int(runner.images.shape[0]))


def float_set_for_sqnr(
    report: SensitivityReport, fp32: onnx.ModelProto, int8: onnx.ModelProto, runner: HeadRunner, min_sqnr_db: float
) -> dict[str, Any]:
    """The fewest top-ranked layers to leave float for a head SQNR ≥ `min_sqnr_db` (the fallback's search with
    SQNR instead of mAP: for models without a meaningful evaluation set, e.g. random weights, or as a pre-filter)."""
    from ssdtrt.export.float_search import search_float_count

    fp32_h, int8_h = head_graph(fp32), head_graph(int8)
    ref = runner.run(fp32_h)
    ranking = report.ranking

    def deficit(k: int) -> float:
        return round(min_sqnr_db - sqnr_db(ref, runner.run(float_variant(int8_h, fp32_h, ranking[:k]))), 3)

    k, tried = search_float_count(deficit, len(ranking), 0.0)
    return {"min_sqnr_db": min_sqnr_db, "float_layers": ranking[:k], "sqnr_db": round(min_sqnr_db - tried[k], 3),
            "tried_sqnr_db": {str(j): round(min_sqnr_db - d, 3) for j, d in sorted(tried.items())}}


def head_predict_fn(proto: onnx.ModelProto, manifest: Manifest, runner: HeadRunner) -> Callable[[list[np.ndarray]], list]:
    """`predict(images_rgb) → Detections in pixels` for a head graph (`locs`, `logits`), postprocessed on the host
    with the manifest's settings, as `ssdtrt eval` does for a raw export."""
    from ssdtrt.inference.stages import ModelStages

    stages = ModelStages(dataclasses.replace(manifest, export_mode="raw"))
    sess = runner.session(proto)

    def predict(images_rgb: list[np.ndarray]) -> list:
        locs, logits = run_session(sess, stages.preprocess(list(images_rgb)), runner.batch_size)
        return stages.postprocess({"locs": locs, "logits": logits}, [img.shape[:2] for img in images_rgb])

    return predict


def measure_map(
    report: SensitivityReport,
    fp32: onnx.ModelProto,
    int8: onnx.ModelProto,
    manifest: Manifest,
    dataset: Any,
    runner: HeadRunner,
    *,
    top: int = 3,
    limit: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> SensitivityReport:
    """Fill mAP drop (alone INT8) and gain (left float) for the `top` most sensitive layers, in place."""
    from ssdtrt.evaluate import evaluate

    fp32_h, int8_h = head_graph(fp32), head_graph(int8)
    layers = quantized_layers(int8_h)

    def score(proto: onnx.ModelProto) -> float:
        return evaluate(head_predict_fn(proto, manifest, runner), dataset, limit=limit).map

    report.fp32_map = round(score(fp32_h), 5)
    report.int8_map = round(score(int8_h), 5)
    report.map_images = len(dataset) if limit is None else min(limit, len(dataset))
    for i, row in enumerate(report.layers[:top], 1):
        alone = score(float_variant(int8_h, fp32_h, [n for n in layers if n != row.layer]))
        left = score(float_variant(int8_h, fp32_h, [row.layer]))
        row.map_alone_drop_pts = round(100 * (report.fp32_map - alone), 3)
        row.map_float_gain_pts = round(100 * (left - report.int8_map), 3)
        if progress is not None:
            progress(f"mAP {row.layer}", i, min(top, len(report.layers)))
    return report


def study_sensitivity(
    model_path: Any,
    calibration: Any,
    *,
    eval_data: str,
    eval_split: str = "val",
    sqnr_images: int = 32,
    map_images: int = 200,
    top: int = 3,
    min_sqnr_db: float | None = None,
    threads: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> SensitivityReport:
    """The whole study for a checkpoint or FP32 ONNX: quantize (ranges cached), SQNR per layer, mAP for the top."""
    from ssdtrt.data import open_dataset
    from ssdtrt.export.calibration import CalibrationConfig, calibration_tensors
    from ssdtrt.export.fp32_source import load_fp32_source
    from ssdtrt.export.precision import quantize_int8

    src = load_fp32_source(model_path)
    spec = src.manifest.model_spec
    cfg = dataclasses.replace(calibration, high_precision="fp32", float_layers=())  # CPU-fast float parts
    int8, record = quantize_int8(src.proto, spec, cfg)
    images, _ = calibration_tensors(CalibrationConfig(eval_data, sqnr_images, split=eval_split,
                                                      cache_dir=calibration.cache_dir), spec.preprocess)
    runner = HeadRunner(images, threads=threads)
    report = measure_sqnr(src.proto, int8, runner, progress=progress)
    if top > 0 and map_images > 0:
        dataset = open_dataset(eval_data, eval_split)
        measure_map(report, src.proto, int8, src.manifest, dataset, runner, top=top, limit=map_images,
                    progress=progress)
    fallback = None if min_sqnr_db is None else float_set_for_sqnr(report, src.proto, int8, runner, min_sqnr_db)
    report.meta = {"sqnr_fallback": fallback, "model": str(model_path), "preset": spec.name, "method": calibration.method,
                   "calibration": record["calibration"], "eval_data": eval_data, "eval_split": eval_split,
                   "float_type": "fp32 (CPU evaluation)"}
    return report
