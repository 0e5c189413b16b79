"""Optimizer and learning-rate schedule: linear warmup, then cosine over *progress* in [0, 1].

Progress is steps / total steps for `epochs`, elapsed / budget for `max_minutes` (the larger of the two when both
are set), so a time-budgeted run still anneals to the end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from ssdtrt.train.config import TrainConfig


def lr_at(progress: float, step: int, base_lr: float, warmup_steps: int, min_lr_ratio: float) -> float:
    """Linear warmup from 10 % over `warmup_steps`, then cosine from `base_lr` to `base_lr * min_lr_ratio`."""
    warm = min(1.0, 0.1 + 0.9 * step / warmup_steps) if warmup_steps > 0 else 1.0
    p = min(max(progress, 0.0), 1.0)
    cosine = min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * p))
    return base_lr * warm * cosine


@dataclass(frozen=True)
class Schedule:
    """How far a run is (`progress`), what LR a step gets, and when the clock stops it."""

    base_lr: float
    warmup_steps: int
    min_lr_ratio: float
    total_steps: int | None  # epochs × steps per epoch; None for a time-budgeted run
    budget_s: float | None  # max_minutes in seconds (shapes the LR)
    guard_s: float | None  # guard_minutes in seconds (a safety stop only)
    max_epochs: int

    @staticmethod
    def of(cfg: TrainConfig, steps_per_epoch: int) -> Schedule:
        return Schedule(
            base_lr=float(cfg.lr),  # type: ignore[arg-type]
            warmup_steps=int(cfg.warmup_steps),  # type: ignore[arg-type]
            min_lr_ratio=float(cfg.min_lr_ratio),  # type: ignore[arg-type]
            total_steps=cfg.epochs * steps_per_epoch if cfg.epochs is not None else None,
            budget_s=cfg.max_minutes * 60.0 if cfg.max_minutes is not None else None,
            guard_s=cfg.guard_minutes * 60.0 if cfg.guard_minutes is not None else None,
            max_epochs=cfg.epochs if cfg.epochs is not None else 1 << 30,
        )

    def progress(self, step: int, elapsed_s: float) -> float:
        parts = [step / self.total_steps if self.total_steps else 0.0, elapsed_s / self.budget_s if self.budget_s else 0.0]
        return max(parts)

    def lr(self, step: int, elapsed_s: float) -> float:
        return lr_at(self.progress(step, elapsed_s), step, self.base_lr, self.warmup_steps, self.min_lr_ratio)

    def out_of_budget(self, elapsed_s: float, eval_s: float) -> bool:
        """The time budget is spent once the last evaluation's duration is reserved for the final one."""
        return self.budget_s is not None and elapsed_s + eval_s >= self.budget_s

    def guard_hit(self, elapsed_s: float, steps_done: int) -> bool:
        """The safety stop fired before the schedule finished."""
        unfinished = self.total_steps is None or steps_done < self.total_steps
        return self.guard_s is not None and elapsed_s >= self.guard_s and unfinished

    def steps_done(self, steps: int) -> bool:
        return self.total_steps is not None and steps >= self.total_steps


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases and norm scales (1-D tensors)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """AdamW or Nesterov SGD (momentum 0.9) at the config's LR; the schedule sets each step's LR."""
    import torch

    groups = _param_groups(model, float(cfg.weight_decay))  # type: ignore[arg-type]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=float(cfg.lr))  # type: ignore[arg-type]
    return torch.optim.SGD(groups, lr=float(cfg.lr), momentum=0.9, nesterov=True)  # type: ignore[arg-type]
