"""What a training run is asked to do (`TrainConfig`, filled from per-preset `Recipe`s) and what it returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ssdtrt.core.errors import SSDTRTError

#: Progress events of a run: `reporter(event, info)` with event in start, resume, step, eval, checkpoint, done.
Reporter = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class Recipe:
    """Per-preset defaults (measured on the synthetic set for ssd-small; seed-style SGD for the SSD300 presets)."""

    optimizer: str = "sgd"
    lr: float = 2.6e-3
    batch_size: int = 32
    weight_decay: float = 5e-4
    warmup_steps: int = 300
    min_lr_ratio: float = 0.01
    augment: str = "ssd"


#: ssd-small, measured on synthetic (2000 train images, mAP@.5 on 100 val images after 8000 images seen, 1 thread):
#: SGD 0.05 bs32 + SSD aug: 0.04 (after 7800); AdamW bs16 lr 2e-3: 0.43, 5e-3: 0.61, 1e-2 + flip: 0.69, 2e-2: 0.59;
#: AdamW bs8 lr 7e-3 + flip: 0.875. Small batches = more updates per CPU-second; few epochs need little augmentation.
RECIPES: dict[str, Recipe] = {
    "ssd-small": Recipe(optimizer="adamw", lr=7e-3, batch_size=8, weight_decay=5e-4, warmup_steps=100, augment="light"),
}


@dataclass
class TrainConfig:
    """One training run. None fields take the preset's Recipe defaults (see `resolved`)."""

    preset: str
    data: str
    out_dir: str
    epochs: int | None = None
    max_minutes: float | None = None
    batch_size: int | None = None
    lr: float | None = None
    optimizer: str | None = None
    weight_decay: float | None = None
    warmup_steps: int | None = None
    min_lr_ratio: float | None = None
    augment: str | None = None
    resume: bool = False
    device: str = "cpu"
    workers: int = 0
    seed: int = 0
    eval_limit: int | None = 200
    eval_batch_size: int = 32
    train_size: int | None = None
    amp: bool = True
    threads: int | None = None  # torch intra-op threads on CPU; None = auto_threads() (load-dependent: not reproducible)
    #: wall-clock safety stop that does not shape the LR schedule (unlike max_minutes): past it the run stops after
    #: the current step, evaluates and saves, and TrainResult.stopped_by_guard is True (the schedule did not finish)
    guard_minutes: float | None = None

    def resolved(self) -> TrainConfig:
        recipe = RECIPES.get(self.preset, Recipe())
        filled = {k: getattr(recipe, k) for k in asdict(recipe) if getattr(self, k) is None}
        cfg = replace(self, **filled)
        if cfg.epochs is None and cfg.max_minutes is None:
            raise SSDTRTError("train: give --epochs N or --max-minutes M (or both)")
        if cfg.optimizer not in ("sgd", "adamw"):
            raise SSDTRTError(f"train: optimizer must be sgd or adamw, not {cfg.optimizer!r}")
        if cfg.augment not in ("ssd", "light", "none"):
            raise SSDTRTError(f"train: augment must be ssd, light or none, not {cfg.augment!r}")
        return cfg


@dataclass
class TrainResult:
    out_dir: Path
    last_path: Path
    best_path: Path | None
    metrics: dict[str, Any]
    epochs_completed: int
    steps: int
    elapsed_s: float
    history: list[dict[str, Any]] = field(default_factory=list)
    model: Any = None  # the trained SSD (unwrapped), in train mode, on its device
    stopped_by_guard: bool = False  # guard_minutes ran out before the schedule finished
