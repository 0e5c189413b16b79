"""Checkpoints of a run: `last.pt` every epoch and at the end, `best.pt` at the best val mAP@[.5:.95], and resume.

A checkpoint holds model, optimizer, epoch, preset, class names, metrics and extra = {scheduler counters, GradScaler
state, config, history}: enough for a killed run, resumed from its last epoch checkpoint, to end with the same
weights as an uninterrupted one (tests/train/test_reliability_train.py).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from ssdtrt.core.errors import CheckpointError, ClassCountMismatchError
from ssdtrt.train.config import TrainConfig
from ssdtrt.train.state import TrainRun


def load_resume(cfg: TrainConfig, last: Path, class_names: tuple[str, ...]) -> dict[str, Any]:
    """The run's `last.pt`, checked to be of the same preset and classes."""
    from ssdtrt.model.checkpoint import load_checkpoint

    ckpt = load_checkpoint(last)
    if ckpt.get("preset") != cfg.preset:
        raise CheckpointError(f"{last}: was trained with preset {ckpt.get('preset')!r}, not {cfg.preset!r}")
    if tuple(ckpt["class_names"]) != tuple(class_names):
        raise ClassCountMismatchError(
            f"{last}: classes {list(ckpt['class_names'])} differ from the dataset's {list(class_names)}"
        )
    return ckpt


def restore(run: TrainRun, ckpt: dict[str, Any]) -> None:
    """Optimizer, counters, GradScaler, history and last metrics from a resume checkpoint."""
    extra = ckpt.get("extra") or {}
    if ckpt.get("optimizer"):
        run.opt.load_state_dict(ckpt["optimizer"])
    run.counters.update(extra.get("scheduler", {}))
    if run.use_amp and extra.get("scaler"):
        run.scaler.load_state_dict(extra["scaler"])
    run.history = list(extra.get("history", []))
    run.metrics = ckpt.get("metrics")
    run.report("resume", {"path": str(run.last_path), **run.counters})


def _extra_state(run: TrainRun) -> dict[str, Any]:
    return {
        "scheduler": dict(run.counters),
        "scaler": run.scaler.state_dict() if run.use_amp else None,
        "config": asdict(run.cfg),
        "history": run.history,
    }


def save(run: TrainRun, path: Path, epoch: int) -> None:
    """Write the run's state (with its current metrics) to `path` atomically."""
    from ssdtrt.model.checkpoint import save_checkpoint

    save_checkpoint(path, run.model, optimizer=run.opt, epoch=epoch, metrics=run.metrics, extra=_extra_state(run))


def save_epoch(run: TrainRun, epoch: int) -> None:
    """After an epoch's evaluation: `best.pt` when its mAP is the best so far, then `last.pt`."""
    assert run.metrics is not None
    if run.metrics["map"] > float(run.counters["best_map"]):
        run.counters["best_map"] = float(run.metrics["map"])
        save(run, run.best_path, epoch)
    save(run, run.last_path, epoch)
    run.report("checkpoint", {"path": str(run.last_path), "epoch": epoch})
