"""INT8 within an mAP budget: return the most sensitive layers to float until the drop against FP32 fits.

Order: `sensitivity.measure_sqnr`'s ranking (head SQNR with the layer alone INT8, worst first) — cheap, so it runs
on the exported graph itself (same calibration ranges cache as the export). Count: the smallest k such that the
top-k layers in float keep the mAP drop ≤ the budget, found by doubling k (0, 1, 2, 4, …) and then bisecting
between the last failing and the first passing k; the drop is assumed to fall as k grows (it need not, strictly;
every k tried is recorded). Every candidate is a real export (`export_model`, float layers left in the
`--int8-float` type, the graph's float-layer metadata set for `ssdtrt lint`) scored like `ssdtrt eval` scores it,
so the drop in the manifest is the drop of the file written.

`range_method` (`--range-fallback`) adds a cheaper first stage: the top-k layers' inputs take another calibration
method's ranges (every conv stays INT8, no speed cost) — for methods that clip, such as entropy on the demo data.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ssdtrt.core.errors import ExportError
from ssdtrt.export.float_search import search_float_count

if TYPE_CHECKING:
    from ssdtrt.export.calibration import CalibrationConfig
    from ssdtrt.export.onnx_export import ExportResult


@dataclass
class FallbackResult:
    """The float layers chosen, the drop measured with them, and every count tried (k → drop, points)."""

    float_layers: list[str]
    drop_pts: float
    fp32_map: float
    int8_map: float
    max_drop_pts: float
    tried: dict[int, float] = field(default_factory=dict)
    ranking: list[str] = field(default_factory=list)
    eval: dict[str, Any] = field(default_factory=dict)
    #: layers kept INT8 with `range_method`'s input ranges (the range fallback), and its k → drop when it failed
    range_layers: list[str] = field(default_factory=list)
    range_method: str | None = None
    range_tried: dict[int, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "tried": {str(k): v for k, v in sorted(self.tried.items())},
                "range_tried": {str(k): v for k, v in sorted(self.range_tried.items())}}


def fallback_export(
    model: Any,
    out: Path,
    *,
    calibration: CalibrationConfig,
    eval_data: str,
    eval_split: str = "val",
    eval_images: int = 200,
    max_drop_pts: float = 0.5,
    sqnr_images: int = 32,
    range_method: str | None = None,
    progress: Callable[[str], None] | None = None,
    **export_kwargs: Any,
) -> tuple[ExportResult, FallbackResult]:
    """`export_model(model, out, precision="int8", ...)` with as few float layers as the budget allows.

    With `range_method` (e.g. percentile for an entropy export), first try giving the top-k layers' inputs that
    method's ranges instead — every conv stays INT8 — and fall back to float layers only if that cannot fit."""
    from ssdtrt.core.manifest import read_manifest, write_artifact_with_manifest
    from ssdtrt.data import open_dataset
    from ssdtrt.export.onnx_export import ExportResult, export_model

    say = progress or (lambda _msg: None)
    dataset = open_dataset(eval_data, eval_split)
    n_eval = min(eval_images, len(dataset))
    if n_eval == 0:
        raise ExportError(f"evaluation set {eval_data!r} ({eval_split}) is empty: --max-drop needs images")
    say(f"ranking layers by head SQNR on {sqnr_images} {eval_data} {eval_split} images")
    ranking = rank_layers(model, calibration, eval_data, eval_split, sqnr_images, export_kwargs)
    with tempfile.TemporaryDirectory(prefix="ssdtrt-fallback-", dir=out.parent if out.parent.is_dir() else None) as tmp:
        fp32 = export_model(model, Path(tmp) / "fp32.onnx", precision="fp32", **export_kwargs)
        fp32_map = _onnx_map(fp32.onnx_path, dataset, n_eval)
        say(f"FP32 mAP {fp32_map:.4f} on {n_eval} images")
        maps: dict[str, float] = {}

        def drop_for(kind: str, k: int) -> float:
            field_name = "range_layers" if kind == "range" else "float_layers"
            cfg = dataclasses.replace(calibration, **{field_name: tuple(ranking[:k])},
                                      **({"range_method": range_method} if range_method else {}))
            res = export_model(model, Path(tmp) / f"int8-{kind}-{k}.onnx", precision="int8", calibration=cfg,
                               **export_kwargs)
            maps[f"{kind}-{k}"] = m = _onnx_map(res.onnx_path, dataset, n_eval)
            say(f"{k} {kind} fallback layer(s): mAP {m:.4f}, drop {100 * (fp32_map - m):.2f} pts")
            return round(100 * (fp32_map - m), 3)

        kind, range_tried = "float", {}
        if range_method and range_method != calibration.method:
            try:
                k, range_tried = search_float_count(lambda j: drop_for("range", j), len(ranking), max_drop_pts)
                kind = "range"
            except ExportError as err:
                say(f"{range_method} ranges alone cannot meet the budget ({err}); returning layers to float")
                range_tried = {int(key.split("-")[1]): round(100 * (fp32_map - v), 3) for key, v in maps.items()}
        tried = range_tried
        if kind == "float":
            k, tried = search_float_count(lambda j: drop_for("float", j), len(ranking), max_drop_pts)
        result = FallbackResult(ranking[:k] if kind == "float" else [], tried[k], round(fp32_map, 5),
                                round(maps[f"{kind}-{k}"], 5), max_drop_pts, tried, ranking,
                                {"data": eval_data, "split": eval_split, "num_images": n_eval,
                                 "sqnr_images": sqnr_images, "rank_by": "head SQNR, layer alone INT8"},
                                ranking[:k] if kind == "range" else [], range_method,
                                range_tried if kind == "float" else {})
        chosen = Path(tmp) / f"int8-{kind}-{k}.onnx"
        manifest = read_manifest(chosen)
        manifest = dataclasses.replace(manifest, artifact=out.name,
                                       source={**manifest.source, "fallback": result.to_dict()})
        out.parent.mkdir(parents=True, exist_ok=True)
        manifest_path = write_artifact_with_manifest(out, chosen.read_bytes(), manifest)
    return ExportResult(out, manifest_path, read_manifest(out)), result


