"""Why entropy calibration loses mAP on the demo model: its sensitivity table beside the clipping of each layer's input.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/precision/explain_entropy.py runs/demo/train/best.pt \\
        --sensitivity benchmarks/precision/fallback/sensitivity-entropy/sensitivity.json \\
        --calib-cache export/.calib --out benchmarks/precision/fallback/entropy_explained.md

Reads the activation ranges `ssdtrt sensitivity` cached for entropy and minmax (same model, same 256 images) and
prints, per layer in sensitivity order, the entropy threshold as a fraction of the observed |max| of its input.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--sensitivity", type=Path, required=True)
    ap.add_argument("--calib-cache", type=Path, default=Path("export/.calib"))
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    import hashlib

    import numpy as np
    from onnxruntime.quantization.calibrate import load_tensors_data

    from ssdtrt.export.onnx_export import export_body
    from ssdtrt.io.files import atomic_write_text
    from ssdtrt.model.checkpoint import load_model

    model = load_model(args.checkpoint, "cpu")
    body = export_body(model, mode="raw", dynamic_batch=True)
    sha = hashlib.sha256(body.SerializeToString()).hexdigest()[:16]
    ranges = {}
    for method in ("entropy", "minmax"):
        (path,) = args.calib_cache.glob(f"ranges-{sha}-*-{method}.json")
        data = load_tensors_data(path)
        ranges[method] = {k: max(abs(float(np.asarray(x).reshape(-1)[0])) for x in data[k].range_value) for k in data}
    conv_input = {n.name: n.input[0] for n in body.graph.node if n.op_type == "Conv"}
    sens = json.loads(args.sensitivity.read_text())
    lines = ["| # | layer | SQNR alone INT8 dB | mAP drop alone (pts) | mAP gain left float (pts) | input: entropy "
             "threshold / observed max |", "|---|---|---|---|---|---|"]
    ratios = []
    for i, row in enumerate(sens["layers"], 1):
        t = conv_input[row["layer"]]
        ratio = ranges["entropy"][t] / ranges["minmax"][t] if ranges["minmax"].get(t) else float("nan")
        ratios.append(ratio)
        fmt = lambda v: "" if v is None else f"{v:+.2f}"  # noqa: E731
        lines.append(f"| {i} | `{row['layer']}` | {row['sqnr_alone_db']:.2f} | {fmt(row['map_alone_drop_pts'])} | "
                     f"{fmt(row['map_float_gain_pts'])} | {ratio:.3f} |")
    ratios.sort()
    lines.append("")
    lines.append(f"Median threshold / max over the {len(ratios)} conv inputs: {ratios[len(ratios) // 2]:.3f}; "
                 f"min {ratios[0]:.3f}.")
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
