"""INT8 within an mAP budget on the demo checkpoint: sensitivity per calibration method, the SQNR ↔ mAP relation,
`ssdtrt export --max-drop` per method (float-layer count, drop, lint) and OpenVINO latency of the results.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/precision/run_fallback.py runs/demo/train/best.pt \\
        --out benchmarks/precision/fallback

Per method M (minmax, percentile, entropy):
  1. `ssdtrt sensitivity CKPT --calib-method M --map-images N --top 3` → OUT/sensitivity-M.{json,md,png};
  2. SQNR ↔ mAP: the top-k layers of that ranking left float, k ∈ {0, 1, 2, 4, 8, 16, all}: head SQNR (32 images)
     and mAP drop (N images), fp32 float parts, ONNX Runtime with the reference Q/DQ semantics;
  3. `ssdtrt export CKPT --mode nms --dynamic-batch --precision int8 --calib-method M --max-drop B --eval-images N`
     (fp16 float parts: the TensorRT form), then `ssdtrt lint --trt 10` and `--trt 11`.
Then OpenVINO CPU latency (batch 1, p50 over interleaved rounds) of FP32, each full INT8 and each mixed result.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

METHODS = ("minmax", "percentile", "entropy")


def sqnr_map_curve(ckpt: Path, method: str, ranking: list[str], n_images: int, cache: Path) -> list[dict]:
    from ssdtrt.data import open_dataset
    from ssdtrt.evaluate import evaluate
    from ssdtrt.export.calibration import CalibrationConfig, calibration_tensors
    from ssdtrt.export.float_variants import float_variant, head_graph
    from ssdtrt.export.fp32_source import load_fp32_source
    from ssdtrt.export.precision import quantize_int8
    from ssdtrt.export.sensitivity import HeadRunner, head_predict_fn, sqnr_db

    src = load_fp32_source(ckpt)
    spec = src.manifest.model_spec
    int8, _ = quantize_int8(src.proto, spec, CalibrationConfig("synthetic", 256, method, cache_dir=cache,
                                                               high_precision="fp32"))
    images, _ = calibration_tensors(CalibrationConfig("synthetic", 32, split="val", cache_dir=cache), spec.preprocess)
    runner = HeadRunner(images)
    fh, ih = head_graph(src.proto), head_graph(int8)
    ref = runner.run(fh)
    ds = open_dataset("synthetic", "val")
    fp32_map = evaluate(head_predict_fn(fh, src.manifest, runner), ds, limit=n_images).map
    rows = []
    for k in sorted({0, 1, 2, 4, 8, 16, len(ranking)}):
        g = float_variant(ih, fh, ranking[:k])
        m = evaluate(head_predict_fn(g, src.manifest, runner), ds, limit=n_images).map
        rows.append({"method": method, "float_layers": k, "sqnr_db": round(sqnr_db(ref, runner.run(g)), 2),
                     "drop_pts": round(100 * (fp32_map - m), 2)})
        print(rows[-1], flush=True)
    return rows


def openvino_latency(models: dict[str, Path], images: np.ndarray, rounds: int, iters: int) -> dict[str, dict]:
    """p50 ms per model, batch 1, measured in `rounds` interleaved rounds of `iters` runs (shared-machine drift)."""
    from ssdtrt.runtime.openvino_runner import openvino_core

    core = openvino_core()  # the process's one Core (openvino_core says why)
    compiled = {k: core.compile_model(str(p), "CPU", {"INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY"})
                for k, p in models.items()}
    x = images[:1]
    times: dict[str, list[float]] = {k: [] for k in models}
    for c in compiled.values():
        for _ in range(5):
            c(x)
    for _ in range(rounds):
        for k, c in compiled.items():
            for _ in range(iters):
                t = time.perf_counter()
                c(x)
                times[k].append(1000 * (time.perf_counter() - t))
    return {k: {"p50_ms": round(float(np.median(v)), 3), "runs": len(v)} for k, v in times.items()}


def main() -> None:  # noqa: C901 - a linear script
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/precision/fallback"))
    ap.add_argument("--export-dir", type=Path, default=Path("export/fallback"))
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--max-drop", type=float, default=0.5)
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--skip-curve", action="store_true")
    args = ap.parse_args()

    from ssdtrt.cli.app import main as cli
    from ssdtrt.core.manifest import read_manifest
    from ssdtrt.export.calibration import CalibrationConfig, calibration_tensors
    from ssdtrt.export.lint import lint_onnx
    from ssdtrt.export.onnx_export import export_checkpoint
    from ssdtrt.io.files import atomic_write_json, sha256_file

    ckpt, out, exp = args.checkpoint, args.out, args.export_dir
    out.mkdir(parents=True, exist_ok=True)
    exp.mkdir(parents=True, exist_ok=True)
    cache = exp / ".calib"
    record: dict = {"meta": {"checkpoint": str(ckpt), "sha256": sha256_file(ckpt), "images": args.images,
                             "max_drop_pts": args.max_drop, "cpu": _cpu_model(), "cpu_count": os.cpu_count(),
                             "python": platform.python_version(), "loadavg_start": _load()},
                    "sensitivity": {}, "curve": [], "fallback": {}, "commands": []}
    for method in args.methods:
        sens_dir = out / f"sensitivity-{method}"
        cmd = ["sensitivity", str(ckpt), "--calib-method", method, "--map-images", str(args.images), "--top", "3",
               "--out", str(sens_dir)]
        t0 = time.perf_counter()
        assert cli(cmd) == 0
        record["commands"].append("ssdtrt " + " ".join(cmd))
        sens = json.loads((sens_dir / "sensitivity.json").read_text())
        record["sensitivity"][method] = {"s": round(time.perf_counter() - t0, 1), "int8_sqnr_db": sens["int8_sqnr_db"],
                                         "fp32_map": sens["fp32_map"], "int8_map": sens["int8_map"],
                                         "top": sens["layers"][:3]}
        if not args.skip_curve:
            ranking = [r["layer"] for r in sens["layers"]]
            record["curve"] += sqnr_map_curve(ckpt, method, ranking, args.images, cache)
        path = exp / f"demo_nms_int8-{method}-maxdrop.onnx"
        cmd = ["export", str(ckpt), "--mode", "nms", "--dynamic-batch", "--precision", "int8", "--calib-data",
               "synthetic", "--calib-method", method, "--max-drop", str(args.max_drop), "--eval-images",
               str(args.images), "--out", str(path)]
        t0 = time.perf_counter()
        code = cli(cmd)
        record["commands"].append("ssdtrt " + " ".join(cmd))
        row: dict = {"exit_code": code, "s": round(time.perf_counter() - t0, 1)}
        if code == 0:
            fb = read_manifest(path).source["fallback"]
            row.update({k: fb[k] for k in ("float_layers", "drop_pts", "fp32_map", "int8_map", "tried")})
            for trt in (10, 11):
                rep = lint_onnx(path, trt_major=trt)
                row[f"lint_trt{trt}"] = {"ok": rep.ok, "issues": [str(i) for i in rep.issues]}
        record["fallback"][method] = row
        print(method, {k: v for k, v in row.items() if k != "tried"}, flush=True)
        atomic_write_json(out / "results.json", record)

    models = {"fp32": exp / "demo_nms_fp32.onnx"}
    export_checkpoint(ckpt, models["fp32"], mode="nms", precision="fp32", dynamic_batch=True)
    for method in args.methods:
        full = exp / f"demo_nms_int8-{method}.onnx"
        export_checkpoint(ckpt, full, mode="nms", precision="int8", dynamic_batch=True,
                          calibration=CalibrationConfig("synthetic", 256, method, cache_dir=cache))
        models[f"int8 {method}"] = full
        mixed = exp / f"demo_nms_int8-{method}-maxdrop.onnx"
        if record["fallback"][method].get("exit_code") == 0 and record["fallback"][method]["float_layers"]:
            models[f"int8 {method} --max-drop {args.max_drop:g}"] = mixed
    images, _ = calibration_tensors(CalibrationConfig("synthetic", 1, split="val", cache_dir=cache),
                                    read_manifest(models["fp32"]).model_spec.preprocess)
    record["meta"]["loadavg_latency_start"] = _load()
    record["openvino_latency"] = openvino_latency(models, images, rounds=8, iters=25)
    record["meta"]["loadavg_end"] = _load()
    record["models"] = {k: str(v) for k, v in models.items()}
    atomic_write_json(out / "results.json", record)
    for k, v in record["openvino_latency"].items():
        print(f"{k:40s} {v['p50_ms']:.3f} ms", flush=True)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _load() -> str:
    try:
        return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()
    except OSError:
        return ""


if __name__ == "__main__":
    main()
