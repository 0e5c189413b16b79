"""SSD300-ResNet50 (random init: no imported weights offline): head-SQNR sensitivity of all 65 convs and the fewest
float layers for a head-SQNR budget set from the demo model's SQNR ↔ mAP relation.

    ssdtrt init-weights --preset ssd300-resnet50 --out export/r50/r50_init.pt
    PYTHONPATH=$PWD .venv/bin/python benchmarks/precision/r50_sqnr_fallback.py export/r50/r50_init.pt \\
        --method entropy --calib-images 32 --sqnr-images 4 --min-sqnr 30 --out benchmarks/precision/fallback/r50

Same steps as `ssdtrt sensitivity CKPT --calib-method entropy --calib-images 32 --sqnr-images 4 --top 0
--min-sqnr 30` (few images: ResNet50 at 300 px on 2 shared cores), with the timings recorded.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--method", default="entropy")
    ap.add_argument("--calib-images", type=int, default=32)
    ap.add_argument("--sqnr-images", type=int, default=4)
    ap.add_argument("--min-sqnr", type=float, default=30.0)
    ap.add_argument("--cache", type=Path, default=Path("export/r50/.calib"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/precision/fallback/r50"))
    args = ap.parse_args()

    from ssdtrt.export.calibration import CalibrationConfig, calibration_tensors
    from ssdtrt.export.fp32_source import load_fp32_source
    from ssdtrt.export.precision import quantize_int8
    from ssdtrt.export.sensitivity import HeadRunner, float_set_for_sqnr, measure_sqnr
    from ssdtrt.export.sensitivity_report import write_report

    t0 = time.perf_counter()
    src = load_fp32_source(args.checkpoint)
    spec = src.manifest.model_spec
    cfg = CalibrationConfig("synthetic", args.calib_images, args.method, cache_dir=args.cache, high_precision="fp32")
    int8, rec = quantize_int8(src.proto, spec, cfg)
    t1 = time.perf_counter()
    images, _ = calibration_tensors(CalibrationConfig("synthetic", args.sqnr_images, split="val", cache_dir=args.cache),
                                    spec.preprocess)
    runner = HeadRunner(images, threads=1, batch_size=args.sqnr_images)
    report = measure_sqnr(src.proto, int8, runner, progress=lambda label, d, n: print(d, n, label, flush=True))
    t2 = time.perf_counter()
    fallback = float_set_for_sqnr(report, src.proto, int8, runner, args.min_sqnr)
    t3 = time.perf_counter()
    calibration = {**rec["calibration"], "ranges_cache": Path(str(rec["calibration"]["ranges_cache"])).name}
    report.meta = {"model": f"ssd300-resnet50, random init ({args.checkpoint.name})", "method": args.method,
                   "calibration": calibration, "sqnr_fallback": fallback,
                   "seconds": {"quantize": round(t1 - t0, 1), "sqnr_all_layers": round(t2 - t1, 1),
                               "sqnr_fallback": round(t3 - t2, 1)}}
    write_report(report, args.out)
    print(report.int8_sqnr_db, fallback, flush=True)


if __name__ == "__main__":
    main()
