"""Profile the numpy postprocess on real engine outputs at batch 1 (what `bench latency` times as "postprocess").

    PYTHONPATH=. python benchmarks/throughput/profile_postprocess.py MODEL.xml [--image-size 480x640]

Prints the median postprocess ms of the numpy postprocess as it was at BASELINE (a git commit, default 405a8fd, where this
session began) and as now, interleaved in one process on the same engine outputs, the candidate counts, and the
cProfile top entries of the current code.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
from pathlib import Path

import cv2
import numpy as np


def median_ms(fn, n: int = 50) -> float:  # noqa: ANN001
    fn()
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return float(np.median(samples) * 1e3)


def load_baseline(commit: str, module_path: str = "ssdtrt/postprocess/host_numpy.py"):  # noqa: ANN201
    """The module at `module_path` as it was at `commit` (git show), imported under another name (also used by
    profile_postprocess_torch.py for ssdtrt/postprocess/host_torch.py)."""
    import importlib.util
    import subprocess
    import tempfile

    source = subprocess.run(["git", "show", f"{commit}:{module_path}"], capture_output=True, text=True,
                            check=True).stdout
    name = Path(module_path).stem + "_baseline"
    path = Path(tempfile.mkdtemp()) / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def baseline_dets(baseline, pipeline, current, run):  # noqa: ANN001, ANN201
    pipeline.postprocess_numpy = baseline.postprocess_numpy
    try:
        ref = run()
    finally:
        pipeline.postprocess_numpy = current
    return ref, run()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", type=Path)
    parser.add_argument("--image-size", default="480x640")
    parser.add_argument("--baseline", default="405a8fd")
    args = parser.parse_args()
    from ssdtrt.bench.record_paths import portable_text
    import ssdtrt.postprocess.host_numpy as pn
    from ssdtrt.compare import load_images
    from ssdtrt.inference.detector import Detector

    h, w = (int(v) for v in args.image_size.split("x"))
    image = cv2.resize(load_images("synthetic", 1)[0], (w, h))
    with Detector(args.model) as det:
        outputs = det.infer(det.preprocess([image]))
        run = lambda: det.postprocess(outputs, [(h, w)])  # noqa: E731
        s = det.settings
        logits = outputs["logits"]
        probs = pn.softmax(logits[0].astype(np.float32))[:, 1:]
        found = pn._rows_that_can_pass(logits, s.score_threshold, False)
        rows = None if found is None else found[0]
        print(f"{args.model.name}: heads {logits.shape}, settings {s}")
        print(f"candidates (score > {s.score_threshold}): {int((probs > s.score_threshold).sum())}; rows passing the "
              f"pre-filter: {'dense path' if rows is None else rows.size}; detections: {len(run()[0])}")
        import ssdtrt.inference.detector as pipeline

        baseline = load_baseline(args.baseline)
        current = pipeline.postprocess_numpy
        times: dict[str, list[float]] = {"before": [], "now": []}
        for _ in range(5):  # interleaved rounds: machine drift hits both alike
            for key, fn in (("before", baseline.postprocess_numpy), ("now", current)):
                pipeline.postprocess_numpy = fn
                try:
                    times[key].append(median_ms(run, 20))
                finally:
                    pipeline.postprocess_numpy = current
        before, now = (float(np.median(times[k])) for k in ("before", "now"))
        ref, got = baseline_dets(baseline, pipeline, current, run)
        same = all(np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores) for a, b in zip(ref, got))
        print(f"postprocess median (5 interleaved rounds of 20): {args.baseline} {before:.2f} ms, now {now:.2f} ms "
              f"({before / now:.2f}x); detections identical: {same}")
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(20):
            run()
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(10)
        text = "\n".join(line for line in buf.getvalue().splitlines() if line.strip())[:3000]
        print(portable_text(text, Path(__file__).resolve().parents[2]))  # cProfile names files by absolute path


if __name__ == "__main__":
    main()
