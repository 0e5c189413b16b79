"""`ssdtrt bench serve`: throughput / latency sweep through tritonclient against a Triton server (JSON, markdown, PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ssdtrt.cli.common import DataOption, NoVerifyOption


def register_serve(bench: typer.Typer) -> None:
    bench.command("serve")(serve_bench_cmd)


def serve_bench_cmd(
    model: Annotated[Optional[Path], typer.Argument(help="Model to serve with `ssdtrt serve` for the run (started on 127.0.0.1, free ports, stopped after); omit with --url.")] = None,  # noqa: UP007
    url: Annotated[Optional[str], typer.Option("--url", help="An already running server, host:port of its gRPC (or HTTP with --protocol http) endpoint.")] = None,  # noqa: UP007
    repository: Annotated[Optional[Path], typer.Option("--repository", help="Serve this export-triton repository with the bundled tritonserver instead (python detector).")] = None,  # noqa: UP007
    model_name: Annotated[str, typer.Option("--model-name", help="Model to call.")] = "ssd",
    protocol: Annotated[str, typer.Option("--protocol", help="grpc or http.")] = "grpc",
    concurrency: Annotated[str, typer.Option("--concurrency", help="Comma-separated client concurrencies.")] = "1,2,4,8,16",
    max_requests: Annotated[int, typer.Option("--max-requests", min=1, help="Requests per level at most.")] = 2000,
    max_seconds: Annotated[float, typer.Option("--max-seconds", min=0.5, help="Seconds per level at most.")] = 20.0,
    images: Annotated[int, typer.Option("--images", min=1, help="Distinct images sent (cycled).")] = 32,
    data: DataOption = "synthetic",
    image_size: Annotated[Optional[str], typer.Option("--image-size", help="Resize the images to HEIGHTxWIDTH before encoding (e.g. 480x640).")] = None,  # noqa: UP007
    baseline_batch_sizes: Annotated[str, typer.Option("--baseline-batch-sizes", help="In-process Detector batch sizes to compare with ('' = no baseline; needs MODEL).")] = "1,4,8,16",
    baseline_seconds: Annotated[float, typer.Option("--baseline-seconds", min=0.5, help="Seconds per baseline batch size.")] = 5.0,
    max_batch_size: Annotated[int, typer.Option("--max-batch-size", min=1, help="Server's max batch size (for MODEL).")] = 16,
    max_queue_delay_us: Annotated[int, typer.Option("--max-queue-delay-us", min=0, help="Server's batching delay (for MODEL).")] = 2000,
    instances: Annotated[int, typer.Option("--instances", min=1, help="Server's model instances (for MODEL).")] = 1,
    threads: Annotated[Optional[int], typer.Option("--threads", help="CPU threads of each runner (server instances and baseline).")] = None,  # noqa: UP007
    interleave: Annotated[int, typer.Option("--interleave", min=0, help="After the sweep, this many rounds alternating the in-process Detector (best baseline row) and the server (best concurrency >= 4): the fair ratio on a shared machine.")] = 0,
    interleave_seconds: Annotated[float, typer.Option("--interleave-seconds", min=0.5, help="Seconds of each interleaved window.")] = 10.0,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the report as JSON.")] = None,  # noqa: UP007
    markdown_out: Annotated[Optional[Path], typer.Option("--markdown", help="Write the report as markdown.")] = None,  # noqa: UP007
    plot_out: Annotated[Optional[Path], typer.Option("--plot", help="Write a PNG of throughput and p99 per concurrency.")] = None,  # noqa: UP007
    no_verify: NoVerifyOption = False,
) -> int:
    """Closed-loop load through tritonclient at each concurrency: throughput, p50/p90/p99, failed and lost requests,
    the batch sizes Triton executed; and the in-process Detector's throughput on the same images for the ratio.
    Every level is bounded by --max-requests and --max-seconds. Exit 1 when a request failed or got lost."""
    from ssdtrt.cli.common import console, csv_ints, invoked_command, print_table, size_hw, write_report_files
    from ssdtrt.bench.serve import ServeBenchPlan, run_serve_bench
    from ssdtrt.bench.serve_load import LoadSettings
    from ssdtrt.bench.serve_load_report import markdown, plot, rich_table

    if sum(x is not None for x in (model, url, repository)) != 1:
        raise typer.BadParameter("give exactly one of MODEL, --url or --repository")
    if protocol not in ("grpc", "http"):
        raise typer.BadParameter(f"--protocol: grpc or http, not {protocol!r}")
    load = LoadSettings(concurrency=csv_ints(concurrency, "--concurrency"), max_requests=max_requests,
                        max_seconds=max_seconds, protocol=protocol, model_name=model_name)
    plan = ServeBenchPlan(
        model=model, url=url, repository=repository, data=data, images=images, image_size_hw=size_hw(image_size),
        baseline_batch_sizes=csv_ints(baseline_batch_sizes, "--baseline-batch-sizes") if baseline_batch_sizes and model else (),
        baseline_seconds=baseline_seconds, max_batch_size=max_batch_size, max_queue_delay_us=max_queue_delay_us,
        instances=instances, threads=threads, interleave_rounds=interleave, interleave_seconds=interleave_seconds,
        verify_hash=not no_verify,
    )
    err, con = console(stderr=True), console()
    report = run_serve_bench(plan, load, progress=lambda line: err.print(line, highlight=False))
    report["command"] = invoked_command()
    print_table(con, rich_table(report))
    for line in report["summary"]:
        con.print(line)
    write_report_files(con, report, json_out=json_out, markdown_out=markdown_out, plot_out=plot_out,
                       markdown=lambda: markdown(report), plot=plot)
    bad = sum(level["failed"] + level["lost"] for level in report["levels"])
    return 1 if bad else 0
