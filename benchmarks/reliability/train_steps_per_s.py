"""Steps/s of the demo's training step (ssd-small, synthetic, batch 8) at a given thread count: picks the demo's
thread count and step budget from a measured run, not from a guess.

    PYTHONPATH=. python benchmarks/reliability/train_steps_per_s.py THREADS [STEPS=40]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

from ssdtrt.train.loop import TrainConfig, train


def main() -> None:
    threads = int(sys.argv[1])
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    stamps: list[float] = []

    def reporter(event: str, info: dict) -> None:
        if event == "step":
            stamps.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as out:
        train(TrainConfig(preset="ssd-small", data="synthetic", out_dir=out, epochs=1, train_size=8 * steps,
                          eval_limit=8, threads=threads, workers=0), reporter)
    timed = stamps[5:]  # the first steps warm up allocators and oneDNN kernels
    print(f"threads={threads} steps/s={(len(timed) - 1) / (timed[-1] - timed[0]):.2f} (steps {len(stamps)}) "
          f"load_avg_1m={os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
