"""One `bench serve` run: images → in-process baseline → server (started here or given) → load levels → report.

A server started here binds 127.0.0.1 on free ports and is stopped by its PID at the end, whatever happened.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ssdtrt.serve.load import LoadSettings, in_process_baseline, level_dict, run_level


@dataclass(frozen=True)
class ServeBenchPlan:
    model: Path | None = None
    url: str | None = None
    repository: Path | None = None
    data: str = "synthetic"
    images: int = 32
    image_size_hw: tuple[int, int] | None = None
    baseline_batch_sizes: tuple[int, ...] = (1, 4, 8, 16)
    baseline_seconds: float = 5.0
    max_batch_size: int = 16
    max_queue_delay_us: int = 2000
    instances: int = 1
    threads: int | None = None


def encoded_images(data: str, count: int, image_size_hw: tuple[int, int] | None) -> list[bytes]:
    """`count` dataset images as JPEG bytes (quality 95), what a camera or an upload sends."""
    import cv2

    from ssdtrt.compare import load_images

    decoded = load_images(data, count)
    out = []
    for img in decoded:
        if image_size_hw is not None:
            img = cv2.resize(img, (image_size_hw[1], image_size_hw[0]), interpolation=cv2.INTER_LINEAR)
        ok, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        if ok:
            out.append(buf.tobytes())
    return out


def _runner_options(model: Path, threads: int | None) -> dict[str, Any]:
    if threads is None:
        return {}
    from ssdtrt.runtime import backend_for

    backend = backend_for(model)[1]
    return {"intra_op_threads": threads} if backend == "onnxruntime" else {"num_threads": threads} if backend == "openvino" else {}


def run_serve_bench(plan: ServeBenchPlan, load: LoadSettings, progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    from ssdtrt.bench.machine import machine_info
    from ssdtrt.serve.tritonserver import ServeProcess, TritonProcess

    images = encoded_images(plan.data, plan.images, plan.image_size_hw)
    baseline: list[dict[str, Any]] = []
    if plan.model is not None and plan.baseline_batch_sizes:
        # the runner's default threads, and the server's --threads too: the reference is the best of all rows
        options: list[dict[str, Any]] = [{}]
        if _runner_options(plan.model, plan.threads):
            options.append(_runner_options(plan.model, plan.threads))
        progress(f"in-process Detector baseline, batch sizes {list(plan.baseline_batch_sizes)}, "
                 f"{len(options)} thread setting(s)")
        baseline = in_process_baseline(str(plan.model), images, plan.baseline_batch_sizes, plan.baseline_seconds, options)
    server: TritonProcess | None = None
    url = plan.url
    if plan.model is not None:
        args = ["--max-batch-size", str(plan.max_batch_size), "--max-queue-delay-us", str(plan.max_queue_delay_us),
                "--instances", str(plan.instances)]
        if plan.threads is not None:
            args += ["--threads", str(plan.threads)]
        server = ServeProcess(repository=Path("."), model=plan.model, serve_args=tuple(args))
    elif plan.repository is not None:
        server = TritonProcess(repository=plan.repository)
    levels = []
    try:
        if server is not None:
            progress("starting the server on 127.0.0.1")
            server.start_ready(180, model=load.model_name)
            url = server.grpc_url if load.protocol == "grpc" else server.http_url
        assert url is not None
        for c in load.concurrency:
            progress(f"concurrency {c}: up to {load.max_requests} requests / {load.max_seconds:.0f} s")
            levels.append(run_level(url, images, c, load))
    finally:
        if server is not None:
            progress(f"stopping the server (pid {server.process.pid if server.process else '-'})")
            server.stop()
    report: dict[str, Any] = {
        "machine": machine_info(),
        "settings": {**asdict(load), **{k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(plan).items()},
                     "target": url if plan.url else "127.0.0.1 (started by this run)"},
        "images": len(images),
        "baseline": baseline,
        "levels": [level_dict(r) for r in levels],
    }
    report["summary"] = summary(report)
    return report


def summary(report: dict[str, Any]) -> list[str]:
    """The target ratios as sentences (computed, never typed in)."""
    lines = []
    levels = report["levels"]
    base = report.get("baseline") or {}
    if base:
        best = max(base, key=lambda row: row["decode+detect"])
        best_detect = max(row["detect"] for row in base)
        lines.append(f"in-process Detector best: {best['decode+detect']:.1f} img/s decode+detect at batch "
                     f"{best['batch']} (threads {best['threads']}); {best_detect:.1f} img/s detect alone on decoded images")
        served = [lv for lv in levels if lv["concurrency"] >= 4]
        if served:
            top = max(served, key=lambda lv: lv["throughput_rps"])
            lines.append(
                f"served best at concurrency >= 4: {top['throughput_rps']:.1f} req/s (concurrency {top['concurrency']}) "
                f"= {top['throughput_rps'] / best['decode+detect']:.2f}x in-process decode+detect, "
                f"{top['throughput_rps'] / best_detect:.2f}x detect alone")
    failed = sum(lv["failed"] for lv in levels)
    lost = sum(lv["lost"] for lv in levels)
    lines.append(f"failed requests: {failed}, lost: {lost} (of {sum(lv['requests'] + lv['failed'] for lv in levels)})")
    return lines
