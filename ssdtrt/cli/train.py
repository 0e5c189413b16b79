"""`ssdtrt train`: train a preset on a dataset with a rich progress bar (torchrun-aware: only rank 0 prints)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ssdtrt.cli.common import DataOption, DeviceOption, OutDirOption


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)


def train_cmd(
    preset: Annotated[
        Optional[str],  # noqa: UP007
        typer.Option("--preset", help="Model preset: ssd300-resnet50, ssd300-vgg16, ssd-small (not with --qat)."),
    ] = None,
    qat: Annotated[bool, typer.Option("--qat", help="Quantization-aware fine-tuning of --from (ssdtrt.train.qat): "
                                                    "fake quantization where the INT8 export puts Q/DQ.")] = False,
    from_ckpt: Annotated[
        Optional[Path], typer.Option("--from", help="--qat: the checkpoint to fine-tune.")  # noqa: UP007
    ] = None,
    qat_steps: Annotated[int, typer.Option("--qat-steps", help="--qat: optimizer steps.")] = 300,
    qat_calib: Annotated[str, typer.Option("--qat-calib", help="--qat: calibration method of the scales "
                                                               "(minmax, percentile, entropy).")] = "percentile",
    data: DataOption = "synthetic",
    out: OutDirOption = Path("runs/train"),
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Number of epochs.")] = None,  # noqa: UP007
    max_minutes: Annotated[
        Optional[float],  # noqa: UP007
        typer.Option("--max-minutes", help="Wall-clock budget incl. evaluation; stops cleanly, evaluates, saves."),
    ] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Images per step (per process).")] = None,  # noqa: UP007
    lr: Annotated[Optional[float], typer.Option("--lr", help="Peak learning rate (preset default).")] = None,  # noqa: UP007
    optimizer: Annotated[Optional[str], typer.Option("--optimizer", help="sgd or adamw.")] = None,  # noqa: UP007
    augment: Annotated[Optional[str], typer.Option("--augment", help="ssd, light or none.")] = None,  # noqa: UP007
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/last.pt (same schedule).")] = False,
    device: DeviceOption = "cpu",
    workers: Annotated[int, typer.Option("--workers", help="DataLoader worker processes.")] = 1,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    eval_limit: Annotated[
        int, typer.Option("--eval-limit", help="Validation images scored after each epoch (0 = all).")
    ] = 200,
    threads: Annotated[
        Optional[int],  # noqa: UP007
        typer.Option("--threads", help="CPU threads for torch (default: from the cores and the load; fix it for "
                     "bit-identical reruns and resumes)."),
    ] = None,
    train_size: Annotated[
        Optional[int],  # noqa: UP007
        typer.Option("--train-size", help="Training images (synthetic: generated; others: the first N)."),
    ] = None,
) -> None:
    """Train an SSD preset; writes OUT/last.pt, OUT/best.pt (by val mAP) and OUT/metrics.json."""
    from ssdtrt.core.config import get_preset
    from ssdtrt.core.errors import SSDTRTError

    if qat:
        from ssdtrt.cli.train_qat import run_qat_cli

        return run_qat_cli(from_ckpt, out, data=data, steps=qat_steps, calib_method=qat_calib, lr=lr,
                           batch_size=batch_size, seed=seed, threads=threads, eval_limit=eval_limit,
                           train_size=train_size)
    if preset is None:
        raise SSDTRTError("train: give --preset NAME (or --qat --from CKPT)")
    get_preset(preset)  # unknown preset: one line before torch is imported
    if epochs is None and max_minutes is None:
        raise SSDTRTError("train: give --epochs N or --max-minutes M (or both)")
    if resume and not (out / "last.pt").exists():
        raise SSDTRTError(f"train --resume: {out / 'last.pt'} does not exist")
    from ssdtrt.train.loop import TrainConfig, train

    cfg = TrainConfig(
        preset=preset,
        data=data,
        out_dir=str(out),
        epochs=epochs,
        max_minutes=max_minutes,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        augment=augment,
        resume=resume,
        device=device,
        workers=workers,
        seed=seed,
        eval_limit=eval_limit or None,
        train_size=train_size,
        threads=threads,
    )
    is_main = int(os.environ.get("RANK", "0")) == 0
    if not is_main:
        train(cfg)
        return
    with _RichReporter() as reporter:
        result = train(cfg, reporter)
    from ssdtrt.cli.common import console

    m = result.metrics
    console().print(
        f"[bold]done[/bold]: {result.epochs_completed} epochs, {result.steps} steps, {result.elapsed_s / 60:.1f} min; "
        f"val mAP@[.5:.95] {m.get('map', 0):.3f}, mAP@.5 {m.get('map50', 0):.3f} → {result.last_path}"
        + (f", best {result.best_path}" if result.best_path else "")
    )


class _RichReporter:
    """Turns train() events into a rich progress bar (fraction of steps or of the time budget) and eval lines."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        from ssdtrt.cli.common import console

        self.console = console()
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self.task: Any = None
        self.ips = 0.0

    def __enter__(self) -> _RichReporter:
        self.progress.__enter__()
        self.task = self.progress.add_task("train", total=1.0, stats="")
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def __call__(self, event: str, info: dict[str, Any]) -> None:
        if event == "start":
            what = f"{info['total_steps']} steps" if info["total_steps"] else ""
            if info["budget_s"]:
                what += (" or " if what else "") + f"{info['budget_s'] / 60:.1f} min"
            self.console.print(
                f"training on {info['train_images']} images ({info['steps_per_epoch']} steps/epoch, {what}), "
                f"val {info['val_images']} images, {info['world_size']} process(es) on {info['device']}"
            )
        elif event == "resume":
            self.console.print(f"resuming {info['path']} at epoch {info['epochs_completed']}, step {info['step']}")
        elif event == "step":
            self.ips = info["images_per_s"] if self.ips == 0 else 0.9 * self.ips + 0.1 * info["images_per_s"]
            stats = f"ep {info['epoch'] + 1} step {info['step']} loss {info['loss']:.3f} lr {info['lr']:.2g} {self.ips:.0f} img/s"
            self.progress.update(self.task, completed=min(info["progress"], 1.0), stats=stats)
        elif event == "eval":
            self.progress.console.print(
                f"epoch {info['epoch']}: val mAP@[.5:.95] {info['map']:.3f}  mAP@.5 {info['map50']:.3f}  "
                f"(eval {info['eval_s']:.1f} s, {info['elapsed_s'] / 60:.1f} min elapsed)"
            )
