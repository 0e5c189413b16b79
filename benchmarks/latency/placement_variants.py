"""The measurements behind the engine placement's design choices (issue 20), each an A/B on one machine:

1. class softmax on [N, P, C] logits: directly over the short last axis vs on the transposed [N, C, P] view;
2. the uint8 preprocess: float math in NHWC (layout converted last) vs bytes transposed to NCHW first (PERF_COUNT
   of the preprocess nodes, i.e. everything before the first convolution);
3. the engine pre+post IR compiled with its dynamic batch vs at a fixed batch (`OpenVINORunner.fix_batch`), bare
   AsyncInferQueue throughput against the raw-heads IR;
4. the stream with one vs two requests per CPU stream (`OpenVINORunner.optimal_in_flight`): images/s and process CPU.

    PYTHONPATH=. python benchmarks/latency/placement_variants.py runs/bench/placement/demo-int8 \
        --out benchmarks/latency/placement-variants.txt

PREFIX names the builds of `benchmarks/throughput/run_placement.sh` (PREFIX-engine-u8.xml and its -heads.xml).
"""

from __future__ import annotations

import argparse
import collections
import os
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np

from ssdtrt.runtime.openvino_runner import openvino_core

BATCH = 8


def _static(model: Any, batch: int = BATCH) -> Any:
    port = model.inputs[0]
    model.reshape({port.get_any_name(): [batch, *list(port.get_partial_shape())[1:]]})
    return model


def _feed(compiled: Any) -> np.ndarray:
    import openvino as ov

    port = compiled.inputs[0]
    shape = [BATCH if d.is_dynamic else d.get_length() for d in port.get_partial_shape()]
    rng = np.random.default_rng(0)
    if port.get_element_type() == ov.Type.u8:
        return rng.integers(0, 256, shape, dtype=np.uint8)
    return rng.normal(size=shape).astype(np.float32)


def _ms_per_call(compiled: Any, x: np.ndarray, calls: int) -> float:
    request = compiled.create_infer_request()
    for _ in range(20):
        request.infer({0: x})
    start = time.perf_counter()
    for _ in range(calls):
        request.infer({0: x})
    return 1e3 * (time.perf_counter() - start) / calls


