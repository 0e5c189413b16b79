"""INT8 graphs with fp16 vs fp32 float parts (`--int8-float`) on this CPU: error vs PyTorch and batch-1 latency in
ONNX Runtime (ssdtrt's runner, and a plain session with every ORT optimization) and OpenVINO.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/precision/cpu_int8_float.py runs/demo/train/best.pt \\
        --out benchmarks/precision

Raw-mode exports (`locs`, `logits`), percentile calibration on 128 synthetic train images; error = mean |Δ| vs the
checkpoint on 8 synthetic val images; latency = p50 of `--iters` batch-1 runs after 5 warm-ups (one run: compare rows
of this table only). Writes cpu_int8_float.json / .md into --out.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def _p50_ms(run, x1: np.ndarray, iters: int) -> float:  # noqa: ANN001 - a callable taking the feeds
    for _ in range(5):
        run(x1)
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        run(x1)
        times.append(time.perf_counter() - t)
    return round(1000 * float(np.median(times)), 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/precision"))
    ap.add_argument("--export-dir", type=Path, default=Path("export/int8-float"))
    ap.add_argument("--iters", type=int, default=40)
    args = ap.parse_args()

    import onnxruntime as ort
    import torch

    from ssdtrt.data import open_dataset
    from ssdtrt.engines.openvino_builder import build_openvino
    from ssdtrt.export.calibration import CalibrationConfig
    from ssdtrt.export.onnx_export import export_checkpoint
    from ssdtrt.bench.record_paths import portable_path
    from ssdtrt.io.files import atomic_write_json, atomic_write_text
    from ssdtrt.model.checkpoint import load_model
    from ssdtrt.preprocess.host import preprocess_images
    from ssdtrt.runtime.onnxruntime_runner import OnnxRuntimeRunner
    from ssdtrt.runtime.openvino_runner import OpenVINORunner

    model = load_model(args.checkpoint)
    val = open_dataset("synthetic", "val")
    x = preprocess_images([val[i].image for i in range(8)], model.spec.preprocess)
    with torch.no_grad():
        ref = dict(zip(("locs", "logits"), (t.numpy() for t in model(torch.from_numpy(x)))))
    rows = []
    for float_type in ("fp32", "fp16"):
        onnx_path = args.export_dir / f"raw_int8_{float_type}float.onnx"
        cfg = CalibrationConfig("synthetic", 128, "percentile", cache_dir=args.export_dir / ".calib",
                                high_precision=float_type)
        export_checkpoint(args.checkpoint, onnx_path, mode="raw", precision="int8", dynamic_batch=True, calibration=cfg)
        ir = build_openvino(onnx_path, args.export_dir / f"raw_int8_{float_type}float.xml").engine_path
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        plain = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        runners = {"onnxruntime (ssdtrt runner)": OnnxRuntimeRunner(onnx_path, providers=["CPUExecutionProvider"]),
                   "openvino": OpenVINORunner(ir)}
        for r in runners.values():
            r.activate()
        calls = {name: (lambda b, r=r: r.infer({"images": b})) for name, r in runners.items()}
        calls["onnxruntime (all ORT optimizations)"] = lambda b: dict(zip(("locs", "logits"), plain.run(None, {"images": b})))
        for name, call in calls.items():
            out = call(x)
            rows.append({"float": float_type, "runtime": name,
                         **{f"mean_abs_err_{k}": round(float(np.abs(out[k] - v).mean()), 4) for k, v in ref.items()},
                         "p50_ms_batch1": _p50_ms(call, x[:1], args.iters)})
            print(json.dumps(rows[-1]), flush=True)
        for r in runners.values():
            r.deactivate()
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "cpu_int8_float.json", {"checkpoint": portable_path(args.checkpoint.absolute(), Path(__file__).resolve().parents[2]), "rows": rows})
    lines = ["| --int8-float | runtime | mean abs err locs | mean abs err logits | p50 ms batch 1 |", "|---|---|---|---|---|"]
    lines += [f"| {r['float']} | {r['runtime']} | {r['mean_abs_err_locs']} | {r['mean_abs_err_logits']} | "
              f"{r['p50_ms_batch1']} |" for r in rows]
    atomic_write_text(args.out / "cpu_int8_float.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
