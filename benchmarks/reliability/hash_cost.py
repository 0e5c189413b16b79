"""Cost of `verify_artifact` on a 100 MB plan-sized file: size check vs sha256, warm page cache, median of 5.

    PYTHONPATH=. python benchmarks/reliability/hash_cost.py [--mb 100]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from ssdtrt.core.config import get_preset
from ssdtrt.core.manifest import Manifest, TensorInfo, stamp_artifact, verify_artifact


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        plan = Path(tmp) / "model.plan"
        plan.write_bytes(os.urandom(args.mb * 1_000_000))
        spec = get_preset("ssd-small")
        manifest = stamp_artifact(Manifest(
            artifact=plan.name, kind="tensorrt", spec=spec.to_dict(), num_classes=7, class_names=["c"] * 6,
            export_mode="raw", precision="fp32", inputs=[TensorInfo("images", [1, 3, 160, 160], "float32")],
            outputs=[]), plan)
        rows = {}
        for label, verify_hash in (("size only (--no-verify)", False), ("size + sha256 (default)", True)):
            times = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                verify_artifact(manifest, plan, verify_hash=verify_hash)
                times.append(time.perf_counter() - t)
            rows[label] = round(1e3 * statistics.median(times), 2)
    print(json.dumps({"file_mb": args.mb, "median_ms": rows, "load_avg_1m": round(os.getloadavg()[0], 2)}))


if __name__ == "__main__":
    main()
