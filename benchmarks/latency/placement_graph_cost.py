"""Inference-only cost of the appended stages: the raw-heads IR vs the engine-placed builds of the same ONNX (softmax +
DetectionOutput + per-image repack; + PrePostProcessor uint8 input), synchronous requests, interleaved in rounds of
~1 s each, median ms per image. What the engine placement costs inside OpenVINO, to set beside the host numpy
postprocess it replaces.

    PYTHONPATH=. python benchmarks/latency/placement_graph_cost.py runs/bench/placement/demo-int8 --batch 1 8 \
        --threads 1 --out benchmarks/latency/placement-graph-cost.txt
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main() -> None:
    import openvino as ov

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("prefixes", nargs="+", help="DIR/PREFIX with PREFIX-{engine-heads,engine,engine-u8}.xml")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    from ssdtrt.runtime.openvino_runner import openvino_core

    core = openvino_core()  # the process's one Core (openvino_core says why)
    cfg = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": args.threads, "INFERENCE_PRECISION_HINT": "f32"}
    lines = [f"$ python benchmarks/latency/placement_graph_cost.py {' '.join(args.prefixes)} --batch "
             f"{' '.join(map(str, args.batch))} --threads {args.threads} --rounds {args.rounds}",
             f"load average: {Path('/proc/loadavg').read_text().strip()}"]
    rng = np.random.default_rng(0)
    for prefix in args.prefixes:
        names = {"raw heads": f"{prefix}-engine-heads.xml", "engine post": f"{prefix}-engine.xml",
                 "engine pre+post": f"{prefix}-engine-u8.xml"}
        compiled = {k: core.compile_model(v, "CPU", cfg) for k, v in names.items()}
        for batch in args.batch:
            reqs = {}
            for k, c in compiled.items():
                port = c.inputs[0]
                shape = [batch, *(d.get_length() for d in list(port.get_partial_shape())[1:])]
                x = (rng.integers(0, 256, shape).astype(np.uint8) if port.get_element_type() == ov.Type.u8
                     else rng.standard_normal(shape).astype(np.float32))
                reqs[k] = (c.create_infer_request(), x)
            per = {k: [] for k in reqs}
            for _ in range(args.rounds):
                for k, (req, x) in reqs.items():
                    start, n = time.perf_counter(), 0
                    while time.perf_counter() - start < 1.0:
                        req.infer(x)
                        n += 1
                    per[k].append((time.perf_counter() - start) / n * 1e3 / batch)
            med = {k: float(np.median(v)) for k, v in per.items()}
            lines.append(f"{Path(prefix).name} batch {batch}, {args.threads} thread(s): " + ", ".join(
                f"{k} {v:.3f} ms/img" for k, v in med.items()) + f"; engine post - raw {med['engine post'] - med['raw heads']:+.3f}, "
                f"pre+post - raw {med['engine pre+post'] - med['raw heads']:+.3f} ms/img")
            print(lines[-1])
    args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
