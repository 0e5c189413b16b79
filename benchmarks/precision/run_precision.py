"""FP32 / FP16 / INT8 (x calibration method) mAP of one checkpoint, scored on CPU with ONNX Runtime.

    .venv/bin/python benchmarks/precision/run_precision.py runs/export-demo/best.pt --out benchmarks/precision

Each variant is what `ssdtrt export CKPT --mode nms --dynamic-batch --precision P [--calib-data synthetic
--calib-images N --calib-method M]` writes, scored as `ssdtrt eval MODEL.onnx --data synthetic --split val` does.
Writes results.json and results.md (the table) into --out; ONNX files go to --export-dir.
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
    from ssdtrt.evaluate import evaluate, torch_predict_fn
    from ssdtrt.export.calibration import CalibrationConfig, cache_dir_for
    from ssdtrt.export.lint import lint_onnx
    from ssdtrt.export.onnx_export import export_checkpoint
    from ssdtrt.fileio import atomic_write_json, atomic_write_text, sha256_file
    from ssdtrt.model.checkpoint import load_model
    from ssdtrt.runtime.onnxruntime_runner import onnx_predict_fn

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

    model = load_model(args.checkpoint)
    score("torch fp32", torch_predict_fn(model, "cpu"), None, {"command": f"ssdtrt eval {args.checkpoint}"})
    variants = [("fp32", None), ("fp16", None)] + [("int8", m) for m in ("minmax", "entropy", "percentile")]
    for precision, method in variants:
        name = f"{precision}" + (f"-{method}" if method else "")
        out = args.export_dir / f"{args.checkpoint.stem}_{args.mode}_{name}.onnx"
        calib = None
        cmd = f"ssdtrt export {args.checkpoint} --mode {args.mode} --dynamic-batch --precision {precision} --out {out}"
        if method:
            calib = CalibrationConfig(args.data, args.calib_images, method, cache_dir=cache_dir_for(out))
            cmd += f" --calib-data {args.data} --calib-images {args.calib_images} --calib-method {method}"
        t0 = time.perf_counter()
        res = export_checkpoint(args.checkpoint, out, mode=args.mode, precision=precision, dynamic_batch=True,
                                calibration=calib)
        export_s = round(time.perf_counter() - t0, 1)
        lint = lint_onnx(out)
        score(f"onnx {name}", onnx_predict_fn(out, providers=["CPUExecutionProvider"], batch_size=16), out, {
            "command": f"{cmd} && ssdtrt eval {out} --data {args.data} --split {args.split}",
            "export_s": export_s, "lint_ok": lint.ok, "size_mb": round(out.stat().st_size / 2**20, 2),
            "calibration": res.manifest.source.get("calibration"),
        })

    base = rows[1]["map"]
    for r in rows:
        r["delta_map_pts"] = round(100 * (r["map"] - base), 2)
    meta = {
        "checkpoint": str(args.checkpoint), "checkpoint_sha256": sha256_file(args.checkpoint),
        "data": args.data, "split": args.split, "num_images": len(dataset), "mode": args.mode,
        "calib_images": args.calib_images, "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "results.json", {"meta": meta, "rows": rows})
    lines = [
        f"| variant | mAP@[.5:.95] | mAP@.5 | Δ mAP vs ONNX fp32 (pts) | size MB | lint |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['map']:.4f} | {r['map50']:.4f} | {r['delta_map_pts']:+.2f} | "
                     f"{r.get('size_mb', '')} | {'' if 'lint_ok' not in r else ('clean' if r['lint_ok'] else 'FAIL')} |")
    cmds = "\n".join(f"    {r['command']}" for r in rows)
    atomic_write_text(args.out / "results.md", "\n".join(lines) + "\n\nCommands:\n\n" + cmds + "\n\n```\n"
                      + json.dumps(meta, indent=1) + "\n```\n")


if __name__ == "__main__":
    main()
