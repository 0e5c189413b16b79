"""What the stream's automatic batch probe measures and picks, per model (three fresh Detectors each).

    PYTHONPATH=. python benchmarks/throughput/probe_auto_batch.py MODEL... > benchmarks/throughput/auto-batch-probe.txt

Opens each model as `bench throughput` does (throughput-mode runner), times the probe's one-image requests the way
`ssdtrt.stream.pipeline.auto_batch` does, and prints the fastest request and the batch `auto_batch` picks.
"""

from __future__ import annotations

import subprocess
import sys

from ssdtrt.inference.detector import Detector
from ssdtrt.stream.pipeline import PROBE_REQUESTS, auto_batch


def main() -> None:
    print("$ PYTHONPATH=. python benchmarks/throughput/probe_auto_batch.py " + " ".join(sys.argv[1:]))
    print(subprocess.run(["sh", "-c", "lscpu | grep 'Model name'"], capture_output=True, text=True).stdout.strip())
    for model in sys.argv[1:]:
        for _ in range(3):
            with Detector(model, mode="throughput") as det:
                request_ms = det.request_ms(PROBE_REQUESTS)  # what auto_batch reads (measured once, remembered)
                print(f"{model}: fastest one-image request {request_ms:.2f} ms (of {PROBE_REQUESTS}); "
                      f"auto_batch picks {auto_batch(det)}")


if __name__ == "__main__":
    main()