def softmax_ab(rounds: int) -> str:
    import openvino as ov
    import openvino.opset8 as ops

    shape, swap = [BATCH, 2390, 7], np.asarray([0, 2, 1], dtype=np.int64)
    variants = {"direct (last axis)": lambda p: ops.softmax(p, -1),
                "on [N, C, P]": lambda p: ops.transpose(ops.softmax(ops.transpose(p, swap), 1), swap)}
    x = np.random.default_rng(0).normal(scale=3.0, size=shape).astype(np.float32)
    compiled, out = {}, {}
    for name, build in variants.items():
        param = ops.parameter(shape, np.float32, name="x")
        compiled[name] = openvino_core().compile_model(ov.Model([ops.result(build(param))], [param]), "CPU",
                                                        {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32"})
        out[name] = compiled[name]({0: x})[0]
    times = {name: [] for name in variants}
    for _ in range(rounds):
        for name, cm in compiled.items():
            times[name].append(_ms_per_call(cm, x, 300))
    diff = float(np.abs(out["direct (last axis)"] - out["on [N, C, P]"]).max())
    return (f"1. softmax of [{BATCH}, 2390, 7] (demo logits), one thread, ms per call (median of {rounds}): "
            + ", ".join(f"{k} {np.median(v):.3f}" for k, v in times.items()) + f"; max difference {diff:.1e}")


def _old_nhwc_ppp(model: Any, spec: Any) -> Any:
    """The previous `add_uint8_input`: convert to f32 and normalize in NHWC, layout converted last (for the A/B)."""
    import openvino as ov
    import openvino.opset8 as ops
    from openvino.preprocess import ColorFormat, PrePostProcessor

    from ssdtrt.preprocess.host import normalization_constants

    ppp = PrePostProcessor(model)
    inp = ppp.input()
    inp.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(ColorFormat.RGB)
    inp.model().set_layout(ov.Layout("NCHW"))
    steps = inp.preprocess()
    steps.convert_element_type(ov.Type.f32)
    scale, shift = normalization_constants(spec)
    steps.custom(lambda node: ops.subtract(ops.multiply(node, scale), shift).output(0))
    return ppp.build()


def preprocess_ab(heads: Path, rounds: int) -> str:
    from ssdtrt.core.manifest import read_manifest
    from ssdtrt.preprocess.openvino_ppp import add_uint8_input

    spec = read_manifest(heads).model_spec.preprocess
    core = openvino_core()
    variants = {"NHWC float math": _old_nhwc_ppp, "bytes to NCHW first": add_uint8_input}
    totals: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, build in variants.items():
            model = _static(build(core.read_model(str(heads)), spec))
            cm = core.compile_model(model, "CPU", {"PERF_COUNT": "YES", "INFERENCE_NUM_THREADS": 1,
                                                   "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": "f32"})
            request, x = cm.create_infer_request(), _feed(cm)
            for _ in range(10):
                request.infer({0: x})
            per_node: collections.Counter[str] = collections.Counter()
            for _ in range(50):
                request.infer({0: x})
                for info in request.profiling_info:
                    per_node[info.node_name] += info.real_time.total_seconds() * 1e3 / 50
            first_conv = next(info.node_name for info in request.profiling_info if info.node_type == "Convolution")
            names = [info.node_name for info in request.profiling_info]
            before = names[:names.index(first_conv)]  # execution order: the input's preprocess and quantize
            totals[name].append(sum(per_node[n] for n in before if per_node[n] > 0))
    return (f"2. uint8 preprocess of {BATCH} images (PERF_COUNT, nodes before the first convolution, one thread, ms, "
            f"median of {rounds}): " + ", ".join(f"{k} {np.median(v):.3f}" for k, v in totals.items()))


def _bare_ips(compiled: Any, seconds: float, requests: int = 2) -> float:
    import openvino as ov

    x, queue, started = _feed(compiled), ov.AsyncInferQueue(compiled, requests), 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        queue.start_async({0: x}, share_inputs=True)
        started += 1
    queue.wait_all()
    return started * BATCH / (time.perf_counter() - start)


def batch_ab(prefix: str, rounds: int, seconds: float) -> str:
    core, config = openvino_core(), {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": "f32"}
    engine, heads = f"{prefix}-engine-u8.xml", f"{prefix}-engine-u8-heads.xml"
    compiled = {"raw heads": core.compile_model(core.read_model(heads), "CPU", config),
                "engine, dynamic batch": core.compile_model(core.read_model(engine), "CPU", config),
                f"engine, batch fixed at {BATCH}": core.compile_model(_static(core.read_model(engine)), "CPU", config)}
    ips: dict[str, list[float]] = {name: [] for name in compiled}
    for cm in compiled.values():
        _bare_ips(cm, 1.0)
    for _ in range(rounds):
        for name, cm in compiled.items():
            ips[name].append(_bare_ips(cm, seconds))
    base = np.asarray(ips["raw heads"])
    return (f"3. bare AsyncInferQueue throughput, batch {BATCH}, 2 requests, THROUGHPUT hint ({rounds} alternated rounds "
            f"of {seconds:.0f} s; ratio to the raw heads, median): "
            + ", ".join(f"{k} {np.median(v):.0f} img/s ({np.median(np.asarray(v) / base):.2f}x)" for k, v in ips.items()))


def in_flight_ab(prefix: str, rounds: int, seconds: float) -> str:
    from ssdtrt.bench.throughput import ThroughputSettings, _cycle_until, bench_images
    from ssdtrt.inference.detector import Detector
    from ssdtrt.stream import StreamSettings, stream_detect

    images = bench_images(ThroughputSettings(image_size_hw=(480, 640)))
    results: dict[int, list[tuple[float, float]]] = {2: [], 4: []}

    def cpu_s() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    with Detector(Path(f"{prefix}-engine-u8.xml"), mode="throughput", requests=4) as det:
        for _ in stream_detect(det, _cycle_until(images, time.perf_counter() + 2), StreamSettings(batch_size=BATCH)):
            pass
        for _ in range(rounds):
            for in_flight in results:
                done, start, cpu = 0, time.perf_counter(), cpu_s()
                settings = StreamSettings(batch_size=BATCH, in_flight=in_flight)
                for _ in stream_detect(det, _cycle_until(images, start + seconds), settings):
                    done += 1
                elapsed = time.perf_counter() - start
                results[in_flight].append((done / elapsed, 100.0 * (cpu_s() - cpu) / elapsed))
    return (f"4. stream of 480x640 frames, engine pre+post, batch {BATCH}, 2 CPU streams ({rounds} alternated rounds of "
            f"{seconds:.0f} s, median): " + ", ".join(
                f"{k} in flight {np.median([r[0] for r in v]):.0f} img/s at {np.median([r[1] for r in v]):.0f}% CPU"
                for k, v in results.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("prefix", help="e.g. runs/bench/placement/demo-int8")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    lines = [f"$ python benchmarks/latency/placement_variants.py {args.prefix} --rounds {args.rounds} "
             f"--seconds {args.seconds:g}", f"load average: {' '.join(f'{v:.2f}' for v in os.getloadavg())}",
             softmax_ab(args.rounds), preprocess_ab(Path(f"{args.prefix}-engine-u8-heads.xml"), args.rounds),
             batch_ab(args.prefix, args.rounds, args.seconds), in_flight_ab(args.prefix, args.rounds, args.seconds)]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
