"""Time the torch postprocess before / after the row pre-filter (issue 11) on synthetic SSD heads, CPU, 1 thread.

    PYTHONPATH=. python benchmarks/throughput/profile_postprocess_torch.py [--baseline 405a8fd] [--rounds 5]

"Before" is `ssdtrt/postprocess/host_torch.py` as it was at BASELINE (git show, imported under another name), "after" is the
current module. Heads: (a) SSD300-ResNet50 [1, 8732, 81] with about 1,000 and 8,000 (prior, class) scores above
the preset's 0.05 threshold (background logit high, chosen entries raised; spread over random priors, and clustered
on fewer priors as a trained detector's are), with the ssd300-resnet50 preset's PostprocessSpec; (b) the demo's
ssd-small [1, 2390, 7] and [8, 2390, 7] with the ssd-small preset's settings at the demo's threshold 0.01.
Interleaved rounds (before, after, before, ...), each the median of `--repeat` calls; the reported number is the
median over rounds. Detections are asserted identical (labels, order, boxes, scores bit for bit).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch


def load_baseline(commit: str):  # noqa: ANN201
    """ssdtrt/postprocess/host_torch.py as it was at `commit` (the numpy profile's loader, pointed at the torch module)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from profile_postprocess import load_baseline as load_module_at

    return load_module_at(commit, "ssdtrt/postprocess/host_torch.py")


def heads(n: int, p: int, c: int, candidates: int, rows_per_image: int | None, seed: int) -> tuple:
    """locs [n, p, 4] and logits [n, p, c]: background ~ 10, foreground ~ N(0, 1), and `candidates` (image, prior,
    class) entries per image raised to 10 + U(-2, 3) (p ~ 0.1 .. 0.95): on random priors (`rows_per_image` None) or on
    `rows_per_image` random priors per image."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, p, c, generator=g)
    logits[..., 0] += 10.0
    for i in range(n):
        if rows_per_image is None:
            flat = torch.randperm(p * (c - 1), generator=g)[:candidates]
            pri, cls = flat // (c - 1), flat % (c - 1) + 1
        else:
            rows = torch.randperm(p, generator=g)[:rows_per_image]
            cells = torch.randperm(rows_per_image * (c - 1), generator=g)[:candidates]
            pri, cls = rows[cells // (c - 1)], cells % (c - 1) + 1
        logits[i, pri, cls] = 10.0 + (torch.rand(pri.numel(), generator=g) * 5.0 - 2.0)
    locs = torch.randn(n, p, 4, generator=g) * 0.5
    return locs, logits


def median_ms(fn, repeat: int) -> float:  # noqa: ANN001
    fn()
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return float(np.median(samples) * 1e3)


def identical(a, b) -> bool:  # noqa: ANN001
    return len(a) == len(b) and all(
        torch.equal(x.labels, y.labels) and torch.equal(x.scores, y.scores) and torch.equal(x.boxes, y.boxes)
        for x, y in zip(a, b)
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", default="405a8fd")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import ssdtrt.postprocess.host_torch as after
    from ssdtrt.core.config import get_preset
    from ssdtrt.core.priors import default_boxes

    before = load_baseline(args.baseline)
    r50, small = get_preset("ssd300-resnet50"), get_preset("ssd-small")
    small_kwargs = {**small.postprocess.as_kwargs(), "score_threshold": 0.01}  # the demo's Detector threshold
    cases = [  # name, preset, kwargs, (n, p, c), candidates per image, rows per image
        ("r50 [1,8732,81] ~1000 cand, spread", r50, r50.postprocess.as_kwargs(), (1, 8732, 81), 1000, None),
        ("r50 [1,8732,81] ~1000 cand, 300 priors", r50, r50.postprocess.as_kwargs(), (1, 8732, 81), 1000, 300),
        ("r50 [1,8732,81] ~8000 cand, spread", r50, r50.postprocess.as_kwargs(), (1, 8732, 81), 8000, None),
        ("r50 [1,8732,81] ~8000 cand, 2000 priors", r50, r50.postprocess.as_kwargs(), (1, 8732, 81), 8000, 2000),
        ("small [1,2390,7] ~100 cand", small, small_kwargs, (1, 2390, 7), 100, None),
        ("small [8,2390,7] ~100 cand/img", small, small_kwargs, (8, 2390, 7), 100, None),
        ("small [1,2390,7] ~1000 cand", small, small_kwargs, (1, 2390, 7), 1000, None),
        ("small [8,2390,7] ~1000 cand/img", small, small_kwargs, (8, 2390, 7), 1000, None),
    ]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, baseline {args.baseline}, "
          f"{args.rounds} interleaved rounds x median of {args.repeat}")
    print(f"{'case':42s} {'cand':>6s} {'rows':>6s} {'path':>6s} {'dets':>5s} {'before ms':>10s} {'after ms':>9s} "
          f"{'speedup':>8s} identical")
    for i, (name, preset, kwargs, (n, p, c), cand, rows_per_image) in enumerate(cases):
        priors = torch.from_numpy(default_boxes(preset))
        locs, logits = heads(n, p, c, cand, rows_per_image, seed=i)
        thr = kwargs["score_threshold"]
        n_cand = int((torch.softmax(logits, -1)[..., 1:] > thr).sum())
        rows = after._rows_that_can_pass(logits, thr, False)
        path = "dense" if rows is None else "sparse"
        n_rows = int(((logits[..., 1:].amax(-1) - logits.amax(-1)) > np.log(thr) - 1e-4).sum())
        run_before = lambda: before.postprocess(locs, logits, priors, **kwargs)  # noqa: E731
        run_after = lambda: after.postprocess(locs, logits, priors, **kwargs)  # noqa: E731
        ref, got = run_before(), run_after()
        same = identical(ref, got)
        assert same, f"{name}: detections differ"
        times: dict[str, list[float]] = {"before": [], "after": []}
        for _ in range(args.rounds):
            times["before"].append(median_ms(run_before, args.repeat))
            times["after"].append(median_ms(run_after, args.repeat))
        b, a = (float(np.median(times[k])) for k in ("before", "after"))
        print(f"{name:42s} {n_cand:6d} {n_rows:6d} {path:>6s} {sum(len(d) for d in got):5d} {b:10.2f} {a:9.2f} "
              f"{b / a:7.2f}x {same}")


if __name__ == "__main__":
    main()
