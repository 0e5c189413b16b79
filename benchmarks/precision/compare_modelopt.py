"""ssdtrt's INT8/FP16 flow (onnxruntime.quantization + residual Q/DQ + fp16 float parts) vs NVIDIA modelopt's ONNX
paths (`modelopt.onnx.quantization.quantize`, `modelopt.onnx.autocast.convert_to_mixed_precision`), on CPU.

    PYTHONPATH=$PWD:/tmp/mo .venv/bin/python benchmarks/precision/compare_modelopt.py \
        --checkpoint runs/demo/train/best.pt --out benchmarks/precision

Per graph: the placement rules (`ssdtrt lint`, residual Adds with a DQ residual, convs fed by DQ, the type of the
float layers between, the tail after the head concatenation and L2 norms), export wall time (torch export included,
same calibration images) for SSD300-ResNet50 / -VGG16 (random weights: time and graph rules only), and mAP of the
demo checkpoint (nms graph, synthetic val) scored with ONNX Runtime's CPU EP. modelopt is imported from wherever
PYTHONPATH finds it (see README: its [onnx] extra cannot go into the shared venv).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

SKIP_OPS = {"QuantizeLinear", "DequantizeLinear", "Cast", "Constant", "Shape", "Gather", "Unsqueeze", "Squeeze",
            "Reshape", "Transpose", "Concat", "Slice", "Identity", "Expand", "Flatten"}


def graph_rules(proto: Any) -> dict[str, Any]:
    """Placement facts of a graph: lint counts, residual Q/DQ, DQ-fed convs, float types in and after the body."""
    import onnx

    from ssdtrt.export.graph_regions import GraphIndex, norm_nodes, residual_input, tail_nodes
    from ssdtrt.export.lint import lint_onnx

    report = lint_onnx(proto)
    index = GraphIndex.of(proto)
    g = onnx.shape_inference.infer_shapes(proto).graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*g.value_info, *g.input, *g.output)}
    types |= {t.name: t.data_type for t in g.initializer}
    residual = [(a, residual_input(index, a)) for a in index.nodes if a.op_type == "Add"]
    residual = [(a, r) for a, r in residual if r is not None]
    convs = [n for n in index.nodes if n.op_type == "Conv"]
    tail, norms = tail_nodes(index), norm_nodes(index)

    def in_type(n: Any) -> str:
        t = next((types.get(i) for i in n.input if types.get(i) in (1, 10)), None)
        return {1: "fp32", 10: "fp16"}.get(t, "?")

    def float_ops(names: set[str] | None, inside: bool) -> list[str]:
        """Input float type of the compute nodes (with a float input) inside / outside `names`."""
        picked = [n for n in index.nodes if n.op_type not in SKIP_OPS and (n.name in names) == inside]
        return [t for t in map(in_type, picked) if t != "?"]

    body = float_ops(tail | norms, inside=False)
    tail_types = float_ops(tail, inside=True)
    return {
        "lint_errors": len(report.errors), "lint_warnings": len(report.warnings),
        "lint_first": [str(i) for i in report.issues[:3]],
        "residual_adds_quantized": f"{sum(index.source_op(r) == 'DequantizeLinear' for _, r in residual)}/{len(residual)}",
        "convs_dq_fed": f"{sum(index.source_op(c.input[0]) == 'DequantizeLinear' for c in convs)}/{len(convs)}",
        "body_fp16_ops": f"{body.count('fp16')}/{len(body)}",
        "tail_fp32_ops": f"{tail_types.count('fp32')}/{len(tail_types)}",
        "l2norm_fp32": [in_type(n) == "fp32" for n in index.nodes if n.op_type in ("ReduceL2", "ReduceSumSquare")],
        "opset": max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
    }


def modelopt_int8(body: Any, tensors: np.ndarray, method: str, tmp: Path) -> Any:
    import onnx
    from modelopt.onnx.quantization import quantize

    src, dst = tmp / "body.onnx", tmp / "body.quant.onnx"
    onnx.save(body, str(src))
    quantize(str(src), quantize_mode="int8", calibration_data={"images": tensors}, calibration_method=method,
             calibration_eps=["cpu"], output_path=str(dst), high_precision_dtype="fp16", log_level="ERROR")
    return onnx.load(str(dst))


def modelopt_fp16(body: Any, tmp: Path) -> Any:
    import onnx
    from modelopt.onnx.autocast import convert_to_mixed_precision

    src = tmp / "body.onnx"
    onnx.save(body, str(src))
    return convert_to_mixed_precision(str(src), low_precision_type="fp16", keep_io_types=True, providers=["cpu"])


def export_variant(model: Any, flow: str, precision: str, mode: str, tensors: np.ndarray, calib: Any,
                   out: Path, method: str) -> tuple[Path, float]:
    """Export one variant to `out` (+ manifest); returns the path and the wall time of the whole export."""
    from ssdtrt.export.onnx_export import build_manifest, export_body, export_model, finish_graph, save_onnx
    from ssdtrt.core.manifest import write_manifest

    t0 = time.perf_counter()
    if flow == "ssdtrt":
        export_model(model, out, mode=mode, precision=precision, dynamic_batch=True,
                     calibration=calib if precision == "int8" else None)
        return out, time.perf_counter() - t0
    body = export_body(model, mode=mode, dynamic_batch=True)
    with tempfile.TemporaryDirectory(prefix="ssdtrt-modelopt-") as tmp:
        proto = (modelopt_int8(body, tensors, method, Path(tmp)) if precision == "int8"
                 else modelopt_fp16(body, Path(tmp)))
    proto = finish_graph(proto, model, mode=mode, dynamic_batch=True, postprocess=model.spec.postprocess)
    save_onnx(proto, out)
    write_manifest(out, build_manifest(proto, out, model, mode=mode, precision=precision,
                                       postprocess=model.spec.postprocess, source={"flow": "modelopt"}))
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, required=True, help="trained checkpoint scored for mAP (demo model)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/precision"))
    ap.add_argument("--export-dir", type=Path, default=Path("export/precision-modelopt"))
    ap.add_argument("--calib-images", type=int, default=128)
    ap.add_argument("--timing-calib-images", type=int, default=8, help="calibration images for the big presets")
    ap.add_argument("--presets", default="ssd300-resnet50,ssd300-vgg16")
    args = ap.parse_args()

    import onnx
    import torch

    from ssdtrt.data import open_dataset
    from ssdtrt.evaluate import evaluate
    from ssdtrt.export.calibration import CalibrationConfig, calibration_tensors
    from ssdtrt.io.files import atomic_write_json, atomic_write_text, sha256_file
    from ssdtrt.model.checkpoint import load_model
    from ssdtrt.model.ssd import build_model
    from ssdtrt.inference.detector import Detector

    args.export_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    jobs = [("demo", "nms", "int8", "ssdtrt", "minmax"), ("demo", "nms", "int8", "ssdtrt", "entropy"),
            ("demo", "nms", "int8", "ssdtrt", "percentile"), ("demo", "nms", "int8", "modelopt", "max"),
            ("demo", "nms", "int8", "modelopt", "entropy"), ("demo", "nms", "fp16", "ssdtrt", ""),
            ("demo", "nms", "fp16", "modelopt", "")]
    for preset in filter(None, args.presets.split(",")):
        jobs += [(preset, "decoded", "int8", "ssdtrt", "minmax"), (preset, "decoded", "int8", "modelopt", "max"),
                 (preset, "decoded", "fp16", "ssdtrt", ""), (preset, "decoded", "fp16", "modelopt", "")]
    # modelopt patches onnxruntime.quantization's calibrator functions when imported: ssdtrt's flow runs first
    jobs.sort(key=lambda job: job[3] == "modelopt")
    val = open_dataset("synthetic", "val")
    for preset, mode, precision, flow, method in jobs:
        torch.manual_seed(0)
        model = load_model(args.checkpoint) if preset == "demo" else build_model(preset).eval()
        n = args.calib_images if preset == "demo" else args.timing_calib_images
        ort_method = {"max": "minmax"}.get(method, method) or "minmax"
        calib = CalibrationConfig("synthetic", n, ort_method, cache_dir=None)
        tensors = calibration_tensors(calib, model.spec.preprocess)[0] if precision == "int8" else None
        name = f"{preset}_{mode}_{precision}_{flow}{'-' + method if method else ''}"
        row: dict[str, Any] = {"preset": preset, "mode": mode, "precision": precision, "flow": flow, "method": method,
                               "calib_images": n if precision == "int8" else None}
        try:
            path, secs = export_variant(model, flow, precision, mode, tensors, calib,
                                        args.export_dir / f"{name}.onnx", method)
        except Exception as err:  # noqa: BLE001 - a failing flow is a result to record
            row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
            rows.append(row)
            print(name, "FAILED", row["error"], flush=True)
            continue
        row |= {"export_s": round(secs, 1), **graph_rules(onnx.load(str(path)))}
        if preset == "demo":
            with Detector(path, providers=["CPUExecutionProvider"], batch_size=16) as det:
                res = evaluate(det.detect, val, batch_size=16)
            row |= {"map": round(res.map, 4), "map50": round(res.map50, 4)}
        rows.append(row)
        print(name, json.dumps({k: v for k, v in row.items() if k not in ("lint_first",)}), flush=True)
        path.unlink(missing_ok=True)

    meta = {"checkpoint": str(args.checkpoint), "checkpoint_sha256": sha256_file(args.checkpoint),
            "python": platform.python_version(), "machine": platform.machine()}
    try:
        import modelopt

        meta["modelopt"] = modelopt.__version__
    except ImportError as err:
        meta["modelopt"] = f"not importable: {err}"
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "modelopt_comparison.json", {"meta": meta, "rows": rows})
    cols = ["preset", "precision", "flow", "method", "export_s", "map", "map50", "residual_adds_quantized",
            "convs_dq_fed", "body_fp16_ops", "tail_fp32_ops", "l2norm_fp32", "lint_errors", "lint_warnings", "error"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    atomic_write_text(args.out / "modelopt_comparison.md", "\n".join(lines) + "\n\n```\n" + json.dumps(meta, indent=1)
                      + "\n```\n")


if __name__ == "__main__":
    main()
