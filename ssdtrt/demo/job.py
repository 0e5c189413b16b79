"""`make demo`: the main job on the embedded synthetic data, end to end, with a report of real figures.

train ssd-small (a fixed schedule: epochs × steps at a fixed thread count, so the checkpoint and its mAP do not depend
on the machine's load; a wall-clock guard only stops a pathologically slow run, with a warning in the report) → ONNX raw / nms fp32, nms fp16, Q/DQ int8 (raw and nms) → OpenVINO engines (f32 and
int8, from the raw graphs) and a TensorRT engine where TensorRT and a GPU exist → mAP of every variant through the
same Detector pipeline → parity of each against the checkpoint (`compare_models`) → batch-1 latency of every backend
(`ssdtrt.bench.latency`) → annotated validation images → report.json / report.md (`ssdtrt.demo.report`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Log = Callable[[str], None]
Advance = Callable[[int], None]
#: (description, total units) -> advance(n): a progress bar for one sub-step (the CLI draws it with rich)
StartTask = Callable[[str, int], Advance]
#: train() events (see ssdtrt.train.loop.Reporter)
TrainReporter = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class DemoSettings:
    """Every knob of the demo; the defaults fit ≤ 8 min on 2 CPU cores (tests shrink them)."""

    #: training schedule: epochs over `train_images` synthetic images (250 steps of 8 per epoch at 2000), measured
    #: in benchmarks/reliability/README.md (steps/s at 1 thread, mAP@.5 per epoch)
    train_epochs: int = 6
    train_images: int = 2000
    #: torch threads while training: fixed, so reruns are bit-identical; 1 because 2 OpenMP threads on 2 shared
    #: cores ran 5x slower here under load (1.3 vs 6.4 steps/s), while 1 thread barely notices the load
    train_threads: int = 1
    train_seed: int = 0
    #: safety stop only (does not shape the schedule): past it training stops and the report carries a warning
    guard_minutes: float = 15.0
    eval_images: int = 200  # held-out synthetic val images per mAP
    calib_images: int = 128  # int8 calibration (synthetic train split)
    calib_method: str = "percentile"  # least mAP loss in benchmarks/precision; ~3 s for 128 images here
    parity_images: int = 32
    bench_warmup: int = 5
    bench_iters: int = 50
    bench_max_seconds: float = 3.0  # per backend × precision: a slow one stops early (≥ 10 iterations kept)
    annotated_images: int = 6
    #: reuse OUT/train's checkpoint when an earlier demo trained it with the same training settings (`--retrain`: no)
    reuse_checkpoint: bool = True


@dataclass(frozen=True)
class ParityRule:
    """How close a candidate must be to the checkpoint. int8 is gated on mean error and mAP loss (element-wise
    max error and the IoU-0.99 detection match rate are recorded but do not gate: every box moves a little)."""

    candidate: str  # variant name
    atol: float | None
    rtol: float | None
    min_match: float | None
    max_mean_abs: float | None = None
    max_map_drop_pts: float | None = None

    def describe(self) -> str:
        parts = []
        if self.atol is not None:
            parts.append(f"|Δ| ≤ {self.atol:g} + {self.rtol:g}·|ref| per element")
        if self.min_match is not None:
            parts.append(f"detection match ≥ {self.min_match:g}")
        if self.max_mean_abs is not None:
            parts.append(f"mean |Δ| ≤ {self.max_mean_abs:g} per head")
        if self.max_map_drop_pts is not None:
            parts.append(f"mAP drop ≤ {self.max_map_drop_pts:g} pt")
        return "; ".join(parts)


FP32 = dict(atol=1e-4, rtol=1e-3, min_match=0.99)
PARITY_RULES = (
    ParityRule("onnxruntime-fp32-raw", **FP32),
    ParityRule("openvino-f32-raw", **FP32),
    # nms graph: detections only; fp16 rounding moves a few low-score boxes across the score threshold / IoU 0.99
    ParityRule("onnxruntime-fp16-nms", atol=None, rtol=None, min_match=0.95),
    ParityRule("onnxruntime-int8-raw", atol=None, rtol=None, min_match=None, max_mean_abs=0.1, max_map_drop_pts=1.0),
    ParityRule("openvino-int8-raw", atol=None, rtol=None, min_match=None, max_mean_abs=0.1, max_map_drop_pts=1.0),
    ParityRule("tensorrt-fp32-nms", atol=None, rtol=None, min_match=0.95),  # TF32 convolutions on Ampere and newer
)
#: variant whose mAP gates a parity candidate that is not itself scored (same Q/DQ graph, NMS tail or not)
MAP_OF = {"onnxruntime-int8-raw": "onnxruntime-int8-nms"}


@dataclass
class _Run:
    """Running state: timings, artifacts (variant name -> (path, backend)) and the report being filled."""

    log: Log
    start_task: StartTask | None
    steps_s: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, tuple[Path, str | None]] = field(default_factory=dict)

    @contextmanager
    def step(self, name: str, message: str) -> Iterator[None]:
        self.log(f"[{len(self.steps_s) + 1}] {message}")
        t = time.perf_counter()
        try:
            yield
        finally:
            self.steps_s[name] = round(time.perf_counter() - t, 1)
            self.log(f"    {name}: {self.steps_s[name]:.1f} s")

    def task(self, description: str, total: int) -> Advance | None:
        return self.start_task(description, total) if self.start_task is not None else None


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
    run = _Run(log, start_task)
    t0 = time.perf_counter()
    backends = available_backends()
    report: dict[str, Any] = {"settings": asdict(cfg), "backends": backends, "variants": {}}

    reused = _reusable_checkpoint(out_dir, cfg) if cfg.reuse_checkpoint else None
    message = (f"reusing {reused[0]} (trained by an earlier demo with the same settings; --retrain trains again)"
               if reused else f"training ssd-small on synthetic shapes: {cfg.train_epochs} epochs of "
               f"{cfg.train_images} images, {cfg.train_threads} thread(s), seed {cfg.train_seed}")
    with run.step("train", message):
        ckpt, train_info = reused or _train(out_dir, cfg, train_reporter)
    report.update(checkpoint=str(ckpt), train=train_info)
    if train_info.get("stopped_by_guard"):
        report["warnings"] = [GUARD_WARNING.format(minutes=cfg.guard_minutes, **train_info)]
        run.log("    WARNING: " + report["warnings"][0])
    run.artifacts["torch-fp32"] = (ckpt, None)
    with run.step("export", "exporting ONNX: raw + nms fp32, nms fp16"):
        _export_float(run, ckpt, out_dir / "export")
    with run.step("calibrate_int8", f"INT8 Q/DQ ({cfg.calib_method} calibration on {cfg.calib_images} train images)"):
        report["calibration"] = _export_int8(run, ckpt, out_dir / "export", cfg)
    with run.step("engines", "building engines: OpenVINO f32 + int8 (from the raw graphs), TensorRT where present"):
        report["tensorrt"] = _build_engines(run, out_dir / "engines", backends["tensorrt"])
    with run.step("map", f"mAP of every variant on {cfg.eval_images} held-out images (same Detector pipeline)"):
        report["variants"] = _score_all(run, cfg.eval_images)
    torch_map = report["variants"]["torch-fp32"]
    report["map"], report["map50"] = torch_map["map"], torch_map["map50"]
    with run.step("parity", f"parity against the checkpoint on {cfg.parity_images} images (ssdtrt compare)"):
        report["parity"] = _parity(run, ckpt, report["variants"], cfg.parity_images)
    report["parity_pass"] = {row["b"]: row["passed"] for row in report["parity"]}
    with run.step("latency", "latency at batch 1, every available backend (ssdtrt bench latency)"):
        report["latency"] = _latency(run, cfg)
    with run.step("images", "writing annotated validation images"):
        report["images"] = _annotate(out_dir / "images", run.artifacts["openvino-f32-raw"][0], cfg.annotated_images)
    report["machine"] = machine_info()
    report["steps_s"] = run.steps_s
    report["total_s"] = round(time.perf_counter() - t0, 1)
    report["report_md"], report["report_json"] = str(out_dir / "report.md"), str(out_dir / "report.json")
    write_report(out_dir, report)
    return report


TRAIN_RECORD = "demo_train.json"  # in OUT/train: what trained the checkpoint, so an unchanged re-run can skip training
GUARD_WARNING = ("training hit the {minutes:g}-min wall-clock guard after {steps} of {planned_steps} steps: this "
                 "checkpoint and every figure below are NOT the demo's reproducible result (the machine was too slow "
                 "or too loaded); rerun with --retrain on a quieter machine")


def _train_config(out_dir: Path, cfg: DemoSettings) -> Any:
    """The demo's TrainConfig: everything that decides the checkpoint is fixed here (and in `_train_key`)."""
    from ssdtrt.train.loop import TrainConfig

    return TrainConfig(preset="ssd-small", data="synthetic", out_dir=str(out_dir / "train"), epochs=cfg.train_epochs,
                       train_size=cfg.train_images, threads=cfg.train_threads, seed=cfg.train_seed, workers=0,
                       eval_limit=cfg.eval_images, guard_minutes=cfg.guard_minutes)


