"""`make demo`: the main job on the embedded synthetic data, end to end, with a report of real figures.

train ssd-small (a fixed schedule: epochs × steps at a fixed thread count, so the checkpoint and its mAP do not depend
on the machine's load; a wall-clock guard only stops a pathologically slow run, with a warning in the report) → ONNX raw / nms fp32, nms fp16, Q/DQ int8 (raw and nms) → OpenVINO engines (f32 and
int8, from the raw graphs) and a TensorRT engine where TensorRT and a GPU exist → mAP of every variant through the
same Detector pipeline → parity of each against the checkpoint (`compare_models`) → batch-1 latency of every backend
(`ssdtrt.bench.latency`) → annotated validation images → report.json / report.md (`ssdtrt.demo.report`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ssdtrt.demo.artifacts import build_engines, export_float, export_int8
from ssdtrt.demo.context import DemoRun, Log, StartTask, TrainReporter
from ssdtrt.demo.latency import latency
from ssdtrt.demo.parity import parity
from ssdtrt.demo.scoring import annotate, score_all
from ssdtrt.demo.settings import DemoSettings
from ssdtrt.demo.training import GUARD_WARNING, reusable_checkpoint, train_checkpoint

__all__ = ["DemoSettings", "run_demo"]


def run_demo(
    out_dir: Path,
    *,
    eval_images: int = 200,
    settings: DemoSettings | None = None,
    log: Log = print,
    start_task: StartTask | None = None,
    train_reporter: TrainReporter | None = None,
) -> dict[str, Any]:
    """Run the demo into `out_dir`; returns the report dict (also written as report.json and report.md).

    `eval_images` overrides `settings` (kept as a keyword: the CLI and tests shrink it).
    """
    from dataclasses import asdict, replace

    from ssdtrt.bench.machine import machine_info
    from ssdtrt.demo.report import write_report
    from ssdtrt.runtime import available_backends

    cfg = replace(settings or DemoSettings(), eval_images=eval_images)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = DemoRun(log, start_task)
    t0 = time.perf_counter()
    backends = available_backends()
    report: dict[str, Any] = {"settings": asdict(cfg), "backends": backends, "variants": {}}

    reused = reusable_checkpoint(out_dir, cfg) if cfg.reuse_checkpoint else None
    message = (f"reusing {reused[0]} (trained by an earlier demo with the same settings; --retrain trains again)"
               if reused else f"training ssd-small on synthetic shapes: {cfg.train_epochs} epochs of "
               f"{cfg.train_images} images, {cfg.train_threads} thread(s), seed {cfg.train_seed}")
    with run.step("train", message):
        ckpt, train_info = reused or train_checkpoint(out_dir, cfg, train_reporter)
    report.update(checkpoint=str(ckpt), train=train_info)
    if train_info.get("stopped_by_guard"):
        report["warnings"] = [GUARD_WARNING.format(minutes=cfg.guard_minutes, **train_info)]
        run.log("    WARNING: " + report["warnings"][0])
    run.artifacts["torch-fp32"] = (ckpt, None)
    with run.step("export", "exporting ONNX: raw + nms fp32, nms fp16"):
        export_float(run, ckpt, out_dir / "export")
    with run.step("calibrate_int8", f"INT8 Q/DQ ({cfg.calib_method} calibration on {cfg.calib_images} train images)"):
        report["calibration"] = export_int8(run, ckpt, out_dir / "export", cfg)
    with run.step("engines", "building engines: OpenVINO f32 + int8 (from the raw graphs), TensorRT where present"):
        report["tensorrt"] = build_engines(run, out_dir / "engines", backends["tensorrt"])
    with run.step("map", f"mAP of every variant on {cfg.eval_images} held-out images (same Detector pipeline)"):
        report["variants"] = score_all(run, cfg.eval_images)
    torch_map = report["variants"]["torch-fp32"]
    report["map"], report["map50"] = torch_map["map"], torch_map["map50"]
    with run.step("parity", f"parity against the checkpoint on {cfg.parity_images} images (ssdtrt compare)"):
        report["parity"] = parity(run, ckpt, report["variants"], cfg.parity_images)
    report["parity_pass"] = {row["b"]: row["passed"] for row in report["parity"]}
    with run.step("latency", "latency at batch 1, every available backend (ssdtrt bench latency)"):
        report["latency"] = latency(run, cfg)
    with run.step("images", "writing annotated validation images"):
        report["images"] = annotate(out_dir / "images", run.artifacts["openvino-f32-raw"][0], cfg.annotated_images)
    report["machine"] = machine_info()
    report["steps_s"] = run.steps_s
    report["total_s"] = round(time.perf_counter() - t0, 1)
    report["report_md"], report["report_json"] = str(out_dir / "report.md"), str(out_dir / "report.json")
    write_report(out_dir, report)
    return report
