"""The demo's models: ONNX exports (fp32 raw / nms, fp16 nms, int8 Q/DQ raw / nms) and the engines built from them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ssdtrt.demo.context import DemoRun
from ssdtrt.demo.settings import DemoSettings


def export_float(run: DemoRun, ckpt: Path, folder: Path) -> None:
    from ssdtrt.export.onnx_export import export_checkpoint

    for name, mode, precision in (("onnxruntime-fp32-raw", "raw", "fp32"), ("onnxruntime-fp32-nms", "nms", "fp32"),
                                  ("onnxruntime-fp16-nms", "nms", "fp16")):
        out = folder / f"ssd-small-{mode}{'' if precision == 'fp32' else '-' + precision}.onnx"
        path = export_checkpoint(ckpt, out, mode=mode, precision=precision, dynamic_batch=True).onnx_path
        run.artifacts[name] = (path, "onnxruntime")


def export_int8(run: DemoRun, ckpt: Path, folder: Path, cfg: DemoSettings) -> dict[str, Any]:
    """Q/DQ int8 in nms mode (scored by ONNX Runtime) and raw mode (parity in ORT, source of the OpenVINO int8)."""
    from ssdtrt.export.calibration import CalibrationConfig
    from ssdtrt.export.onnx_export import export_checkpoint

    from ssdtrt.bench.machine import cpu_lacks_int8_dot_products

    # These int8 graphs run on this CPU (ONNX Runtime, OpenVINO): without VNNI, 8-bit weights saturate OpenVINO's
    # 16-bit sums (measured −1.1 mAP pt), so they get 7-bit weights there; a TensorRT int8 export would keep 8 bits.
    # Float parts fp32 (--int8-float fp32): CPU runtimes run fp16 Q/DQ graphs 2-4× slower (TensorRT wants fp16).
    reduce_range = cpu_lacks_int8_dot_products()
    calib = CalibrationConfig(data="synthetic", num_images=cfg.calib_images, method=cfg.calib_method,
                              cache_dir=folder / ".calib", reduce_range=reduce_range, high_precision="fp32")
    seconds: dict[str, float] = {}
    for name, mode in (("onnxruntime-int8-nms", "nms"), ("onnxruntime-int8-raw", "raw")):
        t = time.perf_counter()
        res = export_checkpoint(ckpt, folder / f"ssd-small-{mode}-int8.onnx", mode=mode, precision="int8",
                                dynamic_batch=True, calibration=calib)
        seconds[mode] = round(time.perf_counter() - t, 1)
        run.artifacts[name] = (res.onnx_path, "onnxruntime")
    return {"data": "synthetic (train split)", "method": cfg.calib_method, "images": cfg.calib_images,
            "weight_bits": 7 if reduce_range else 8, "export_s": seconds}


def build_engines(run: DemoRun, folder: Path, tensorrt_reason: str | None) -> dict[str, Any]:
    from ssdtrt.engines.openvino_builder import build_openvino

    # OpenVINO from the raw graphs (numpy postprocess in the pipeline): the raw int8 ONNX keeps its Q/DQ → int8 IR
    for name, src in (("openvino-f32-raw", "onnxruntime-fp32-raw"), ("openvino-int8-raw", "onnxruntime-int8-raw")):
        stem = run.artifacts[src][0].stem
        run.artifacts[name] = (build_openvino(run.artifacts[src][0], folder / stem).engine_path, "openvino")
    if tensorrt_reason is not None:
        run.log(f"    TensorRT skipped: {tensorrt_reason}")
        return {"built": False, "reason": tensorrt_reason}
    from ssdtrt.engines.tensorrt_builder import build_tensorrt

    plan = build_tensorrt(run.artifacts["onnxruntime-fp32-nms"][0], folder / "ssd-small-nms.plan", max_batch=16)
    run.artifacts["tensorrt-fp32-nms"] = (plan.engine_path, "tensorrt")
    return {"built": True, "engine": str(plan.engine_path)}
