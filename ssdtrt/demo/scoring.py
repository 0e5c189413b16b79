"""mAP of every demo variant through the same Detector pipeline, and annotated validation images."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ssdtrt.demo.context import DemoRun

SCORED = ("torch-fp32", "onnxruntime-fp32-nms", "onnxruntime-fp16-nms", "onnxruntime-int8-nms", "openvino-f32-raw",
          "openvino-int8-raw", "tensorrt-fp32-nms")


def score_all(run: DemoRun, eval_images: int) -> dict[str, dict[str, Any]]:
    """mAP of each artifact through the Detector pipeline (same preprocess and postprocess for every backend)."""
    from ssdtrt.data import open_dataset
    from ssdtrt.evaluate import evaluate
    from ssdtrt.inference.detector import Detector

    val = open_dataset("synthetic", "val")
    n = min(eval_images, len(val))
    out: dict[str, dict[str, Any]] = {}
    for name in (s for s in SCORED if s in run.artifacts):
        path, backend = run.artifacts[name]
        t = time.perf_counter()
        with Detector(path, backend=backend, batch_size=16, score_threshold=0.01) as det:
            res = evaluate(det.detect, val, batch_size=16, limit=n, progress=run.task(f"mAP {name}", n))
        out[name] = {"map": res.map, "map50": res.map50, "eval_s": round(time.perf_counter() - t, 1),
                     "artifact": str(path), "size_mb": round(size_bytes(path) / 1e6, 2), "images": n}
        run.log(f"    {name:22s} mAP {res.map:.4f}  mAP@.5 {res.map50:.4f}")
    ref = out["torch-fp32"]["map"]
    for v in out.values():
        v["delta_map_pts"] = round(100.0 * (v["map"] - ref), 2)
    return out


def size_bytes(path: Path) -> int:
    """File size; an OpenVINO IR counts its .bin weights too."""
    weights = path.with_suffix(".bin")
    return path.stat().st_size + (weights.stat().st_size if path.suffix == ".xml" and weights.is_file() else 0)


def annotate(folder: Path, model_path: Path, count: int) -> list[str]:
    from ssdtrt.data import open_dataset
    from ssdtrt.inference.detector import Detector
    from ssdtrt.io.draw import draw_detections, write_image

    val = open_dataset("synthetic", "val")
    samples = [val[i] for i in range(min(count, len(val)))]
    with Detector(model_path, score_threshold=0.3) as det:
        dets = det.detect([s.image for s in samples])
    return [str(write_image(folder / f"val_{i:03d}.png", draw_detections(s.image, d)))
            for i, (s, d) in enumerate(zip(samples, dets))]