def rank_layers(model: Any, calibration: CalibrationConfig, data: str, split: str, n_images: int,
                export_kwargs: dict[str, Any]) -> list[str]:
    """Quantizable layers, most sensitive first, measured on the export's own body graph (shares its ranges)."""
    from ssdtrt.export.calibration import CalibrationConfig, calibration_tensors
    from ssdtrt.export.onnx_export import export_body
    from ssdtrt.export.precision import quantize_int8
    from ssdtrt.export.sensitivity import HeadRunner, measure_sqnr

    body_kwargs = {k: export_kwargs[k] for k in ("mode", "batch", "dynamic_batch", "opset") if k in export_kwargs}
    body = export_body(model, **body_kwargs)
    cfg = dataclasses.replace(calibration, float_layers=(), high_precision="fp32")  # CPU-fast, same ranges
    int8, _ = quantize_int8(body, model.spec, cfg)
    images, _ = calibration_tensors(CalibrationConfig(data, n_images, split=split, cache_dir=calibration.cache_dir),
                                    model.spec.preprocess)
    return measure_sqnr(body, int8, HeadRunner(images)).ranking


def _onnx_map(path: Path, dataset: Any, n_images: int) -> float:
    """COCO mAP of an exported ONNX on the first `n_images` of `dataset`, as `ssdtrt eval` computes it (ORT, CPU)."""
    from ssdtrt.evaluate import evaluate
    from ssdtrt.inference.detector import Detector

    with Detector(path, backend="onnxruntime", providers=["CPUExecutionProvider"], batch_size=16,
                  verify_hash=False) as det:
        return float(evaluate(det.detect, dataset, batch_size=16, limit=n_images).map)
