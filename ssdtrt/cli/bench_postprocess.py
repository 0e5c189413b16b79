"""`ssdtrt bench postprocess`: our torch (CPU / GPU) and numpy postprocess vs torchvision's, on identical heads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ssdtrt.cli.common import DataOption, MarkdownOption


def register_postprocess(bench_app: typer.Typer) -> None:
    bench_app.command("postprocess")(postprocess_cmd)


def _cases(text: str) -> list[str]:
    from ssdtrt.bench.postprocess_cases import CASE_NAMES

    names = [v.strip() for v in text.split(",") if v.strip()]
    bad = [n for n in names if n not in CASE_NAMES]
    if not names or bad:
        raise typer.BadParameter(f"--cases: choose from {', '.join(CASE_NAMES)}, got {text!r}")
    return names


def postprocess_cmd(
    checkpoint: Annotated[
        Optional[Path], typer.Option("--checkpoint", help="Trained checkpoint for the 'trained' case (e.g. runs/demo/train/best.pt); without it that case is skipped.")  # noqa: UP007
    ] = None,
    cases: Annotated[str, typer.Option("--cases", help="Comma-separated cases: trained, stress, random.")] = "trained,stress,random",
    batch_sizes: Annotated[str, typer.Option("--batch-sizes", help="Comma-separated batch sizes.")] = "1,8,32",
    settings: Annotated[
        str, typer.Option("--settings", help="'torchvision': score 0.01, IoU 0.45, top-400 per class, 200 per image "
                          "(torchvision's SSD defaults) for every case; 'preset': each case's model preset (min size set to 0).")
    ] = "torchvision",
    preset: Annotated[str, typer.Option("--preset", help="Geometry (priors, classes) of the stress and random cases.")] = "ssd300-resnet50",
    data: DataOption = "synthetic",
    split: Annotated[str, typer.Option("--split", help="Dataset split the trained case runs on.")] = "val",
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed calls per configuration (after the checked call).")] = 1,
    iters: Annotated[int, typer.Option("--iters", help="Timed calls per configuration.")] = 10,
    max_seconds: Annotated[
        Optional[float], typer.Option("--max-seconds", help="Fewer calls where one lasts long: about this many seconds per configuration (at least 3 timed calls); 0 = no cap.")  # noqa: UP007
    ] = 3.0,
    threads: Annotated[Optional[int], typer.Option("--threads", help="torch intra-op threads (default: torch's).")] = None,  # noqa: UP007
    seed: Annotated[int, typer.Option("--seed", help="Seed of the stress and random heads.")] = 0,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the full report (machine, settings, results) as JSON.")] = None,  # noqa: UP007
    markdown_out: MarkdownOption = None,
    plot_out: Annotated[Optional[Path], typer.Option("--plot", help="Write a PNG of p50 latency per case and batch.")] = None,  # noqa: UP007
) -> int:
    """Time ssdtrt's postprocess (torch CPU, torch CUDA when present, numpy) against torchvision's SSD
    postprocess_detections on identical heads, after checking their detections are equal (exit 1 if not)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ssdtrt.bench.postprocess import run_postprocess_bench
    from ssdtrt.bench.postprocess_cases import random_case, stress_case, trained_case
    from ssdtrt.bench.postprocess_report import markdown, plot, rich_table, settings_line
    from ssdtrt.cli.common import console, csv_ints, invoked_command, print_table, write_report_files
    from ssdtrt.core.config import get_preset
    from ssdtrt.core.errors import CheckpointError

    con, err = console(), console(stderr=True)
    names = _cases(cases)
    sizes = csv_ints(batch_sizes, "--batch-sizes")
    if settings not in ("torchvision", "preset"):
        raise typer.BadParameter(f"--settings: 'torchvision' or 'preset', got {settings!r}")
    if warmup < 0 or iters < 1:
        raise typer.BadParameter(f"--warmup must be >= 0 and --iters >= 1, got {warmup} and {iters}")
    get_preset(preset)  # unknown preset: one line before any work
    if checkpoint is not None and not checkpoint.is_file():
        raise CheckpointError(f"{checkpoint}: no such checkpoint file")
    if "trained" in names and checkpoint is None:
        err.print("note: no --checkpoint given: the 'trained' case is skipped")
        names.remove("trained")
        if not names:
            raise typer.BadParameter("--cases: only 'trained' was asked for and it needs --checkpoint")
    n_heads = max(sizes)
    built = []
    with err.status("building heads (running the checkpoint for the trained case)"):
        for name in names:
            if name == "trained":
                built.append(trained_case(checkpoint, data=data, split=split, max_images=min(n_heads, 32)))  # type: ignore[arg-type]
            elif name == "stress":
                built.append(stress_case(n_heads, preset=preset, seed=seed))
            else:
                built.append(random_case(n_heads, preset=preset, seed=seed))
    import torch

    n_impls = 5 if torch.cuda.is_available() else 3
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as bar:
        task = bar.add_task("checking outputs, timing", total=len(built) * len(sizes) * n_impls)
        report = run_postprocess_bench(
            built, sizes, settings=settings, warmup=warmup, iters=iters, max_seconds=max_seconds or None,
            threads=threads, progress=lambda desc: bar.update(task, advance=1, description=desc),
        )
    out = report.to_dict()
    command = out["command"] = invoked_command()
    print_table(con, rich_table(out))
    con.print(settings_line(out))
    for note in report.notes:
        con.print(f"[dim]note: {note}[/]")
    slower = [r for r in report.results if r.ratio_vs_torchvision is not None and r.ratio_vs_torchvision < 1]
    if slower:
        con.print("[yellow]slower than torchvision:[/] " + ", ".join(
            f"{r.impl} on {r.case} batch {r.batch} ({r.ratio_vs_torchvision:.2f}×)" for r in slower))
    else:
        con.print("[green]every implementation is at least as fast as torchvision (p50)[/]")
    write_report_files(con, out, json_out=json_out, markdown_out=markdown_out, plot_out=plot_out,
                       markdown=lambda: markdown(out, command), plot=plot)
    return 0
