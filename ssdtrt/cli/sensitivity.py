"""`ssdtrt sensitivity MODEL`: what INT8 costs per layer (head SQNR for all, mAP for the most sensitive)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ssdtrt.cli.export import CalibMethod


def register(app: typer.Typer) -> None:
    app.command("sensitivity")(sensitivity_cmd)


def sensitivity_cmd(
    model: Annotated[Path, typer.Argument(help="Checkpoint (.pt) or FP32 ONNX (with its manifest).")],
    calib_data: Annotated[str, typer.Option("--calib-data", help="Calibration dataset spec.")] = "synthetic",
    calib_images: Annotated[int, typer.Option("--calib-images", help="Calibration images.")] = 256,
    calib_method: Annotated[CalibMethod, typer.Option("--calib-method", help="Activation range method.")] = CalibMethod.minmax,
    calib_split: Annotated[str, typer.Option("--calib-split", help="Calibration split.")] = "train",
    eval_data: Annotated[
        Optional[str], typer.Option("--eval-data", help="Evaluation dataset (default: the calibration source).")  # noqa: UP007
    ] = None,
    eval_split: Annotated[str, typer.Option("--eval-split", help="Evaluation split.")] = "val",
    sqnr_images: Annotated[int, typer.Option("--sqnr-images", help="Images for the head SQNR of every layer.")] = 32,
    map_images: Annotated[int, typer.Option("--map-images", help="Images for the mAP of the top layers.")] = 200,
    top: Annotated[int, typer.Option("--top", help="Most sensitive layers also scored in mAP (0: none).")] = 3,
    min_sqnr: Annotated[
        Optional[float],  # noqa: UP007
        typer.Option("--min-sqnr", help="Also find the fewest top layers to leave float for this head SQNR (dB)."),
    ] = None,
    out: Annotated[
        Optional[Path], typer.Option("--out", help="Folder (default export/sensitivity/<model>-<method>).")  # noqa: UP007
    ] = None,
) -> None:
    """Rank the quantizable layers by what INT8 costs them; writes sensitivity.json, .md and .png."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ssdtrt.cli.common import console
    from ssdtrt.export.calibration import CalibrationConfig
    from ssdtrt.export.sensitivity import study_sensitivity
    from ssdtrt.export.sensitivity_report import write_report

    out_dir = out or Path("export") / "sensitivity" / f"{model.stem}-{calib_method.value}"
    cfg = CalibrationConfig(calib_data, calib_images, calib_method.value, split=calib_split,
                            cache_dir=Path("export") / ".calib")
    con = console()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console(stderr=True), transient=True) as bar:
        task = bar.add_task("calibrating and quantizing", total=None)

        def progress(label: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, description=label)

        report = study_sensitivity(model, cfg, eval_data=eval_data or calib_data, eval_split=eval_split,
                                   sqnr_images=sqnr_images, map_images=map_images, top=top,
                                   min_sqnr_db=min_sqnr, progress=progress)
    paths = write_report(report, out_dir)
    con.print(f"full INT8 head SQNR {report.int8_sqnr_db:.2f} dB; most sensitive:")
    for r in report.layers[:5]:
        extra = f", mAP drop alone {r.map_alone_drop_pts:+.2f} pts" if r.map_alone_drop_pts is not None else ""
        con.print(f"  {r.layer}: {r.sqnr_alone_db:.2f} dB alone INT8{extra}")
    fb = report.meta.get("sqnr_fallback")
    if fb:
        con.print(f"--min-sqnr {fb['min_sqnr_db']:g} dB: {len(fb['float_layers'])} layer(s) float → "
                  f"{fb['sqnr_db']:.2f} dB")
    con.print(f"wrote {paths['json']}, {paths['md'].name}, {paths['png'].name}")
