"""Batch-1 latency of every demo variant per backend (`ssdtrt.bench.latency`)."""

from __future__ import annotations

from typing import Any

from ssdtrt.demo.context import DemoRun
from ssdtrt.demo.settings import DemoSettings


def latency(run: DemoRun, cfg: DemoSettings) -> dict[str, Any]:
    """Batch-1 latency per backend × precision: checkpoint (torch), nms ONNX (onnxruntime), OpenVINO IRs, TensorRT."""
    from ssdtrt.bench.latency import LatencySettings, bench_models

    settings = LatencySettings(batch_sizes=(1,), warmup=cfg.bench_warmup, iters=cfg.bench_iters,
                               max_seconds=cfg.bench_max_seconds, min_iters=min(10, cfg.bench_iters))
    a = run.artifacts
    groups = [
        ([a["torch-fp32"][0], a["onnxruntime-fp32-nms"][0], a["onnxruntime-fp16-nms"][0], a["onnxruntime-int8-nms"][0]],
         ("torch", "onnxruntime")),
        ([a["openvino-f32-raw"][0], a["openvino-int8-raw"][0]], ("openvino",)),
    ]
    if "tensorrt-fp32-nms" in a:
        groups.append(([a["tensorrt-fp32-nms"][0]], ("tensorrt",)))
    state: dict[str, Any] = {"label": None, "advance": None}

    def progress(label: str, batch: int, done: int, planned: int) -> None:
        if label != state["label"]:
            state["label"], state["advance"] = label, run.task(f"latency {label}", planned)
        if state["advance"] is not None:
            state["advance"](1)

    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    bench: dict[str, Any] = {}
    for models, backends in groups:
        rep = bench_models(models, settings, backends=backends, progress=progress)
        bench = rep.to_dict()
        skipped += rep.skipped
        for r in rep.results:
            e2e = r.stages["e2e"]
            rows.append({"name": f"{r.backend}-{r.precision}", "label": r.label, "backend": r.backend,
                         "precision": r.precision, "batch_size": r.batch_size, "iters": r.iters,
                         "e2e_p50_ms": e2e.p50, "e2e_p90_ms": e2e.p90, "e2e_min_ms": e2e.min, "e2e_max_ms": e2e.max,
                         "stages_p50_ms": {k: s.p50 for k, s in r.stages.items()}, "images_per_s": r.images_per_s,
                         "notes": r.notes})
            run.log(f"    {r.label:40s} e2e p50 {e2e.p50:7.2f} ms  ({r.images_per_s:.0f} img/s)")
    return {"settings": bench.get("settings"), "image_sizes_hw": bench.get("image_sizes_hw"), "results": rows,
            "skipped": skipped, "e2e_p50_ms": {row["name"]: round(row["e2e_p50_ms"], 3) for row in rows}}
