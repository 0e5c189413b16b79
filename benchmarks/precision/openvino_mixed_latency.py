"""OpenVINO CPU latency (batch 1, p50, interleaved rounds) of FP32, full INT8 and mixed INT8 demo graphs.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/precision/openvino_mixed_latency.py \\
        --model fp32=export/fallback/demo_nms_fp32.onnx \\
        --model "int8 entropy=export/fallback/demo_nms_int8-entropy.onnx" ... \\
        --out benchmarks/precision/fallback/openvino_latency.json

Each model is compiled once (1 inference thread, LATENCY hint); then `--rounds` rounds run every model `--iters`
times in turn, so load drift on the shared machine hits all models alike. Ratios are against the first INT8 model.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, help="NAME=PATH (repeatable)")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    from run_fallback import _cpu_model, _load, openvino_latency

    from ssdtrt.core.manifest import read_manifest
    from ssdtrt.export.calibration import CalibrationConfig, calibration_tensors
    from ssdtrt.io.files import atomic_write_json

    models = dict(m.split("=", 1) for m in args.model)
    models = {k: Path(v) for k, v in models.items()}
    first = next(iter(models.values()))
    images, _ = calibration_tensors(CalibrationConfig("synthetic", 1, split="val", cache_dir=None),
                                    read_manifest(first).model_spec.preprocess)
    load_start = _load()
    lat = openvino_latency(models, images, rounds=args.rounds, iters=args.iters)
    record = {"cpu": _cpu_model(), "cpu_count": os.cpu_count(), "loadavg_start": load_start, "loadavg_end": _load(),
              "rounds": args.rounds, "iters": args.iters, "models": {k: str(v) for k, v in models.items()},
              "latency": lat}
    atomic_write_json(args.out, record)
    for k, v in lat.items():
        print(f"{k:45s} {v['p50_ms']:.3f} ms", flush=True)


if __name__ == "__main__":
    main()
