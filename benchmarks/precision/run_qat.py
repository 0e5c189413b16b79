"""QAT vs PTQ on the demo checkpoint: every conv INT8, scored as exported (nms graph, fp16 float parts, ORT CPU).

    PYTHONPATH=$PWD .venv/bin/python -m ssdtrt.cli.app train --qat --from runs/demo/train/best.pt \\
        --out export/qat --qat-steps 300 --qat-calib percentile --threads 1
    PYTHONPATH=$PWD .venv/bin/python benchmarks/precision/run_qat.py runs/demo/train/best.pt export/qat/qat.pt \\
        --method percentile --out benchmarks/precision/fallback/qat.json

Exports FP32 of the checkpoint, PTQ INT8 of the checkpoint and INT8 of the QAT checkpoint (same calibration
method, 256 synthetic train images, no float layers; the QAT checkpoint's own ranges where it has them, as
`ssdtrt export` uses them) and scores each on the synthetic val split (`ssdtrt eval`'s
path: Detector + evaluate); lints the QAT INT8 graph for TensorRT 10 and 11.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("qat_checkpoint", type=Path)
    ap.add_argument("--method", default="percentile")
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--export-dir", type=Path, default=Path("export/qat"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/precision/fallback/qat.json"))
    args = ap.parse_args()

    from ssdtrt.data import open_dataset
    from ssdtrt.evaluate import evaluate
    from ssdtrt.export.calibration import CalibrationConfig
    from ssdtrt.export.lint import lint_onnx
    from ssdtrt.export.onnx_export import export_checkpoint
    from ssdtrt.io.files import atomic_write_json, sha256_file
    from ssdtrt.model.checkpoint import load_checkpoint
    from ssdtrt.inference.detector import Detector

    ds = open_dataset("synthetic", "val")
    exp = args.export_dir
    calib = CalibrationConfig("synthetic", 256, args.method, cache_dir=exp / ".calib")
    variants = [("fp32", args.checkpoint, "fp32"), (f"ptq int8 {args.method}", args.checkpoint, "int8"),
                (f"qat int8 {args.method}", args.qat_checkpoint, "int8")]
    rows = []
    from ssdtrt.train.qat_run import qat_ranges

    for name, ckpt, precision in variants:
        out = exp / f"{name.replace(' ', '_')}.onnx"
        cfg = dataclasses.replace(calib, fixed_ranges=qat_ranges(ckpt)[0])  # what `ssdtrt export` does
        export_checkpoint(ckpt, out, mode="nms", precision=precision, dynamic_batch=True,
                          calibration=cfg if precision == "int8" else None)
        with Detector(out, backend="onnxruntime", providers=["CPUExecutionProvider"], batch_size=16) as det:
            res = evaluate(det.detect, ds, batch_size=16, limit=args.images)
        row = {"variant": name, "checkpoint": str(ckpt), "onnx": str(out), "map": round(res.map, 5),
               "map50": round(res.map50, 5)}
        if precision == "int8":
            row["lint"] = {t: [str(i) for i in lint_onnx(out, trt_major=t).issues] for t in (10, 11)}
        rows.append(row)
        print(row, flush=True)
    base = rows[0]["map"]
    for r in rows:
        r["drop_pts"] = round(100 * (base - r["map"]), 2)
    qat = load_checkpoint(args.qat_checkpoint).get("extra", {}).get("qat", {})
    atomic_write_json(args.out, {"rows": rows, "qat_run": qat, "images": args.images,
                                 "checkpoint_sha256": sha256_file(args.checkpoint)})


if __name__ == "__main__":
    main()
