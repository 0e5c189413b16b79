"""FP32 / FP16 / INT8 (x calibration method, x float type between the int8 ops) mAP of one checkpoint, on CPU.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/precision/run_precision.py runs/demo/train/best.pt \
        --out benchmarks/precision

Each variant is what `ssdtrt export CKPT --mode nms --dynamic-batch --precision P [--calib-data synthetic
--calib-images N --calib-method M --int8-float F]` writes, scored as `ssdtrt eval MODEL.onnx --data synthetic
--split val` does (ONNX Runtime, CPU EP). Writes results.json and results.md (the table, the commands, the CPU and
its flags) into --out; ONNX files go to --export-dir.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/precision"))
    ap.add_argument("--export-dir", type=Path, default=Path("export/precision"))
    ap.add_argument("--data", default="synthetic")
    ap.add_argument("--split", default="val")
    ap.add_argument("--mode", default="nms", choices=("raw", "decoded", "nms"))
    ap.add_argument("--calib-images", type=int, default=256)
    args = ap.parse_args()

    from ssdtrt.data import open_dataset
    from ssdtrt.evaluate import evaluate
    from ssdtrt.export.calibration import CalibrationConfig, cache_dir_for
    from ssdtrt.export.lint import lint_onnx
    from ssdtrt.export.onnx_export import export_checkpoint
    from ssdtrt.io.files import atomic_write_json, atomic_write_text, sha256_file
    from ssdtrt.inference.detector import Detector

    dataset = open_dataset(args.data, args.split)
    rows: list[dict] = []

    def score(name: str, fn, path: Path | None, extra: dict) -> None:
        t0 = time.perf_counter()
        res = evaluate(fn, dataset, batch_size=16)
        rows.append({
            "variant": name, "map": res.map, "map50": res.map50, "file": str(path) if path else str(args.checkpoint),
            "eval_s": round(time.perf_counter() - t0, 1), **extra,
        })
        print(f"{name:24s} mAP {res.map:.4f}  mAP@.5 {res.map50:.4f}", flush=True)

    with Detector(args.checkpoint, postprocess_placement="host-torch", batch_size=16) as det:  # as `ssdtrt eval`
        score("torch fp32", det.detect, None, {"command": f"ssdtrt eval {args.checkpoint}"})
    variants = [("fp32", None, "fp16"), ("fp16", None, "fp16")]
    variants += [("int8", m, "fp16") for m in ("minmax", "entropy", "percentile")]
    variants += [("int8", m, "fp32") for m in ("minmax", "percentile")]
    for precision, method, float_type in variants:
        name = f"{precision}" + (f"-{method}" if method else "") + ("-fp32float" if float_type == "fp32" else "")
        out = args.export_dir / f"{args.checkpoint.stem}_{args.mode}_{name}.onnx"
        calib = None
        cmd = f"ssdtrt export {args.checkpoint} --mode {args.mode} --dynamic-batch --precision {precision} --out {out}"
        if method:
            calib = CalibrationConfig(args.data, args.calib_images, method, cache_dir=cache_dir_for(out),
                                      high_precision=float_type)
            cmd += f" --calib-data {args.data} --calib-images {args.calib_images} --calib-method {method}"
            cmd += f" --int8-float {float_type}" if float_type != "fp16" else ""
        t0 = time.perf_counter()
        res = export_checkpoint(args.checkpoint, out, mode=args.mode, precision=precision, dynamic_batch=True,
                                calibration=calib)
        export_s = round(time.perf_counter() - t0, 1)
        lint = lint_onnx(out)
        calib_rec = res.manifest.source.get("calibration") or {}
        with Detector(out, providers=["CPUExecutionProvider"], batch_size=16) as det:
            score(f"onnx {name}", det.detect, out, {
                "command": f"{cmd} && ssdtrt eval {out} --data {args.data} --split {args.split}",
                "export_s": export_s, "lint_ok": lint.ok, "lint_issues": [str(i) for i in lint.issues],
                "size_mb": round(out.stat().st_size / 2**20, 2), "calibration": calib_rec or None,
            })

    base = rows[1]["map"]
    for r in rows:
        r["delta_map_pts"] = round(100 * (r["map"] - base), 2)
    meta = {
        "checkpoint": str(args.checkpoint), "checkpoint_sha256": sha256_file(args.checkpoint),
        "data": args.data, "split": args.split, "num_images": len(dataset), "mode": args.mode,
        "calib_images": args.calib_images, "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(), **_cpu(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "results.json", {"meta": meta, "rows": rows})
    lines = [
        "| variant | mAP@[.5:.95] | mAP@.5 | Δ mAP vs ONNX fp32 (pts) | size MB | lint |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['map']:.4f} | {r['map50']:.4f} | {r['delta_map_pts']:+.2f} | "
                     f"{r.get('size_mb', '')} | {_lint_cell(r)} |")
    cmds = "\n".join(f"    {r['command']}" for r in rows)
    atomic_write_text(args.out / "results.md", "\n".join(lines) + "\n\nCommands:\n\n" + cmds + "\n\n```\n"
                      + json.dumps(meta, indent=1) + "\n```\n")


def _lint_cell(row: dict) -> str:
    if "lint_ok" not in row:
        return ""
    return ("clean" if not row["lint_issues"] else f"{len(row['lint_issues'])} warning(s)") if row["lint_ok"] else "FAIL"


def _cpu() -> dict[str, object]:
    """CPU model and the SIMD flags that decide int8 speed/accuracy on CPU (VNNI/AMX vs AVX2 only)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    model = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "")
    flags = next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), [])
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_int8", "amx_tile")
    import os

    return {"cpu": model, "cpu_flags": [f for f in wanted if f in flags], "cpu_count": os.cpu_count()}


if __name__ == "__main__":
    main()
