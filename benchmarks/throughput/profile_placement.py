"""Where a streamed model's CPU time goes: per thread (OpenVINO's own threads, which also run the completion
callbacks, against the stream's Python threads) and per host stage (thread CPU time of preprocess, the request
hand-off and postprocess), next to the bare raw-heads loop on the same cores. Linux only (/proc/self/task).

    PYTHONPATH=. python benchmarks/throughput/profile_placement.py runs/bench/placement/demo-int8-engine-u8.xml \
        --image-size 480x640 --seconds 8 --out benchmarks/throughput/profile-placement.txt

Shares of one core (100% = one core busy for the whole run). The stage times are thread CPU seconds measured
inside the stream, so they include what contention with inference costs them (compare with `--solo`: the same
stages timed alone on an idle machine).
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ssdtrt.bench.throughput import ThroughputSettings, _cycle_until, bench_images, random_feeds
from ssdtrt.inference.detector import Detector
from ssdtrt.runtime import open_runner
from ssdtrt.stream import stream_detect

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def thread_cpu_s() -> dict[str, float]:
    """CPU seconds (user + system) of every thread of this process, by native thread id."""
    out = {}
    for task in glob.glob(f"/proc/{os.getpid()}/task/*"):
        try:
            fields = Path(task, "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[task.rsplit("/", 1)[1]] = (int(fields[11]) + int(fields[12])) / TICKS_PER_S
    return out


def shares(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    """% of one core per thread group: Python threads by name (numbers dropped), the rest "openvino + callbacks"."""
    names = {str(t.native_id): t.name.rstrip("0123456789_-") for t in threading.enumerate()}
    total: collections.Counter[str] = collections.Counter()
    for tid, cpu in after.items():
        total[names.get(tid, "openvino + callbacks")] += cpu - before.get(tid, 0.0)
    return {k: 100.0 * v / seconds for k, v in total.most_common() if v > 0}


def timed(acc: collections.Counter[str], name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            acc[name] += time.thread_time() - start
            acc[name + " calls"] += 1
    return wrapper


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--image-size", default="480x640")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    hw = tuple(int(v) for v in args.image_size.split("x"))
    images = bench_images(ThroughputSettings(image_size_hw=hw))  # type: ignore[arg-type]
    lines = [f"model {args.model}, frames {hw[0]}x{hw[1]}, {args.seconds:.0f} s per phase, "
             f"load average {os.getloadavg()[0]:.2f}"]
    with Detector(args.model, backend="openvino", mode="throughput") as det:
        for _ in stream_detect(det, _cycle_until(images, time.perf_counter() + 2)):  # warm-up; fixes the batch
            pass
        batch, in_flight = det.static_batch or 1, det.optimal_in_flight()
        name = det.manifest.engine.get("reference_ir")
        reference = args.model.with_name(str(name)) if name else args.model
        with open_runner(reference, "openvino", mode="throughput") as bare:
            feeds = random_feeds(bare, batch)
            bare.run_saturated(feeds, in_flight, 1.0)
            before, start = thread_cpu_s(), time.perf_counter()
            done, seconds = bare.run_saturated(feeds, in_flight, args.seconds)
            split = shares(before, thread_cpu_s(), time.perf_counter() - start)
        bare_ips = done * batch / seconds
        lines.append(f"bare {reference.name}: {bare_ips:.0f} img/s, batch {batch}, {in_flight} in flight; "
                     + ", ".join(f"{k} {v:.0f}%" for k, v in split.items()))
        solo = solo_stage_ms(det, images, batch)
        acc: collections.Counter[str] = collections.Counter()
        det.preprocess = timed(acc, "preprocess", det.preprocess)  # type: ignore[method-assign]
        det.runner.infer_async = timed(acc, "request hand-off", det.runner.infer_async)  # type: ignore[method-assign]
        det.postprocess = timed(acc, "postprocess", det.postprocess)  # type: ignore[method-assign]
        count, start, split = -1, time.perf_counter(), {}
        before, first = thread_cpu_s(), start
        for _ in stream_detect(det, _cycle_until(images, start + args.seconds + 1.0)):
            count += 1
            now = time.perf_counter()
            if count == 0:  # the stream's threads exist from here on
                before, first = thread_cpu_s(), now
            elif not split and now - first >= args.seconds:  # before they end (an ended thread leaves /proc)
                split, seconds, images_done = shares(before, thread_cpu_s(), now - first), now - first, count
    ips = images_done / seconds
    lines.append(f"pipeline {args.model.name}: {ips:.0f} img/s ({ips / bare_ips:.2f}x bare); "
                 + ", ".join(f"{k} {v:.0f}%" for k, v in split.items()))
    lines.append("host stages, thread CPU per batch in the stream (alone on an idle machine):")
    for stage in ("preprocess", "request hand-off", "postprocess"):
        calls = max(1, acc[stage + " calls"])
        alone = f"({solo[stage]:.3f} ms)" if stage in solo else "(-)"
        lines.append(f"  {stage:17s} {1e3 * acc[stage] / calls:6.3f} ms  {alone:10s} = {100.0 * acc[stage] / seconds:4.1f}% of a core")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


def solo_stage_ms(det: Any, images: list[np.ndarray], batch: int, repeats: int = 200) -> dict[str, float]:
    """Milliseconds of preprocess and postprocess of one batch with nothing else running (the stream not started)."""
    chunk = [images[i % len(images)] for i in range(batch)]
    prepared = det.preprocess(chunk)
    outputs = det.infer(prepared)
    sizes = [img.shape[:2] for img in chunk]
    out = {}
    for stage, call in (("preprocess", lambda: det.preprocess(chunk)), ("postprocess", lambda: det.postprocess(outputs, sizes))):
        call()
        start = time.thread_time()
        for _ in range(repeats):
            call()
        out[stage] = 1e3 * (time.thread_time() - start) / repeats
    return out


if __name__ == "__main__":
    main()
