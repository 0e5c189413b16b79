"""`ssdtrt bench latency|postprocess`: the measurements users decide deployments on (table, JSON, markdown, PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ssdtrt.cli.common import DataOption, MarkdownOption, NoVerifyOption


def register(app: typer.Typer) -> None:
    bench = typer.Typer(
        name="bench",
        help="Benchmarks: end-to-end and per-stage latency across backends; pipeline throughput; postprocess implementations.",
        no_args_is_help=True,
    )
    bench.command("latency")(latency_cmd)
    try:  # the postprocess benchmark registers itself when its module is present
        from ssdtrt.cli.bench_postprocess import register_postprocess
    except ImportError:
        pass
    else:
        register_postprocess(bench)
    from ssdtrt.cli.bench_throughput import register_throughput

    register_throughput(bench)
    from ssdtrt.cli.bench_serve import register_serve

    register_serve(bench)
    app.add_typer(bench, name="bench")


def latency_cmd(
    models: Annotated[list[Path], typer.Argument(help="Checkpoint (.pt), ONNX, OpenVINO .xml or TensorRT .plan; several to compare side by side.")],
    backend: Annotated[Optional[list[str]], typer.Option("--backend", help="Only these backends (repeatable): torch, onnxruntime, openvino, tensorrt.")] = None,  # noqa: UP007
    precision: Annotated[Optional[list[str]], typer.Option("--precision", help="Only these precisions (repeatable): fp32, bf16, fp16, int8.")] = None,  # noqa: UP007
    batch_sizes: Annotated[str, typer.Option("--batch-sizes", help="Comma-separated batch sizes.")] = "1,8",
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed warm-up iterations per configuration.")] = 10,
    iters: Annotated[int, typer.Option("--iters", help="Timed iterations per configuration.")] = 100,
    max_seconds: Annotated[Optional[float], typer.Option("--max-seconds", help="Stop a configuration after this many timed seconds (keeping >= --min-iters iterations), and end its warm-up after as many: slow variants end early.")] = None,  # noqa: UP007
    min_iters: Annotated[int, typer.Option("--min-iters", help="Timed iterations kept at least when --max-seconds stops a configuration early.")] = 10,
    threads: Annotated[Optional[int], typer.Option("--threads", help="CPU threads for every backend (default: each backend's default, all cores).")] = None,  # noqa: UP007
    data: DataOption = "synthetic",
    image_size: Annotated[Optional[str], typer.Option("--image-size", help="Resize the decoded images to HEIGHTxWIDTH first (e.g. 480x640, camera-like); default: as stored.")] = None,  # noqa: UP007
    device: Annotated[str, typer.Option("--device", help="Device of the torch backend: cpu or cuda.")] = "cpu",
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the full report as JSON.")] = None,  # noqa: UP007
    markdown_out: MarkdownOption = None,
    plot_out: Annotated[Optional[Path], typer.Option("--plot", help="Write a PNG of per-stage latency.")] = None,  # noqa: UP007
    no_verify: NoVerifyOption = False,
) -> int:
    """End-to-end and per-stage latency (preprocess, host-to-device, inference, device-to-host, postprocess) of
    every backend × precision × batch size, on the same decoded images in one process: p50 / p90 / p99 / mean,
    min–max and images per second. Warm-up excluded. Exit 1 if a model could not be read or a variant failed."""
    from ssdtrt.bench.latency import LatencySettings, bench_variants, plan_variants
    from ssdtrt.bench.latency_report import markdown, plot, rich_table
    from ssdtrt.bench.machine import cpu_caveats
    from ssdtrt.cli.common import console, csv_ints, invoked_command, print_table, size_hw, task_bars, write_report_files
    from ssdtrt.core.errors import SSDTRTError

    con, err = console(), console(stderr=True)
    settings = LatencySettings(
        batch_sizes=csv_ints(batch_sizes, "--batch-sizes"), warmup=warmup, iters=iters, max_seconds=max_seconds,
        min_iters=min(min_iters, iters),
        threads=threads, data=data, image_size_hw=size_hw(image_size), device=device, verify_hash=not no_verify,
    )
    variants, failed = [], 0
    for model in models:  # a bad model is one line; the others are still measured
        try:
            variants += plan_variants([model], backend, precision, threads=threads, device=device,
                                      verify_hash=settings.verify_hash)
        except SSDTRTError as exc:
            err.print(f"[red]error:[/] {exc}", soft_wrap=True)
            failed += 1
    if not variants:
        if not failed:
            err.print("[red]error:[/] no variant could be measured (no backend / precision of these models matches here)")
        return 1
    with task_bars(err) as update:

        def on_skip(label: str, reason: str) -> None:
            err.print(f"[yellow]skipped[/] {label}: {reason}")

        report = bench_variants(
            variants, settings, on_skip=on_skip,
            progress=lambda label, batch, done, total: update(f"{label} · batch {batch}", done, total),
        )
    data_out = report.to_dict()
    command = data_out["command"] = invoked_command()
    if not report.results:
        err.print("[red]error:[/] no variant could be measured (see the lines above)")
        return 1
    print_table(con, rich_table(data_out))
    for note in cpu_caveats(report.machine):
        con.print(f"[dim]note: this CPU has {note}[/]")
    for line in dict.fromkeys(f"{r.label}: {note}" for r in report.results for note in r.notes):  # once per variant
        con.print(f"[dim]note: {line}[/]")
    best = report.best(min(settings.batch_sizes))
    if best is not None:
        con.print(f"fastest at batch {best.batch_size}: [bold]{best.label}[/] — {best.stages['e2e'].p50:.2f} ms p50 end to end")
    write_report_files(con, data_out, json_out=json_out, markdown_out=markdown_out, plot_out=plot_out,
                       markdown=lambda: markdown(data_out, command), plot=plot)
    return 1 if failed or report.skipped else 0
