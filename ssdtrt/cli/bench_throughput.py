"""`ssdtrt bench throughput`: overlapped-pipeline images/s and latency next to the backend's bare throughput."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ssdtrt.cli.common import DataOption, MarkdownOption, NoVerifyOption


def register_throughput(bench_app: typer.Typer) -> None:
    bench_app.command("throughput")(throughput_cmd)


def throughput_cmd(
    models: Annotated[list[Path], typer.Argument(help="ONNX, OpenVINO .xml, TensorRT .plan or checkpoint; several to compare.")],
    seconds: Annotated[float, typer.Option("--seconds", min=0.1, help="Timed seconds of the pipeline per model (and as many of bare backend).")] = 10.0,
    requests: Annotated[Optional[int], typer.Option("--requests", min=1, help="Inference requests in flight (default: the backend's optimal number).")] = None,  # noqa: UP007
    batch: Annotated[Optional[int], typer.Option("--batch", min=1, help="Images per request (default: the model's static batch, else 1).")] = None,  # noqa: UP007
    backend: Annotated[Optional[str], typer.Option("--backend", help="onnxruntime or openvino for an .onnx (default: from the model's type).")] = None,  # noqa: UP007
    warmup: Annotated[float, typer.Option("--warmup", min=0.0, help="Untimed warm-up seconds per phase.")] = 2.0,
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="Alternations of bare backend and pipeline; the ratio is the median of the rounds' ratios (drift-robust).")] = 3,
    sequential: Annotated[bool, typer.Option("--sequential/--no-sequential", help="Also time the sequential detect path (latency-mode runner, batches of 8).")] = True,
    data: DataOption = "synthetic",
    image_size: Annotated[Optional[str], typer.Option("--image-size", help="Resize the decoded images to HEIGHTxWIDTH first (e.g. 480x640).")] = None,  # noqa: UP007
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the report as JSON (a `results` list, one object per model).")] = None,  # noqa: UP007
    markdown_out: MarkdownOption = None,
    plot_out: Annotated[Optional[Path], typer.Option("--plot", help="Write a PNG of pipeline / bare / sequential images/s.")] = None,  # noqa: UP007
    no_verify: NoVerifyOption = False,
) -> int:
    """Images per second and per-image latency p50/p90/p99 of the whole overlapped pipeline (decoded image in →
    detections in pixels out) per model, with the backend's bare throughput on the same model in the same process
    and their ratio. Exit 1 if a model could not be measured."""
    from ssdtrt.bench.throughput import ThroughputSettings, bench_throughput
    from ssdtrt.bench.throughput_report import markdown, plot, rich_table
    from ssdtrt.cli.common import console, invoked_command, print_table, size_hw, task_bars, write_report_files

    con, err = console(), console(stderr=True)
    settings = ThroughputSettings(
        seconds=seconds, warmup_seconds=warmup, rounds=rounds, requests=requests, batch_size=batch, backend=backend,
        sequential=sequential, data=data, image_size_hw=size_hw(image_size), verify_hash=not no_verify,
    )
    with task_bars(err, counts=False) as update:
        report = bench_throughput(
            models, settings, lambda label, phase, done, total: update(f"{label} · {phase}", done, total)
        )
    for line in report.errors:
        err.print(f"[red]error:[/] {line}", highlight=False, soft_wrap=True)
    if not report.results:
        return 1
    data_out = report.to_dict()
    command = data_out["command"] = invoked_command()
    print_table(con, rich_table(data_out), min_width=150)
    write_report_files(con, data_out, json_out=json_out, markdown_out=markdown_out, plot_out=plot_out,
                       markdown=lambda: markdown(data_out, command), plot=plot)
    return 1 if report.errors else 0
