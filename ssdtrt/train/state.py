"""The mutable state of one training run, shared by the loop, the checkpointing and the evaluation hook."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssdtrt.train.config import Reporter, TrainConfig
from ssdtrt.train.distributed import DistContext
from ssdtrt.train.schedule import Schedule


def new_counters() -> dict[str, Any]:
    """The counters a checkpoint stores as `extra["scheduler"]` and a resume restores."""
    return {"step": 0, "elapsed_s": 0.0, "epochs_completed": 0, "best_map": -1.0}


@dataclass
class TrainRun:
    """Everything a run holds between steps. `counters` is what resume restores (see `new_counters`)."""

    cfg: TrainConfig
    ctx: DistContext
    report: Reporter
    device: Any  # torch.device
    model: Any  # the SSD (unwrapped)
    train_model: Any  # the SSD, or its DistributedDataParallel wrapper
    criterion: Any
    opt: Any
    scaler: Any  # torch.amp.GradScaler (disabled off CUDA / without AMP)
    use_amp: bool
    loader: Any
    sampler: Any
    val_ds: Any
    out_dir: Path
    schedule: Schedule | None = None
    counters: dict[str, Any] = field(default_factory=new_counters)
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] | None = None
    run_start: float = 0.0  # perf_counter() at step 0 (moved back by a resumed run's elapsed time)
    eval_s: float = 0.0  # last evaluation's duration: reserved at the end of a time budget
    evaluated_at_step: int = -1
    stopped_by_guard: bool = False

    @property
    def last_path(self) -> Path:
        return self.out_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.out_dir / "best.pt"

    @property
    def step(self) -> int:
        return int(self.counters["step"])
