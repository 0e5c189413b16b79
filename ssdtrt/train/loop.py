"""Training loop: SGD/AdamW with warmup + cosine LR, atomic checkpoints, resume, val mAP, AMP on CUDA, torchrun DDP.

The pieces live beside this module: `config` (TrainConfig, recipes), `schedule` (optimizer, LR over progress),
`data` (augmentation, loader order), `checkpointing` (last / best / resume), `eval_hook` (val mAP after each epoch),
`distributed` (torchrun, threads). Reproducible runs use `epochs` with fixed `threads` (and `guard_minutes` only as a
safety stop): on CPU the same config then gives the same weights bit for bit, quiet machine or loaded, and a run
killed at any point and resumed from its last epoch checkpoint (`resume`) ends with the same weights as an
uninterrupted one (tests/train/test_reliability_train.py). Under DDP the elapsed time is all-reduced (max) every step:
every replica sees the same LR and stops at the same step, and only rank 0 evaluates, writes and reports. Library
code: progress goes to `reporter(event, info)`.

Files in `out_dir`: `last.pt`, `best.pt` (see `checkpointing`), `metrics.json`.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ssdtrt.core.errors import SSDTRTError
from ssdtrt.train import checkpointing, eval_hook
from ssdtrt.train.config import RECIPES, Recipe, Reporter, TrainConfig, TrainResult
from ssdtrt.train.data import make_train_loader, start_epoch, train_transform
from ssdtrt.train.distributed import (
    DistContext, auto_threads, close_distributed, from_main, init_distributed, max_over_ranks,
)
from ssdtrt.train.schedule import Schedule, lr_at, make_optimizer, set_lr
from ssdtrt.train.state import TrainRun

__all__ = ["RECIPES", "Recipe", "Reporter", "TrainConfig", "TrainResult", "DistContext", "auto_threads",
           "init_distributed", "lr_at", "train", "train_transform"]


def train(config: TrainConfig, reporter: Reporter | None = None) -> TrainResult:
    """Train per `config`; returns the final metrics and checkpoint paths. Raises SSDTRTError subclasses."""
    import torch

    cfg = config.resolved()
    ctx = init_distributed(cfg.device)
    try:
        run = _setup(cfg, ctx, reporter if ctx.is_main else None, torch)
        _run_epochs(run, torch)
        return _finish(run)
    finally:
        close_distributed(ctx)


def _device(cfg: TrainConfig, ctx: DistContext, torch: Any) -> Any:
    """The run's torch device (this rank's GPU under DDP); sets the CPU thread count off CUDA."""
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        from ssdtrt.core.errors import BackendUnavailableError

        raise BackendUnavailableError("train: --device cuda but no CUDA device is available")
    device = torch.device(f"cuda:{ctx.local_rank}" if cfg.device.startswith("cuda") and ctx.enabled else cfg.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(cfg.threads or auto_threads(ctx.local_world_size, cfg.workers))
    return device


def _setup(cfg: TrainConfig, ctx: DistContext, reporter: Reporter | None, torch: Any) -> TrainRun:
    """Datasets, model (fresh or from `last.pt`), loss, optimizer, loader; reports `start`. The order of the steps
    that draw random numbers (seed, model init, loader) is what makes a run reproducible: keep it."""
    from ssdtrt.core.config import get_preset
    from ssdtrt.core.priors import default_boxes
    from ssdtrt.data import open_dataset
    from ssdtrt.model.checkpoint import model_from_checkpoint
    from ssdtrt.model.loss import MultiBoxLoss
    from ssdtrt.model.ssd import build_model

    spec = get_preset(cfg.preset)
    device = _device(cfg, ctx, torch)
    torch.manual_seed(cfg.seed)
    out_dir = Path(cfg.out_dir)
    train_ds = open_dataset(cfg.data, "train", size=cfg.train_size)
    val_ds = open_dataset(cfg.data, "val")
    class_names = tuple(train_ds.class_names)
    ckpt = checkpointing.load_resume(cfg, out_dir / "last.pt", class_names) if cfg.resume else None
    if ckpt is not None:
        model = model_from_checkpoint(ckpt, source=out_dir / "last.pt")
    else:
        model = build_model(spec, class_names=class_names)
    model.category_ids = getattr(train_ds, "category_ids", None)  # COCO ids per label, kept by checkpoint and export
    model.to(device)
    use_amp = bool(cfg.amp and device.type == "cuda")
    run = TrainRun(
        cfg=cfg, ctx=ctx, report=reporter or (lambda event, info: None), device=device, model=model,
        train_model=model, criterion=MultiBoxLoss(default_boxes(spec), spec.variances).to(device),
        opt=make_optimizer(cfg, model), scaler=torch.amp.GradScaler("cuda", enabled=use_amp), use_amp=use_amp,
        loader=None, sampler=None, val_ds=val_ds, out_dir=out_dir,
    )
    if ckpt is not None:
        checkpointing.restore(run, ckpt)
    if ctx.enabled:
        from torch.nn.parallel import DistributedDataParallel

        run.train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    run.loader, run.sampler = make_train_loader(cfg, train_ds, train_transform(spec, str(cfg.augment)), ctx)
    run.schedule = Schedule.of(cfg, len(run.loader))
    run.report("start", {
        "steps_per_epoch": len(run.loader), "total_steps": run.schedule.total_steps, "budget_s": run.schedule.budget_s,
        "train_images": len(train_ds),
        "val_images": len(val_ds) if cfg.eval_limit is None else min(len(val_ds), cfg.eval_limit),
        "world_size": ctx.world_size, "device": str(device), "config": asdict(cfg), **run.counters,
    })
    return run


def _run_epochs(run: TrainRun, torch: Any) -> None:
    """Epochs until the schedule ends, the time budget or the guard stops it; evaluate + save after each."""
    assert run.schedule is not None
    run.run_start = time.perf_counter() - float(run.counters["elapsed_s"])
    stop = run.schedule.progress(run.step, float(run.counters["elapsed_s"])) >= 1.0
    run.evaluated_at_step = run.step if run.metrics is not None else -1
    epoch = int(run.counters["epochs_completed"])
    while not stop and epoch < run.schedule.max_epochs:
        start_epoch(run.loader, run.sampler, run.cfg.seed, epoch)
        run.train_model.train()
        epoch_done = _run_epoch(run, epoch, torch)
        stop = not epoch_done
        if epoch_done:
            epoch += 1
            run.counters["epochs_completed"] = epoch
        if run.schedule.steps_done(run.step):
            stop = True
        if run.ctx.is_main:  # evaluate + save on rank 0; the others wait at the broadcast
            eval_hook.evaluate_model(run)
            eval_hook.record_eval(run, epoch)
            checkpointing.save_epoch(run, epoch)
        if run.ctx.enabled:
            run.eval_s = from_main(run.eval_s, run.device)


def _run_epoch(run: TrainRun, epoch: int, torch: Any) -> bool:
    """One pass over the loader; False when the time budget or the guard stopped it part way."""
    assert run.schedule is not None
    for images, boxes, labels in run.loader:
        elapsed = _train_step(run, epoch, images, boxes, labels, torch)
        if run.schedule.out_of_budget(elapsed, run.eval_s):
            return False
        if run.schedule.guard_hit(elapsed, run.step):
            run.stopped_by_guard = True
            return False
    return True


def _train_step(run: TrainRun, epoch: int, images: Any, boxes: Any, labels: Any, torch: Any) -> float:
    """One optimizer step at the schedule's LR; reports `step` and returns the run's elapsed seconds after it."""
    assert run.schedule is not None
    t_step = time.perf_counter()
    step = run.step
    lr = run.schedule.lr(step, time.perf_counter() - run.run_start)
    set_lr(run.opt, lr)
    images = images.to(run.device, non_blocking=True)
    with torch.autocast(device_type=run.device.type, dtype=torch.float16, enabled=run.use_amp):
        locs, logits = run.train_model(images)
    out = run.criterion(locs, logits, list(boxes), list(labels))
    loss = out["loss"]
    if not torch.isfinite(loss):
        raise SSDTRTError(f"train: loss became {loss.item()} at step {step} (lr {lr:.3g}); try a lower --lr")
    run.opt.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.opt)
    run.scaler.update()
    run.counters["step"] = step + 1
    elapsed = time.perf_counter() - run.run_start
    if run.ctx.enabled:  # identical elapsed time (hence LR and stop decision) on every replica
        elapsed = max_over_ranks(elapsed, run.device)
    run.counters["elapsed_s"] = elapsed
    run.report("step", {
        "step": step + 1, "epoch": epoch, "loss": float(loss.detach()), "loc_loss": float(out["loc_loss"].detach()),
        "conf_loss": float(out["conf_loss"].detach()), "lr": lr,
        "images_per_s": images.shape[0] * run.ctx.world_size / max(time.perf_counter() - t_step, 1e-9),
        "progress": run.schedule.progress(step + 1, elapsed),
    })
    return elapsed


def _finish(run: TrainRun) -> TrainResult:
    """Final evaluation + `last.pt` when the last step was not evaluated yet; `metrics.json`; the result."""
    epochs = int(run.counters["epochs_completed"])
    if run.ctx.is_main and (run.metrics is None or run.evaluated_at_step != run.step):
        eval_hook.evaluate_model(run)
        checkpointing.save(run, run.last_path, epochs)
    if run.ctx.is_main:
        from ssdtrt.io.files import atomic_write_json

        m = run.metrics
        final = {
            "map": m["map"] if m else 0.0, "map50": m["map50"] if m else 0.0, "per_class": m["per_class"] if m else {},
            "epochs_completed": epochs, "steps": run.step,
            "train_elapsed_s": round(float(run.counters["elapsed_s"]), 2), "stopped_by_guard": run.stopped_by_guard,
            "history": run.history,
        }
        atomic_write_json(run.out_dir / "metrics.json", final)
        run.report("done", final)
    return TrainResult(
        out_dir=run.out_dir, last_path=run.last_path, best_path=run.best_path if run.best_path.exists() else None,
        metrics=run.metrics or {}, epochs_completed=epochs, steps=run.step,
        elapsed_s=float(run.counters["elapsed_s"]), history=run.history, model=run.model,
        stopped_by_guard=run.stopped_by_guard,
    )
