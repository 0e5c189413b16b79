"""`ssdtrt demo`: the end-to-end job on the embedded synthetic data (what `make demo` runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo_cmd(
        out: Annotated[Path, typer.Option("--out", help="Output folder for checkpoint, ONNX, engines and report.")] = Path(
            "runs/demo"
        ),
        epochs: Annotated[
            int, typer.Option("--epochs", help="Training epochs (250 steps each): a fixed schedule, so the checkpoint "
                              "does not depend on the machine's load.")
        ] = 6,
        guard_minutes: Annotated[
            float, typer.Option("--guard-minutes", help="Safety stop for training only (does not shape the schedule); "
                                "if hit, the report carries a warning.")
        ] = 15.0,
        eval_images: Annotated[int, typer.Option("--eval-images", help="Validation images per mAP.")] = 200,
        calib_images: Annotated[int, typer.Option("--calib-images", help="INT8 calibration images.")] = 128,
        bench_iters: Annotated[int, typer.Option("--bench-iters", help="Timed iterations per latency row.")] = 50,
        retrain: Annotated[
            bool,
            typer.Option("--retrain", help="Train again even if OUT/train holds a checkpoint an earlier demo trained "
                         "with the same settings (by default it is reused: a re-run took 23 s instead of 274 s here)."),
        ] = False,
    ) -> None:
        """Train ssd-small on synthetic shapes; export ONNX raw/nms, FP16 and INT8; build OpenVINO (and TensorRT where
        present) engines; mAP of every variant, parity against the checkpoint, batch-1 latency of every backend,
        annotated images; write OUT/report.md and OUT/report.json."""
        from dataclasses import replace

        from ssdtrt.demo.job import DemoSettings, run_demo

        settings = replace(DemoSettings(), train_epochs=epochs, guard_minutes=guard_minutes,
                           calib_images=calib_images, bench_iters=bench_iters, reuse_checkpoint=not retrain)
        with _DemoProgress() as ui:
            report = run_demo(out, eval_images=eval_images, settings=settings,
                              log=ui.log, start_task=ui.start_task, train_reporter=ui.train_event)
        con = ui.console
        for warning in report.get("warnings", []):
            con.print(f"[bold red]WARNING:[/] {warning}")
        con.print(f"\n[bold]mAP@[.5:.95] {report['map']:.4f}  mAP@.5 {report['map50']:.4f}[/bold] (torch fp32)")
        for name, v in report["variants"].items():
            con.print(f"  {name:22s} mAP {v['map']:.4f}  mAP@.5 {v['map50']:.4f}  ({v['delta_map_pts']:+.2f} pt)")
        failed = [p["b"] for p in report["parity"] if not p["passed"]]
        con.print(f"parity: {len(report['parity']) - len(failed)}/{len(report['parity'])} pass"
                  + (f" [red](fail: {', '.join(failed)})[/]" if failed else ""))
        for name, ms in report["latency"]["e2e_p50_ms"].items():
            con.print(f"  latency {name:20s} e2e p50 {ms:7.2f} ms")
        con.print(f"[bold]done in {report['total_s']:.0f} s[/bold] — report: {report['report_md']} and "
                  f"{report['report_json']}; images in {out / 'images'}")


class _DemoProgress:
    """One rich live area for the whole demo: step lines above, one bar for the current sub-step (training too)."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from ssdtrt.cli.common import console

        self.console = console()
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), console=self.console,
                                 transient=True)
        self.task: Any = None
        self.ips = 0.0

    def __enter__(self) -> _DemoProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._drop()
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def _drop(self) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None

    def log(self, message: str) -> None:
        self.progress.console.print(message, markup=False, highlight=False, soft_wrap=True)

    def start_task(self, description: str, total: int) -> Any:
        self._drop()
        task = self.task = self.progress.add_task(description, total=total, stats="")
        return lambda n: self.progress.advance(task, n)

    def train_event(self, event: str, info: dict[str, Any]) -> None:
        if event == "start":
            self._drop()
            self.task = self.progress.add_task("train", total=100, stats="")
            self.log(f"    {info['train_images']} train images, {info['steps_per_epoch']} steps/epoch, "
                     f"val {info['val_images']} images, on {info['device']}")
        elif event == "step" and self.task is not None:
            self.ips = info["images_per_s"] if self.ips == 0 else 0.9 * self.ips + 0.1 * info["images_per_s"]
            self.progress.update(self.task, completed=round(100 * min(info["progress"], 1.0)),
                                 stats=f"ep {info['epoch'] + 1} step {info['step']} loss {info['loss']:.3f} "
                                       f"{self.ips:.0f} img/s")
        elif event == "eval":
            self.log(f"    epoch {info['epoch']}: val mAP@[.5:.95] {info['map']:.3f}  mAP@.5 {info['map50']:.3f}  "
                     f"({info['elapsed_s'] / 60:.1f} min)")
