"""The demo's checkpoint: trained on a fixed schedule (machine-independent weights), recorded with the settings
that decided it, and reused by a later demo whose settings and file still match."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ssdtrt.demo.context import TrainReporter
from ssdtrt.demo.settings import DemoSettings

TRAIN_RECORD = "demo_train.json"  # in OUT/train: what trained the checkpoint, so an unchanged re-run can skip training
GUARD_WARNING = ("training hit the {minutes:g}-min wall-clock guard after {steps} of {planned_steps} steps: this "
                 "checkpoint and every figure below are NOT the demo's reproducible result (the machine was too slow "
                 "or too loaded); rerun with --retrain on a quieter machine")


def train_config(out_dir: Path, cfg: DemoSettings) -> Any:
    """The demo's TrainConfig: everything that decides the checkpoint is fixed here (and in `train_key`)."""
    from ssdtrt.train.config import TrainConfig

    return TrainConfig(preset="ssd-small", data="synthetic", out_dir=str(out_dir / "train"), epochs=cfg.train_epochs,
                       train_size=cfg.train_images, threads=cfg.train_threads, seed=cfg.train_seed, workers=0,
                       eval_limit=cfg.eval_images, guard_minutes=cfg.guard_minutes)


def train_key(cfg: DemoSettings) -> dict[str, Any]:
    """The settings that decide the demo's checkpoint (anything else can change without retraining): the schedule,
    threads, seed, the images that pick best.pt, the recipe and the code and torch versions."""
    from dataclasses import asdict

    import torch

    import ssdtrt
    from ssdtrt.train.config import RECIPES

    return {"preset": "ssd-small", "data": "synthetic", "epochs": cfg.train_epochs, "train_images": cfg.train_images,
            "threads": cfg.train_threads, "seed": cfg.train_seed, "eval_images": cfg.eval_images,
            "recipe": asdict(RECIPES["ssd-small"]), "ssdtrt": ssdtrt.__version__, "torch": torch.__version__}


def reusable_checkpoint(out_dir: Path, cfg: DemoSettings) -> tuple[Path, dict[str, Any]] | None:
    """(checkpoint, train info) of an earlier demo in `out_dir` with the same training settings, if intact and
    complete (a run stopped by the wall-clock guard is never reused)."""
    import json

    from ssdtrt.core.errors import SSDTRTError
    from ssdtrt.io.files import sha256_file
    from ssdtrt.model.checkpoint import load_model

    record_path = out_dir / "train" / TRAIN_RECORD
    try:
        record = json.loads(record_path.read_text())
        ckpt = record_path.parent / record["checkpoint"]
        if record["key"] != train_key(cfg) or record["train"].get("stopped_by_guard", True):
            return None
        if sha256_file(ckpt) != record["sha256"]:
            return None
        load_model(ckpt)  # still readable by this version of the code
    except (OSError, ValueError, KeyError, TypeError, AttributeError, SSDTRTError):
        return None
    return ckpt, {**record["train"], "reused": True}


def train_checkpoint(out_dir: Path, cfg: DemoSettings, reporter: TrainReporter | None) -> tuple[Path, dict[str, Any]]:
    from ssdtrt.io.files import atomic_write_json, sha256_file
    from ssdtrt.train.config import RECIPES
    from ssdtrt.train.loop import train

    trained = train(train_config(out_dir, cfg), reporter)
    planned = cfg.train_epochs * (cfg.train_images // RECIPES["ssd-small"].batch_size)  # the loader drops the last
    info = {"elapsed_s": round(trained.elapsed_s, 1), "epochs": trained.epochs_completed, "steps": trained.steps,
            "planned_epochs": cfg.train_epochs, "planned_steps": planned, "threads": cfg.train_threads,
            "stopped_by_guard": trained.stopped_by_guard,
            "val_map": trained.metrics.get("map"), "val_map50": trained.metrics.get("map50")}
    ckpt = trained.best_path or trained.last_path
    record = {"key": train_key(cfg), "checkpoint": Path(ckpt).name, "sha256": sha256_file(ckpt), "train": info}
    atomic_write_json(out_dir / "train" / TRAIN_RECORD, record)
    return ckpt, {**info, "reused": False}
