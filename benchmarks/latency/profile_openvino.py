"""Where SSD300-ResNet50's OpenVINO int8 inference time goes: per-layer counters, summed by layer and kernel type.

    .venv/bin/python benchmarks/latency/profile_openvino.py runs/bench/resnet50/ssd300-resnet50-raw-int8.xml \
        > benchmarks/latency/ssd300-resnet50-openvino-int8-profile.md

Compiles the IR with the latency hint and PERF_COUNT on, runs 30 timed batch-1 inferences (after 5 warm-up),
and writes a markdown table: the kernel names (execType) tell which instruction set OpenVINO picked.
"""

from __future__ import annotations

import collections
import sys
import time

import numpy as np
import openvino as ov


def main(xml: str, iters: int = 30) -> None:
    from ssdtrt.runtime.openvino_runner import openvino_core

    core = openvino_core()  # the process's one Core (openvino_core says why)
    model = core.read_model(xml)
    model.reshape({model.inputs[0].any_name: [1, 3, 300, 300]})
    compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": True})
    request = compiled.create_infer_request()
    x = np.random.default_rng(0).standard_normal((1, 3, 300, 300)).astype(np.float32)
    for _ in range(5):
        request.infer({0: x})
    totals: collections.Counter[tuple[str, str]] = collections.Counter()
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    wall_ms = []
    for _ in range(iters):
        t = time.perf_counter()
        request.infer({0: x})
        wall_ms.append((time.perf_counter() - t) * 1e3)
        for info in request.profiling_info:
            if info.status == ov.ProfilingInfo.Status.EXECUTED:
                key = (info.node_type, info.exec_type)
                totals[key] += info.real_time.total_seconds() * 1e3 / iters
                counts[key] += 1
    layer_sum = sum(totals.values())
    print("# OpenVINO per-layer profile\n")
    print(f"Model `{xml}`, batch 1, PERFORMANCE_HINT=LATENCY, {compiled.get_property('INFERENCE_NUM_THREADS')} threads, "
          f"inference precision {compiled.get_property('INFERENCE_PRECISION_HINT')}, OpenVINO {ov.get_version()}.")
    print(f"Wall time per inference (profiling on): p50 {np.median(wall_ms):.1f} ms, min {min(wall_ms):.1f} ms; "
          f"sum of layer times {layer_sum:.1f} ms.\n")
    print("| layer type | kernel (execType) | layers | ms per inference | share |")
    print("|---|---|---:|---:|---:|")
    for (node_type, exec_type), ms in totals.most_common():
        if ms >= 0.01:
            print(f"| {node_type} | `{exec_type}` | {counts[(node_type, exec_type)] // iters} | {ms:.2f} | {100 * ms / layer_sum:.1f}% |")


if __name__ == "__main__":
    main(sys.argv[1])
