"""Where a streaming pipeline's CPU goes, per thread: shows what bounds pipeline ÷ bare throughput on a small machine.

    PYTHONPATH=. python benchmarks/throughput/profile_stages.py MODEL [--seconds 10] [--batch 1] [--image-size 480x640]

Runs `bench throughput`'s bare loop and pipeline on one runner, and samples the CPU time of every thread of the
process (/proc/self/task/*/stat utime+stime) over the pipeline run: CPU ms per image and the share of the cores used. Also times preprocess and
postprocess alone (one thread) per image. Ceiling on the ratio when every core is busy:
inference core-ms per image ÷ (inference + preprocess + postprocess + overhead core-ms per image).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path

import numpy as np


def thread_cpu_s() -> dict[int, tuple[str, float]]:
    """(name, CPU seconds) per thread id of this process; the name is the Python thread's (digits folded:
    'ssdtrt-decode_0' and '_1' together), threads Python did not start (OpenVINO's workers) are 'native'."""
    import threading

    python_names = {t.native_id: t.name for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[str, float]] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        name = re.sub(r"[_\-]?\d+$", "", python_names.get(int(tid), "native"))
        out[int(tid)] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return out


class CpuSampler:
    """Samples `thread_cpu_s` every 0.2 s while running, so threads that end before the last sample still count."""

    def __init__(self) -> None:
        import threading

        self.first, self.last = thread_cpu_s(), {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="profile-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.last.update(thread_cpu_s())

    def stop(self) -> dict[str, float]:
        """CPU seconds per thread name over the sampled span."""
        self._stop.set()
        self._thread.join()
        self.last.update(thread_cpu_s())
        out: dict[str, float] = {}
        for tid, (name, cpu) in self.last.items():
            if name == "profile-sampler":
                continue
            out[name] = out.get(name, 0.0) + cpu - self.first.get(tid, (name, 0.0))[1]
        return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", type=Path)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--image-size", default="480x640")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    from ssdtrt.bench.throughput import ThroughputSettings, bare_run, bench_images, pipeline_run
    from ssdtrt.inference.detector import Detector
    from ssdtrt.stream import StreamSettings
    from ssdtrt.stream.pipeline import resolved

    h, w = (int(v) for v in args.image_size.split("x"))
    settings = ThroughputSettings(seconds=args.seconds, warmup_seconds=1.0, batch_size=args.batch, image_size_hw=(h, w))
    images = bench_images(settings)
    with Detector(args.model, mode="throughput") as det:
        ss = StreamSettings(batch_size=args.batch)
        batch, in_flight, _ = resolved(det, ss)
        chunk = images[:batch]
        sizes = [im.shape[:2] for im in chunk]
        pre_ms, post_ms = [], []
        for _ in range(30):
            t0 = time.perf_counter()
            tensor = det.preprocess(chunk)
            t1 = time.perf_counter()
            outputs = det.infer(tensor)
            t2 = time.perf_counter()
            det.postprocess(outputs, sizes)
            post_ms.append((time.perf_counter() - t2) * 1e3 / batch)
            pre_ms.append((t1 - t0) * 1e3 / batch)
        feeds = {det.input.name: tensor}
        bare_run(det.runner, feeds, in_flight, 1.0, None)
        n, t = bare_run(det.runner, feeds, in_flight, args.seconds, None)
        bare_ips = n * batch / t
        from ssdtrt.bench.throughput import _warm_pipeline

        _warm_pipeline(det, images, ss, settings.warmup_seconds)  # outside the CPU sample: its images are not counted
        sampler, wall0 = CpuSampler(), time.perf_counter()
        count, elapsed, _ = pipeline_run(det, images, ss, settings, None, warmup=False)
        by_thread, wall = sampler.stop(), time.perf_counter() - wall0
    cores = len(os.sched_getaffinity(0))
    cpu_s = sum(by_thread.values())
    infer_core_ms = cores * 1e3 / bare_ips
    pre, post = float(np.median(pre_ms)), float(np.median(post_ms))
    report = {
        "model": str(args.model), "batch": batch, "requests": in_flight, "cores": cores,
        "bare_images_per_second": round(bare_ips, 1), "pipeline_images_per_second": round(count / elapsed, 1),
        "ratio": round(count / elapsed / bare_ips, 3),
        "inference_core_ms_per_image": round(infer_core_ms, 3),
        "preprocess_ms_per_image_alone": round(pre, 3), "postprocess_ms_per_image_alone": round(post, 3),
        "ratio_ceiling_if_cores_saturated": round(infer_core_ms / (infer_core_ms + pre + post), 3),
        "process_cpu_ms_per_image_in_pipeline": round(cpu_s * 1e3 / count, 3),
        "share_of_cores_used_by_pipeline": round(cpu_s / wall / cores, 3),
        "cpu_ms_per_image_by_thread": {k: round(v * 1e3 / count, 3) for k, v in sorted(by_thread.items()) if v > 0},
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
