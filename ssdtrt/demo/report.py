"""The demo's report files: report.json (everything `run_demo` measured) and report.md (the same as tables)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ssdtrt.io.files import atomic_write_json, atomic_write_text

VARIANT_TITLES = {
    "torch-fp32": "PyTorch fp32 (checkpoint)",
    "onnxruntime-fp32-nms": "ONNX Runtime fp32, NMS in the graph",
    "onnxruntime-fp16-nms": "ONNX Runtime fp16, NMS in the graph",
    "onnxruntime-int8-nms": "ONNX Runtime int8 (Q/DQ), NMS in the graph",
    "openvino-f32-raw": "OpenVINO f32 (raw graph + numpy postprocess)",
    "openvino-int8-raw": "OpenVINO int8 (from the Q/DQ raw ONNX)",
    "tensorrt-fp32-nms": "TensorRT fp32, NMS in the graph",
}


def write_report(out_dir: Path, report: dict[str, Any]) -> tuple[Path, Path]:
    """Write report.json and report.md atomically; returns their paths."""
    json_path = atomic_write_json(Path(out_dir) / "report.json", report)
    md_path = atomic_write_text(Path(out_dir) / "report.md", markdown(report))
    return md_path, json_path


def _table(header: list[str], rows: list[list[str]]) -> str:
    from ssdtrt.bench.markdown import md_table

    return "\n".join(md_table(header, rows)) + "\n"


def _variants(report: dict[str, Any]) -> str:
    rows = [
        [VARIANT_TITLES.get(name, name), f"{v['map']:.4f}", f"{v['map50']:.4f}", f"{v['delta_map_pts']:+.2f}",
         f"{v['size_mb']:.2f}", f"{v['eval_s']:.1f}"]
        for name, v in report["variants"].items()
    ]
    return _table(["variant", "mAP@[.5:.95]", "mAP@.5", "Δ mAP vs torch (pts)", "size MB", "eval s"], rows)


def _parity(report: dict[str, Any]) -> str:
    rows = []
    for p in report["parity"]:
        errs = ", ".join(f"{k} {o['max_abs']:.2g} / {o['mean_abs']:.2g}" for k, o in p["outputs"].items()) or "—"
        drop = "" if p["map_drop_pts"] is None else f"; mAP drop {p['map_drop_pts']:.2f} pt"
        rows.append([p["b"], "**pass**" if p["passed"] else "**FAIL**", p["criteria"].replace("|", "\\|"), errs,
                     f"{p['match_rate']:.3f} ({p['detections'][0]} / {p['detections'][1]}){drop}"])
    return _table(["torch fp32 vs", "result", "tolerance", "max / mean abs error", "detection match (torch / other)"],
                  rows)


def _latency(report: dict[str, Any]) -> str:
    lat = report["latency"]
    rows = []
    for r in sorted(lat["results"], key=lambda r: r["e2e_p50_ms"]):
        st = r["stages_p50_ms"]
        rows.append([r["label"], f"**{r['e2e_p50_ms']:.2f}**", f"{r['e2e_min_ms']:.2f}–{r['e2e_max_ms']:.2f}",
                     f"{st.get('preprocess', 0):.2f}", f"{st.get('inference', 0):.2f}", f"{st.get('postprocess', 0):.2f}",
                     f"{r['images_per_s']:.0f}", str(r["iters"])])
    text = _table(["backend precision · model", "e2e p50 ms", "e2e min–max ms", "preprocess", "inference",
                   "postprocess", "img/s", "iters"], rows)
    for s in lat.get("skipped", []):
        text += f"\n- skipped {s['variant']}: {s['reason']}"
    return text + "\n"


def _machine(report: dict[str, Any]) -> str:
    from ssdtrt.bench.machine import cpu_caveats, machine_line

    m = report["machine"]
    caveats = "".join(f"- {c}\n" for c in cpu_caveats(m))
    return f"{machine_line(m)}\n" + (f"\nThis CPU has:\n\n{caveats}" if caveats else "")


def markdown(report: dict[str, Any]) -> str:
    """report.md: headline, per-variant mAP, parity, latency, step times, machine."""
    s, tr, cal = report["settings"], report["train"], report["calibration"]
    trt = report["tensorrt"]
    steps = _table(["step", "seconds"], [[k, f"{v:.1f}"] for k, v in report["steps_s"].items()]
                   + [["**total**", f"**{report['total_s']:.1f}**"]])
    lat = report["latency"]["settings"] or {}
    warnings = "".join(f"> **WARNING:** {w}\n\n" for w in report.get("warnings", []))
    return (
        "# ssdtrt demo report\n\n"
        + warnings
        + f"**mAP@[.5:.95] {report['map']:.4f}, mAP@.5 {report['map50']:.4f}** (PyTorch checkpoint, "
        f"{report['variants']['torch-fp32']['images']} held-out synthetic val images); whole demo "
        f"**{report['total_s']:.0f} s** on {report.get('machine', {}).get('cpu_cores', '?')} CPU cores.\n\n"
        f"Checkpoint `{report['checkpoint']}`: ssd-small trained from scratch for {tr['elapsed_s']:.0f} s "
        f"({tr['epochs']} of {s['train_epochs']} epochs, {tr['steps']} steps, {s['train_threads']} thread(s), "
        f"seed {s['train_seed']}: a fixed schedule, the same checkpoint on a quiet or a loaded machine)"
        + (" by an earlier demo run with the same settings, reused here (`ssdtrt demo --retrain` trains again)"
           if tr.get("reused") else "")
        + ".\n\n"
        "## mAP per variant\n\nEvery variant runs through the same `Detector` pipeline (same preprocess, same "
        "postprocess settings, score threshold 0.01).\n"
        f"INT8: Q/DQ, {cal['method']} calibration on {cal['images']} images of {cal['data']}, "
        f"{cal.get('weight_bits', 8)}-bit weights"
        + (" (this CPU has no VNNI: 8-bit weights saturate OpenVINO's int8 sums here)" if cal.get("weight_bits") == 7 else "")
        + ".\n\n"
        + _variants(report)
        + ("" if trt["built"] else f"\nTensorRT: not built — {trt['reason']}.\n")
        + f"\n## Parity against the checkpoint (`ssdtrt compare`, {s['parity_images']} val images)\n\n"
        "Max / mean abs error over the raw heads (`locs`, `logits`) where both sides expose them; detections match "
        "when they have a partner with the same label at IoU ≥ 0.99. An `nms` graph is compared on detections only. "
        "fp32 pairs must agree element-wise; int8 is gated on the mean error (0.1: the measured int8 mean errors "
        "are 0.02–0.08) and on the mAP loss (≤ 1 pt, the issue's INT8 target) — its max error and match rate are "
        "shown but do not gate, since quantization moves every box a little.\n\n"
        + _parity(report)
        + f"\n## Latency, batch 1, end to end (decoded image in → detections in pixels out)\n\n"
        f"{lat.get('warmup')} warm-up + up to {lat.get('iters')} timed iterations per row (stopped after "
        f"{lat.get('max_seconds')} s, at least {lat.get('min_iters')}); stage columns are p50 ms. A short run "
        "(min–max shows its noise); `ssdtrt bench latency` measures longer, at more batch sizes.\n\n"
        + _latency(report)
        + "\n## Time per step\n\n" + steps
        + "\n## Machine\n\n" + _machine(report)
        + f"\nAnnotated validation images: {', '.join(f'`{Path(p).name}`' for p in report['images'])} in `images/`.\n"
    )
