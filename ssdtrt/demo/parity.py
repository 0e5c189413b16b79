"""Parity of every exported / built variant against the checkpoint (`compare_models`), gated per variant."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssdtrt.demo.context import DemoRun


@dataclass(frozen=True)
class ParityRule:
    """How close a candidate must be to the checkpoint. int8 is gated on mean error and mAP loss (element-wise
    max error and the IoU-0.99 detection match rate are recorded but do not gate: every box moves a little)."""

    candidate: str  # variant name
    atol: float | None
    rtol: float | None
    min_match: float | None
    max_mean_abs: float | None = None
    max_map_drop_pts: float | None = None

    def describe(self) -> str:
        parts = []
        if self.atol is not None:
            parts.append(f"|Δ| ≤ {self.atol:g} + {self.rtol:g}·|ref| per element")
        if self.min_match is not None:
            parts.append(f"detection match ≥ {self.min_match:g}")
        if self.max_mean_abs is not None:
            parts.append(f"mean |Δ| ≤ {self.max_mean_abs:g} per head")
        if self.max_map_drop_pts is not None:
            parts.append(f"mAP drop ≤ {self.max_map_drop_pts:g} pt")
        return "; ".join(parts)


FP32 = dict(atol=1e-4, rtol=1e-3, min_match=0.99)
PARITY_RULES = (
    ParityRule("onnxruntime-fp32-raw", **FP32),
    ParityRule("openvino-f32-raw", **FP32),
    # nms graph: detections only; fp16 rounding moves a few low-score boxes across the score threshold / IoU 0.99
    ParityRule("onnxruntime-fp16-nms", atol=None, rtol=None, min_match=0.95),
    ParityRule("onnxruntime-int8-raw", atol=None, rtol=None, min_match=None, max_mean_abs=0.1, max_map_drop_pts=1.0),
    ParityRule("openvino-int8-raw", atol=None, rtol=None, min_match=None, max_mean_abs=0.1, max_map_drop_pts=1.0),
    ParityRule("tensorrt-fp32-nms", atol=None, rtol=None, min_match=0.95),  # TF32 convolutions on Ampere and newer
)
#: variant whose mAP gates a parity candidate that is not itself scored (same Q/DQ graph, NMS tail or not)
MAP_OF = {"onnxruntime-int8-raw": "onnxruntime-int8-nms"}


def parity(run: DemoRun, ckpt: Path, variants: dict[str, dict[str, Any]], num_images: int) -> list[dict[str, Any]]:
    from ssdtrt.compare import compare_models, load_images, load_subject

    images = load_images("synthetic", num_images)
    ref = load_subject(ckpt)
    rows: list[dict[str, Any]] = []
    try:
        for rule in (r for r in PARITY_RULES if r.candidate in run.artifacts):
            path, backend = run.artifacts[rule.candidate]
            cand = load_subject(path, backend=backend)
            try:
                rep = compare_models(ref, cand, images, atol=rule.atol if rule.atol is not None else math.inf,
                                     rtol=rule.rtol or 0.0, min_match=rule.min_match or 0.0,
                                     progress=run.task(f"compare {rule.candidate}", len(images)))
            finally:
                cand.close()
            rows.append(parity_row(rule, rep, variants))
            run.log(f"    torch vs {rule.candidate:22s} {'PASS' if rows[-1]['passed'] else 'FAIL'}  "
                    f"match {rep.match_rate:.3f}  " + "  ".join(f"{o.name} max|Δ| {o.max_abs:.2g}" for o in rep.outputs))
    finally:
        ref.close()
    return rows


def parity_row(rule: ParityRule, rep: Any, variants: dict[str, dict[str, Any]]) -> dict[str, Any]:
    checks = []
    if rule.atol is not None:
        checks.append(all(o.passed for o in rep.outputs))
    if rule.min_match is not None:
        checks.append(rep.match_rate >= rule.min_match)
    if rule.max_mean_abs is not None:
        checks.append(bool(rep.outputs) and all(o.mean_abs <= rule.max_mean_abs for o in rep.outputs))
    drop = None
    if rule.max_map_drop_pts is not None:
        scored = variants.get(MAP_OF.get(rule.candidate, rule.candidate))
        drop = None if scored is None else -scored["delta_map_pts"]
        checks.append(drop is not None and drop <= rule.max_map_drop_pts)
    return {
        "a": "torch-fp32", "b": rule.candidate, "a_name": rep.a, "b_name": rep.b, "images": rep.num_images,
        "criteria": rule.describe(), "passed": bool(checks) and all(checks), "match_rate": rep.match_rate,
        "detections": [rep.detections_a, rep.detections_b],
        "outputs": {o.name: {"max_abs": o.max_abs, "mean_abs": o.mean_abs, "max_rel": o.max_rel} for o in rep.outputs},
        "map_drop_pts": drop,
    }
