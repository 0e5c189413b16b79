"""Batch-1 latency per placement with every variant interleaved iteration by iteration (for a loaded machine, where
`bench latency`'s variant-after-variant runs drift apart): bare raw-heads inference, and `Detector.detect` end to end
(one decoded 480x640 frame in, detections in pixels out) of the host-placed, engine-postprocess and engine pre+post
builds of one ONNX. Per round the median of each; ratio = e2e ÷ the same round's bare raw-heads inference; the
reported ratio is the median over rounds.

    PYTHONPATH=. python benchmarks/latency/placement_interleaved.py NAME=DIR/PREFIX ... --rounds 8 --iters 10 \
        --json OUT.json --markdown OUT.md

PREFIX-host.xml, PREFIX-engine.xml, PREFIX-engine-u8.xml as `benchmarks/throughput/run_placement.sh` builds them;
the bare reference is PREFIX-host.xml's own runner (raw heads, float input).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from statistics import median
from typing import Any

import cv2
import numpy as np

from ssdtrt.bench.machine import machine_info
from ssdtrt.compare import load_images
from ssdtrt.inference.detector import Detector

VARIANTS = ("host", "engine", "engine-u8")


def measure(prefix: str, rounds: int, iters: int, image: np.ndarray) -> dict[str, Any]:
    dets = {v: Detector(f"{prefix}-{v}.xml", batch_size=1) for v in VARIANTS}
    for det in dets.values():
        det.runner.activate()
    bare = dets["host"]
    x = bare.preprocess([image])
    feeds = {bare.stages.input.name: x}
    timed: dict[str, list[float]] = {k: [] for k in ("bare", *VARIANTS)}
    per_round: list[dict[str, float]] = []
    for det in dets.values():  # warm-up
        det.detect([image])
    try:
        for _ in range(rounds):
            this = {k: [] for k in timed}
            for _ in range(iters):  # interleaved: one of each per iteration
                t = time.perf_counter()
                bare.runner.infer(feeds)
                this["bare"].append((time.perf_counter() - t) * 1e3)
                for v, det in dets.items():
                    t = time.perf_counter()
                    det.detect([image])
                    this[v].append((time.perf_counter() - t) * 1e3)
            med = {k: median(v) for k, v in this.items()}
            per_round.append({**{f"{k}_ms": v for k, v in med.items()},
                              **{f"{v}_ratio": med[v] / med["bare"] for v in VARIANTS}})
            for k, v in this.items():
                timed[k] += v
    finally:
        for det in dets.values():
            det.close()
    return {
        "prefix": Path(prefix).name, "rounds": per_round,
        "p50_ms": {k: float(np.percentile(v, 50)) for k, v in timed.items()},
        "ratio_median": {v: median(r[f"{v}_ratio"] for r in per_round) for v in VARIANTS},
        "ratio_range": {v: [min(r[f"{v}_ratio"] for r in per_round), max(r[f"{v}_ratio"] for r in per_round)]
                        for v in VARIANTS},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="NAME=DIR/PREFIX")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--markdown", type=Path, required=True)
    args = ap.parse_args()
    image = cv2.resize(load_images("synthetic", 1)[0], (640, 480), interpolation=cv2.INTER_LINEAR)
    results = {}
    for item in args.models:
        name, _, prefix = item.partition("=")
        results[name] = measure(prefix, args.rounds, args.iters, image)
        print(name, json.dumps(results[name]["ratio_median"]), json.dumps(results[name]["p50_ms"]))
    record = {"command": "python benchmarks/latency/placement_interleaved.py " + " ".join(args.models) +
              f" --rounds {args.rounds} --iters {args.iters}", "machine": machine_info(), "results": results}
    args.json.write_text(json.dumps(record, indent=1) + "\n")
    lines = [f"Command: `{record['command']}`", "",
             "| model | bare raw-heads infer p50 ms | host e2e p50 | engine post e2e p50 | engine pre+post e2e p50 | "
             "e2e ÷ bare infer: host / engine post / engine pre+post (median of rounds; range) |",
             "|---|---:|---:|---:|---:|---|"]
    for name, r in results.items():
        p, q, rng = r["p50_ms"], r["ratio_median"], r["ratio_range"]
        lines.append(f"| {name} | {p['bare']:.2f} | {p['host']:.2f} | {p['engine']:.2f} | {p['engine-u8']:.2f} | "
                     + " / ".join(f"**{q[v]:.3f}** ({rng[v][0]:.2f}–{rng[v][1]:.2f})" for v in VARIANTS) + " |")
    args.markdown.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