def _train_key(cfg: DemoSettings) -> dict[str, Any]:
    """The settings that decide the demo's checkpoint (anything else can change without retraining): the schedule,
    threads, seed, the images that pick best.pt, the recipe and the code and torch versions."""
    from dataclasses import asdict

    import torch

    import ssdtrt
    from ssdtrt.train.loop import RECIPES

    return {"preset": "ssd-small", "data": "synthetic", "epochs": cfg.train_epochs, "train_images": cfg.train_images,
            "threads": cfg.train_threads, "seed": cfg.train_seed, "eval_images": cfg.eval_images,
            "recipe": asdict(RECIPES["ssd-small"]), "ssdtrt": ssdtrt.__version__, "torch": torch.__version__}


def _reusable_checkpoint(out_dir: Path, cfg: DemoSettings) -> tuple[Path, dict[str, Any]] | None:
    """(checkpoint, train info) of an earlier demo in `out_dir` with the same training settings, if intact and
    complete (a run stopped by the wall-clock guard is never reused)."""
    import json

    from ssdtrt.core.errors import SSDTRTError
    from ssdtrt.io.files import sha256_file
    from ssdtrt.model.checkpoint import load_model

    record_path = out_dir / "train" / TRAIN_RECORD
    try:
        record = json.loads(record_path.read_text())
        ckpt = record_path.parent / record["checkpoint"]
        if record["key"] != _train_key(cfg) or record["train"].get("stopped_by_guard", True):
            return None
        if sha256_file(ckpt) != record["sha256"]:
            return None
        load_model(ckpt)  # still readable by this version of the code
    except (OSError, ValueError, KeyError, TypeError, AttributeError, SSDTRTError):
        return None
    return ckpt, {**record["train"], "reused": True}


