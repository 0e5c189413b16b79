"""`ssdtrt compare A B`: per-output errors and detection match rate of two models on the same images.

Either side may be a Polygraphy RunResults JSON (`polygraphy run ... --save-outputs out.json`), compared on the inputs
it ran on (`--load-inputs`); `--save-inputs` writes the inputs for `polygraphy run --load-inputs`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ssdtrt.cli.common import DataOption, NoVerifyOption


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_cmd)


def compare_cmd(
    a: Annotated[Path, typer.Argument(help="Reference: checkpoint (.pt), ONNX, or a Polygraphy RunResults .json.")],
    b: Annotated[
        Optional[Path],  # noqa: UP007
        typer.Argument(help="Candidate: checkpoint (.pt), ONNX, or a Polygraphy RunResults .json (may be left out "
                            "with --save-inputs)."),
    ] = None,
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
    load_inputs: Annotated[
        Optional[Path],  # noqa: UP007
        typer.Option("--load-inputs", help="Run on the inputs of a Polygraphy input file (polygraphy run "
                                           "--save-inputs) instead of --data images; needed for a RunResults side."),
    ] = None,
    save_inputs: Annotated[
        Optional[Path],  # noqa: UP007
        typer.Option("--save-inputs", help="Write the preprocessed inputs as a Polygraphy input file "
                                           "(for polygraphy run --load-inputs)."),
    ] = None,
    runner: Annotated[
        Optional[str],  # noqa: UP007
        typer.Option("--runner", help="Runner to read from a RunResults file holding several (e.g. trt-runner-N0-...)."),
    ] = None,
    no_verify: NoVerifyOption = False,
) -> int:
    """Compare two models (Polygraphy style): max/mean abs and rel error per shared output, detection match rate;
    exit 0 when within tolerances, 1 otherwise."""
    from rich.progress import Progress
    from rich.table import Table

    from ssdtrt.cli.common import console
    from ssdtrt.compare import compare_batches, load_images, load_subject
    from ssdtrt.compare_polygraphy import (
        PolygraphySubject,
        is_results_file,
        load_input_batches,
        save_input_batches,
    )
    from ssdtrt.core.errors import ResultsFileError
    from ssdtrt.io.files import atomic_write_json

    con = console()
    sides = [p for p in (a, b) if p is not None]
    models = [p for p in sides if not is_results_file(p)]
    if not models:
        raise ResultsFileError("both sides are Polygraphy RunResults: one side must be a model (it gives the preset)")
    if b is None and save_inputs is None:
        raise typer.BadParameter("give B to compare with, or --save-inputs to only write inputs", param_hint="B")
    if any(is_results_file(p) for p in sides) and load_inputs is None:
        raise ResultsFileError("a Polygraphy RunResults side needs --load-inputs: the inputs it ran on "
                               "(polygraphy run --save-inputs / --load-inputs)")
    model = load_subject(models[0], verify_hash=not no_verify)  # the side that describes both (preset, classes, postprocess)
    others = []
    try:
        if load_inputs is not None:
            batches = load_input_batches(load_inputs, model.input_name)
            source = f"{sum(x.shape[0] for x in batches)} inputs of {load_inputs} ({len(batches)} iterations)"
        else:
            rgb = load_images(data, images, split)
            parts = [rgb[i : i + batch_size] for i in range(0, len(rgb), batch_size)]
            batches = [model.preprocess(p) for p in parts]
            source = f"{len(rgb)} images of {data} ({split})"
        if save_inputs is not None:
            save_input_batches(save_inputs, model.input_name, batches)
            con.print(f"wrote {len(batches)} iteration(s) of {model.input_name!r} to {save_inputs} "
                      f"(then: polygraphy run {models[0]} --trt --load-inputs {save_inputs} --save-outputs OUT.json)")
            if b is None:
                return 0
        for p in (a, b):
            if p is not models[0]:
                others.append(PolygraphySubject(p, model, runner) if is_results_file(p) else load_subject(p, verify_hash=not no_verify))
        sa, sb = (model, others[0]) if a is models[0] else (others[0], model)
        total = sum(x.shape[0] for x in batches)
        if load_inputs is None and not isinstance(others[0], PolygraphySubject):  # each side its own preprocess stage
            batches = [(sa.preprocess(p), sb.preprocess(p)) for p in parts]  # (uint8-nhwc models: resized uint8)
        with Progress(console=console(stderr=True), transient=True) as bar:
            task = bar.add_task("comparing", total=total)
            report = compare_batches(sa, sb, batches, atol=atol, rtol=rtol, min_match=min_match,
                                     progress=lambda n: bar.advance(task, n))
        for s in others:
            if isinstance(s, PolygraphySubject):
                s.check_consumed()
    finally:
        for s in (model, *others):
            s.close()
    con.print(f"A = {report.a}\nB = {report.b}\n{source}, atol {atol:g}, rtol {rtol:g}")
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
