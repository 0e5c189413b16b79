"""One `bench serve` run: images → in-process baseline → server (started here or given) → load levels → report.

A server started here binds 127.0.0.1 on free ports and is stopped by its PID at the end, whatever happened.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ssdtrt.bench.serve_load import LoadSettings, in_process_baseline, level_dict, run_level


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
    interleave_rounds: int = 0  # rounds of (in-process best config, served) windows after the sweep
    interleave_seconds: float = 10.0
    verify_hash: bool = True  # MODEL's sha256 checked against its manifest by the baseline and the server started here


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
        baseline = in_process_baseline(str(plan.model), images, plan.baseline_batch_sizes, plan.baseline_seconds,
                                       options, verify_hash=plan.verify_hash)
    server: TritonProcess | None = None
    url = plan.url
    if plan.model is not None:
        args = ["--max-batch-size", str(plan.max_batch_size), "--max-queue-delay-us", str(plan.max_queue_delay_us),
                "--instances", str(plan.instances)]
        if plan.threads is not None:
            args += ["--threads", str(plan.threads)]
        if not plan.verify_hash:
            args.append("--no-verify")
        server = ServeProcess(repository=Path("."), model=plan.model, serve_args=tuple(args))
    elif plan.repository is not None:
        server = TritonProcess(repository=plan.repository)
    levels = []
    interleaved: list[dict[str, Any]] = []
    try:
        if server is not None:
            progress("starting the server on 127.0.0.1")
            server.start_ready(180, model=load.model_name)
            url = server.grpc_url if load.protocol == "grpc" else server.http_url
        assert url is not None
        for c in load.concurrency:
            progress(f"concurrency {c}: up to {load.max_requests} requests / {load.max_seconds:.0f} s")
            levels.append(run_level(url, images, c, load))
        if plan.interleave_rounds and baseline and plan.model is not None:
            interleaved = _interleave(plan, load, url, images, baseline, levels, progress)
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
        "interleaved": interleaved,
    }
    report["summary"] = summary(report)
    return report


def _interleave(plan: ServeBenchPlan, load: LoadSettings, url: str, images: list[bytes],
                baseline: list[dict[str, Any]], levels: list[Any], progress: Callable[[str], None]) -> list[dict[str, Any]]:
    """Alternate windows of the in-process Detector (its best baseline row) and the server (its best concurrency
    >= 4) so both see the same background load: on a shared machine only such pairs make a fair ratio."""
    from ssdtrt.io.images import decode_image
    from ssdtrt.inference.detector import Detector
    from ssdtrt.bench.serve_load import detector_rate

    best = max(baseline, key=lambda row: row["decode+detect"])
    candidates = [lv for lv in levels if lv.concurrency >= 4] or levels
    conc = max(candidates, key=lambda lv: lv.throughput_rps).concurrency
    options = {} if best["threads"] == "default" else _runner_options(plan.model, int(best["threads"]))
    window = LoadSettings(concurrency=(conc,), max_requests=10**6, max_seconds=plan.interleave_seconds,
                          warmup_requests=0, protocol=load.protocol, model_name=load.model_name)
    decoded = [decode_image(b) for b in images]
    rounds = []
    with Detector(str(plan.model), batch_size=best["batch"], verify_hash=plan.verify_hash, **options) as det:
        for k in range(plan.interleave_rounds):
            progress(f"interleaved round {k + 1}/{plan.interleave_rounds}: in-process batch {best['batch']} "
                     f"(threads {best['threads']}) vs served at concurrency {conc}, {plan.interleave_seconds:.0f} s each")
            local = detector_rate(det, images, decoded, best["batch"], plan.interleave_seconds, decode=True)
            served = run_level(url, images, conc, window)
            rounds.append({"in_process_img_s": local, "served_req_s": served.throughput_rps,
                           "ratio": served.throughput_rps / local if local else 0.0, "requests": served.requests, "failed": served.failed,
                           "lost": served.lost, "p99_ms": served.latency_ms["p99"],
                           "batch": best["batch"], "threads": best["threads"], "concurrency": conc})
    return rounds


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
    rounds = report.get("interleaved") or []
    if rounds:
        ratios = sorted(r["ratio"] for r in rounds)
        lines.append(
            f"interleaved ({len(rounds)} rounds of in-process batch {rounds[0]['batch']} vs served at concurrency "
            f"{rounds[0]['concurrency']}): served/in-process = median {float(np.median(ratios)):.2f}x "
            f"(rounds: {', '.join(f'{r:.2f}' for r in (x['ratio'] for x in rounds))})")
    windows = levels + rounds
    failed = sum(w["failed"] for w in windows)
    lost = sum(w["lost"] for w in windows)
    sent = sum(w.get("requests", 0) + w["failed"] + w["lost"] for w in windows)
    lines.append(f"failed requests: {failed}, lost: {lost} (of {sent} sent in the levels"
                 f"{' and the interleaved windows' if rounds else ''})")
    return lines