def _train(out_dir: Path, cfg: DemoSettings, reporter: TrainReporter | None) -> tuple[Path, dict[str, Any]]:
    from ssdtrt.io.files import atomic_write_json, sha256_file
    from ssdtrt.train.loop import RECIPES, train

    trained = train(_train_config(out_dir, cfg), reporter)
    planned = cfg.train_epochs * (cfg.train_images // RECIPES["ssd-small"].batch_size)  # the loader drops the last
    info = {"elapsed_s": round(trained.elapsed_s, 1), "epochs": trained.epochs_completed, "steps": trained.steps,
            "planned_epochs": cfg.train_epochs, "planned_steps": planned, "threads": cfg.train_threads,
            "stopped_by_guard": trained.stopped_by_guard,
            "val_map": trained.metrics.get("map"), "val_map50": trained.metrics.get("map50")}
    ckpt = trained.best_path or trained.last_path
    record = {"key": _train_key(cfg), "checkpoint": Path(ckpt).name, "sha256": sha256_file(ckpt), "train": info}
    atomic_write_json(out_dir / "train" / TRAIN_RECORD, record)
    return ckpt, {**info, "reused": False}


def _export_float(run: _Run, ckpt: Path, folder: Path) -> None:
    from ssdtrt.export.onnx_export import export_checkpoint

    for name, mode, precision in (("onnxruntime-fp32-raw", "raw", "fp32"), ("onnxruntime-fp32-nms", "nms", "fp32"),
                                  ("onnxruntime-fp16-nms", "nms", "fp16")):
        out = folder / f"ssd-small-{mode}{'' if precision == 'fp32' else '-' + precision}.onnx"
        path = export_checkpoint(ckpt, out, mode=mode, precision=precision, dynamic_batch=True).onnx_path
        run.artifacts[name] = (path, "onnxruntime")


def _export_int8(run: _Run, ckpt: Path, folder: Path, cfg: DemoSettings) -> dict[str, Any]:
    """Q/DQ int8 in nms mode (scored by ONNX Runtime) and raw mode (parity in ORT, source of the OpenVINO int8)."""
    from ssdtrt.export.calibration import CalibrationConfig
    from ssdtrt.export.onnx_export import export_checkpoint

    from ssdtrt.bench.machine import cpu_lacks_int8_dot_products

    # These int8 graphs run on this CPU (ONNX Runtime, OpenVINO): without VNNI, 8-bit weights saturate OpenVINO's
    # 16-bit sums (measured −1.1 mAP pt), so they get 7-bit weights there; a TensorRT int8 export would keep 8 bits.
    # Float parts fp32 (--int8-float fp32): CPU runtimes run fp16 Q/DQ graphs 2-4× slower (TensorRT wants fp16).
    reduce_range = cpu_lacks_int8_dot_products()
    calib = CalibrationConfig(data="synthetic", num_images=cfg.calib_images, method=cfg.calib_method,
                              cache_dir=folder / ".calib", reduce_range=reduce_range, high_precision="fp32")
    seconds: dict[str, float] = {}
    for name, mode in (("onnxruntime-int8-nms", "nms"), ("onnxruntime-int8-raw", "raw")):
        t = time.perf_counter()
        res = export_checkpoint(ckpt, folder / f"ssd-small-{mode}-int8.onnx", mode=mode, precision="int8",
                                dynamic_batch=True, calibration=calib)
        seconds[mode] = round(time.perf_counter() - t, 1)
        run.artifacts[name] = (res.onnx_path, "onnxruntime")
    return {"data": "synthetic (train split)", "method": cfg.calib_method, "images": cfg.calib_images,
            "weight_bits": 7 if reduce_range else 8, "export_s": seconds}


def _build_engines(run: _Run, folder: Path, tensorrt_reason: str | None) -> dict[str, Any]:
    from ssdtrt.engines.openvino_builder import build_openvino

    # OpenVINO from the raw graphs (numpy postprocess in the pipeline): the raw int8 ONNX keeps its Q/DQ → int8 IR
    for name, src in (("openvino-f32-raw", "onnxruntime-fp32-raw"), ("openvino-int8-raw", "onnxruntime-int8-raw")):
        stem = run.artifacts[src][0].stem
        run.artifacts[name] = (build_openvino(run.artifacts[src][0], folder / stem).engine_path, "openvino")
    if tensorrt_reason is not None:
        run.log(f"    TensorRT skipped: {tensorrt_reason}")
        return {"built": False, "reason": tensorrt_reason}
    from ssdtrt.engines.tensorrt_builder import build_tensorrt

    plan = build_tensorrt(run.artifacts["onnxruntime-fp32-nms"][0], folder / "ssd-small-nms.plan", max_batch=16)
    run.artifacts["tensorrt-fp32-nms"] = (plan.engine_path, "tensorrt")
    return {"built": True, "engine": str(plan.engine_path)}


SCORED = ("torch-fp32", "onnxruntime-fp32-nms", "onnxruntime-fp16-nms", "onnxruntime-int8-nms", "openvino-f32-raw",
          "openvino-int8-raw", "tensorrt-fp32-nms")


def _score_all(run: _Run, eval_images: int) -> dict[str, dict[str, Any]]:
    """mAP of each artifact through the Detector pipeline (same preprocess and postprocess for every backend)."""
    from ssdtrt.data import open_dataset
    from ssdtrt.evaluate import evaluate
    from ssdtrt.inference.detector import Detector

    val = open_dataset("synthetic", "val")
    n = min(eval_images, len(val))
    out: dict[str, dict[str, Any]] = {}
    for name in (s for s in SCORED if s in run.artifacts):
        path, backend = run.artifacts[name]
        t = time.perf_counter()
        with Detector(path, backend=backend, batch_size=16, score_threshold=0.01) as det:
            res = evaluate(det.detect, val, batch_size=16, limit=n, progress=run.task(f"mAP {name}", n))
        out[name] = {"map": res.map, "map50": res.map50, "eval_s": round(time.perf_counter() - t, 1),
                     "artifact": str(path), "size_mb": round(_size_bytes(path) / 1e6, 2), "images": n}
        run.log(f"    {name:22s} mAP {res.map:.4f}  mAP@.5 {res.map50:.4f}")
    ref = out["torch-fp32"]["map"]
    for v in out.values():
        v["delta_map_pts"] = round(100.0 * (v["map"] - ref), 2)
    return out


def _size_bytes(path: Path) -> int:
    """File size; an OpenVINO IR counts its .bin weights too."""
    weights = path.with_suffix(".bin")
    return path.stat().st_size + (weights.stat().st_size if path.suffix == ".xml" and weights.is_file() else 0)


def _parity(run: _Run, ckpt: Path, variants: dict[str, dict[str, Any]], num_images: int) -> list[dict[str, Any]]:
    from ssdtrt.compare import compare_models, load_images, load_subject

    images = load_images("synthetic", num_images)
    ref = load_subject(ckpt)
    rows: list[dict[str, Any]] = []
    try:
        for rule in (r for r in PARITY_RULES if r.candidate in run.artifacts):
            path, backend = run.artifacts[rule.candidate]
            cand = load_subject(path, backend=backend)
            try:
                rep = compare_models(ref, cand, images, atol=rule.atol if rule.atol is not None else math.inf,
                                     rtol=rule.rtol or 0.0, min_match=rule.min_match or 0.0,
                                     progress=run.task(f"compare {rule.candidate}", len(images)))
            finally:
                cand.close()
            rows.append(_parity_row(rule, rep, variants))
            run.log(f"    torch vs {rule.candidate:22s} {'PASS' if rows[-1]['passed'] else 'FAIL'}  "
                    f"match {rep.match_rate:.3f}  " + "  ".join(f"{o.name} max|Δ| {o.max_abs:.2g}" for o in rep.outputs))
    finally:
        ref.close()
    return rows


def _parity_row(rule: ParityRule, rep: Any, variants: dict[str, dict[str, Any]]) -> dict[str, Any]:
    checks = []
    if rule.atol is not None:
        checks.append(all(o.passed for o in rep.outputs))
    if rule.min_match is not None:
        checks.append(rep.match_rate >= rule.min_match)
    if rule.max_mean_abs is not None:
        checks.append(bool(rep.outputs) and all(o.mean_abs <= rule.max_mean_abs for o in rep.outputs))
    drop = None
    if rule.max_map_drop_pts is not None:
        scored = variants.get(MAP_OF.get(rule.candidate, rule.candidate))
        drop = None if scored is None else -scored["delta_map_pts"]
        checks.append(drop is not None and drop <= rule.max_map_drop_pts)
    return {
        "a": "torch-fp32", "b": rule.candidate, "a_name": rep.a, "b_name": rep.b, "images": rep.num_images,
        "criteria": rule.describe(), "passed": bool(checks) and all(checks), "match_rate": rep.match_rate,
        "detections": [rep.detections_a, rep.detections_b],
        "outputs": {o.name: {"max_abs": o.max_abs, "mean_abs": o.mean_abs, "max_rel": o.max_rel} for o in rep.outputs},
        "map_drop_pts": drop,
    }


def _latency(run: _Run, cfg: DemoSettings) -> dict[str, Any]:
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


def _annotate(folder: Path, model_path: Path, count: int) -> list[str]:
    from ssdtrt.data import open_dataset
    from ssdtrt.inference.detector import Detector
    from ssdtrt.io.draw import draw_detections, write_image

    val = open_dataset("synthetic", "val")
    samples = [val[i] for i in range(min(count, len(val)))]
    with Detector(model_path, score_threshold=0.3) as det:
        dets = det.detect([s.image for s in samples])
    return [str(write_image(folder / f"val_{i:03d}.png", draw_detections(s.image, d)))
            for i, (s, d) in enumerate(zip(samples, dets))]
