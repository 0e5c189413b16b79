"""`ssdtrt compare A B`: per-output errors and detection match rate of two models on the same images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ssdtrt.cli.common import DataOption, NoVerifyOption


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_cmd)


def compare_cmd(
    a: Annotated[Path, typer.Argument(help="Reference: checkpoint (.pt) or ONNX.")],
    b: Annotated[Path, typer.Argument(help="Candidate: checkpoint (.pt) or ONNX.")],
    data: DataOption = "synthetic",
    split: Annotated[str, typer.Option("--split", help="Dataset split.")] = "val",
    images: Annotated[int, typer.Option("--images", help="Number of images.")] = 20,
    atol: Annotated[float, typer.Option("--atol", help="Absolute tolerance per element.")] = 1e-4,
    rtol: Annotated[float, typer.Option("--rtol", help="Relative tolerance per element.")] = 1e-3,
    min_match: Annotated[
        float, typer.Option("--min-match", help="Minimum detection match rate (same label, IoU >= 0.99).")
    ] = 0.99,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per run.")] = 8,
    json_out: Annotated[
        Optional[Path], typer.Option("--json", help="Also write the report as JSON.")  # noqa: UP007
    ] = None,
    no_verify: NoVerifyOption = False,
) -> int:
    """Compare two models (Polygraphy style): max/mean abs and rel error per shared output, detection match rate;
    exit 0 when within tolerances, 1 otherwise."""
    from rich.progress import Progress
    from rich.table import Table

    from ssdtrt.cli.common import console
    from ssdtrt.compare import compare_models, load_images, load_subject
    from ssdtrt.fileio import atomic_write_json

    con = console()
    imgs = load_images(data, images, split)
    sa, sb = load_subject(a, verify_hash=not no_verify), load_subject(b, verify_hash=not no_verify)
    try:
        with Progress(console=console(stderr=True), transient=True) as bar:
            task = bar.add_task("comparing", total=len(imgs))
            report = compare_models(
                sa, sb, imgs, atol=atol, rtol=rtol, min_match=min_match, batch_size=batch_size,
                progress=lambda n: bar.advance(task, n),
            )
    finally:
        sa.close()
        sb.close()
    con.print(f"A = {report.a}\nB = {report.b}\n{report.num_images} images of {data} ({split}), atol {atol:g}, rtol {rtol:g}")
    if report.outputs:
        table = Table("output", "max abs", "mean abs", "max rel", "mean rel", "pass")
        for o in report.outputs:
            table.add_row(o.name, f"{o.max_abs:.3g}", f"{o.mean_abs:.3g}", f"{o.max_rel:.3g}", f"{o.mean_rel:.3g}",
                          "[green]yes[/]" if o.passed else "[red]no[/]")
        con.print(table)
    else:
        con.print("no shared raw/decoded outputs: comparing detections only")
    con.print(f"detections: A {report.detections_a}, B {report.detections_b}, matched {report.matched} "
              f"→ match rate {report.match_rate:.4f} (min {min_match:g})")
    con.print("[green]PASS[/]" if report.passed else "[red]FAIL[/]")
    if json_out is not None:
        atomic_write_json(json_out, report.to_dict())
    return 0 if report.passed else 1
