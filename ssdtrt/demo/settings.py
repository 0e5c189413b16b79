"""The demo's knobs: one frozen `DemoSettings` (defaults fit ≤ 8 min on 2 CPU cores; tests shrink them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DemoSettings:
    """Every knob of the demo; the defaults fit ≤ 8 min on 2 CPU cores (tests shrink them)."""

    #: training schedule: epochs over `train_images` synthetic images (250 steps of 8 per epoch at 2000), measured
    #: in benchmarks/reliability/README.md (steps/s at 1 thread, mAP@.5 per epoch)
    train_epochs: int = 6
    train_images: int = 2000
    #: torch threads while training: fixed, so reruns are bit-identical; 1 because 2 OpenMP threads on 2 shared
    #: cores ran 5x slower here under load (1.3 vs 6.4 steps/s), while 1 thread barely notices the load
    train_threads: int = 1
    train_seed: int = 0
    #: safety stop only (does not shape the schedule): past it training stops and the report carries a warning
    guard_minutes: float = 15.0
    eval_images: int = 200  # held-out synthetic val images per mAP
    calib_images: int = 128  # int8 calibration (synthetic train split)
    calib_method: str = "percentile"  # least mAP loss in benchmarks/precision; ~3 s for 128 images here
    parity_images: int = 32
    bench_warmup: int = 5
    bench_iters: int = 50
    bench_max_seconds: float = 3.0  # per backend × precision: a slow one stops early (≥ 10 iterations kept)
    annotated_images: int = 6
    #: reuse OUT/train's checkpoint when an earlier demo trained it with the same training settings (`--retrain`: no)
    reuse_checkpoint: bool = True
