"""`ssdtrt demo`: the end-to-end job on the embedded synthetic data (what `make demo` runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo_cmd(
        out: Annotated[Path, typer.Option("--out", help="Output folder for checkpoint, ONNX, engine and report.")] = Path(
            "runs/demo"
        ),
        max_minutes: Annotated[float, typer.Option("--max-minutes", help="Training time budget.")] = 4.0,
    ) -> None:
        """Train ssd-small on synthetic shapes, score it, export ONNX (nms), build an OpenVINO engine, score each
        through the same pipeline, write annotated images and runs/demo/report.{json,md}."""
        from ssdtrt.demo import run_demo

        report = run_demo(out, max_minutes=max_minutes, log=lambda msg: typer.echo(msg))
        for name, v in report["variants"].items():
            typer.echo(f"  {name:24s} mAP {v['map']:.4f}  mAP@.5 {v['map50']:.4f}")
        typer.echo(f"done in {report['total_s']} s — report: {out / 'report.md'} and {out / 'report.json'}")
