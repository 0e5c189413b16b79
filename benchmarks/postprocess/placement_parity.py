"""Placement parity: detections of the engine-placed OpenVINO IR (softmax + DetectionOutput, optionally uint8 input and
resize in the graph) against the host path (raw-heads IR + `normalize_batch` + `postprocess_numpy`), as sets.

    PYTHONPATH=. python benchmarks/postprocess/placement_parity.py NAME=EXPORT.onnx ... --images 64 \
        --json OUT.json --markdown OUT.md [--map NAME]

Per model: the same raw ONNX is built three ways (host placement = the reference; engine placement with float input;
engine placement with uint8 input) plus an in-graph-resize variant, all compiled with INFERENCE_PRECISION_HINT=f32.
Every unmatched detection is counted and classified (`near_threshold`: its score is within 1e-5 of the score
threshold; `other`). With --map, mAP of the host and engine paths on the synthetic val split (pixel boxes, the
dataset's ground truth). --image-size HxW first resizes the dataset images (decoded frames of another size), so the
host path's cv2.resize and the graph's resize (PrePostProcessor, linear) have work to do: their set difference, and
time per image (alternated image by image).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ssdtrt.core.detections import Detections
from ssdtrt.core.manifest import read_manifest
from ssdtrt.core.priors import default_boxes
from ssdtrt.data import open_dataset
from ssdtrt.engines.openvino_builder import build_openvino
from ssdtrt.evaluate import evaluate_detections
from ssdtrt.postprocess.host_numpy import postprocess_numpy
from ssdtrt.postprocess.onnx_nms import NMS_OUTPUTS
from ssdtrt.postprocess.parity import compare_sets
from ssdtrt.preprocess.host import normalize_batch, resize_rgb

CFG = {"INFERENCE_PRECISION_HINT": "f32"}


def _compile(core: Any, model: Any) -> Any:
    return core.compile_model(model, "CPU", CFG)


def _engine_dets(compiled: Any, x: np.ndarray) -> list[Detections]:
    """An engine-placed model's `nms` outputs → Detections per image, score order (stable: ties keep class order)."""
    out = compiled(x)
    num, boxes, scores, labels = (out[compiled.output(name)] for name in NMS_OUTPUTS)
    dets = []
    for i in range(boxes.shape[0]):
        order = np.argsort(-scores[i, : num[i]], kind="stable")
        dets.append(Detections(boxes[i, order], scores[i, order], labels[i, order].astype(np.int64)))
    return dets


def _unmatched_kinds(a: list[Detections], b: list[Detections], thr: float) -> dict[str, int]:
    """Classify what one side has and the other lacks: near the threshold (score within 1e-5) or other."""
    kinds = {"near_threshold": 0, "other": 0}
    for da, db in zip(a, b):
        if compare_sets([da], [db]).equal:
            continue
        for side, other in ((da, db), (db, da)):
            for i in range(len(side.scores)):
                one = Detections(side.boxes[i : i + 1], side.scores[i : i + 1], side.labels[i : i + 1])
                if compare_sets([one], [other]).matched == 0:
                    kinds["near_threshold" if abs(float(side.scores[i]) - thr) <= 1e-5 else "other"] += 1
    return kinds


def _diff(a: list[Detections], b: list[Detections], thr: float) -> dict[str, Any]:
    d = compare_sets(a, b)
    out = {"matched": d.matched, "only_host": d.only_a, "only_engine": d.only_b, "equal_sets": d.equal,
           "max_box_diff": d.max_box_diff, "max_score_diff": d.max_score_diff}
    if not d.equal:
        out["unmatched_kinds"] = _unmatched_kinds(a, b, thr)
    return out


def run_model(name: str, onnx: Path, work: Path, n_images: int, with_map: bool, size_hw: tuple[int, int] | None) -> dict[str, Any]:
    from openvino.preprocess import PrePostProcessor  # noqa: F401 - fail early when missing

    from ssdtrt.postprocess.openvino_graph import append_detection_output
    from ssdtrt.preprocess.openvino_ppp import add_uint8_input
    from ssdtrt.runtime.openvino_runner import openvino_core

    src = read_manifest(onnx)
    spec = src.model_spec
    settings = spec.postprocess
    work.mkdir(parents=True, exist_ok=True)
    eng = build_openvino(onnx, work / f"{name}-engine", postprocess="engine", input_format="uint8-nhwc")
    ref_xml = eng.reference.engine_path
    core = openvino_core()  # the Core build_openvino used: one per process (openvino_core says why)
    ref = _compile(core, core.read_model(str(ref_xml)))
    eng_f32in = _compile(core, append_detection_output(core.read_model(str(ref_xml)), spec, settings))
    eng_u8 = _compile(core, core.read_model(str(eng.engine_path)))
    eng_resize = _compile(core, append_detection_output(
        add_uint8_input(core.read_model(str(ref_xml)), spec.preprocess, resize=True), spec, settings))
    val = open_dataset("synthetic", "val")
    samples = [val[i] for i in range(min(n_images, len(val)))]
    images = [s.image for s in samples]
    if size_hw is not None:  # decoded frames of another size: the pipeline (or the graph) resizes them to the network's
        images = [cv2.resize(img, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_LINEAR) for img in images]
    host, engine_f, engine_u8, engine_rs = [], [], [], []
    t_host_resize = t_graph_resize = 0.0
    priors = default_boxes(spec)
    for img in images:  # batch 1: the resize-in-graph model takes one image size per request
        t0 = time.perf_counter()
        small = resize_rgb(img, spec.preprocess)[None]
        t1 = time.perf_counter()
        x = normalize_batch(small, spec.preprocess)
        out = ref(x)
        heads = {name: out[ref.output(name)] for name in ("locs", "logits")}  # by tensor name (int8 IRs merge names)
        host += postprocess_numpy(heads["locs"], heads["logits"], priors, **settings.as_kwargs())
        engine_f += _engine_dets(eng_f32in, x)
        t2 = time.perf_counter()
        engine_u8 += _engine_dets(eng_u8, small)
        t3 = time.perf_counter()
        engine_rs += _engine_dets(eng_resize, np.ascontiguousarray(img[None]))
        t4 = time.perf_counter()
        t_host_resize += (t1 - t0) + (t3 - t2)
        t_graph_resize += t4 - t3
    thr = settings.score_threshold
    result: dict[str, Any] = {
        "model": name, "onnx": onnx.name, "precision": src.precision, "preset": spec.name, "images": len(images),
        "image_size_hw": list(images[0].shape[:2]),
        "settings": settings.as_kwargs(), "detections_host": sum(len(d.scores) for d in host),
        "engine_vs_host": _diff(host, engine_f, thr),
        "engine_uint8_input_vs_host": _diff(host, engine_u8, thr),
        "engine_resize_in_graph_vs_host": _diff(host, engine_rs, thr),
        "ms_per_image_cv2_resize_then_uint8_engine": 1e3 * t_host_resize / len(images),
        "ms_per_image_resize_in_graph_engine": 1e3 * t_graph_resize / len(images),
    }
    if with_map:
        names = list(val.class_names)
        def pixels(ds: list[Detections]) -> list[Detections]:
            out = []
            for d, sample in zip(ds, samples):  # normalized boxes → pixels of the dataset image (its ground truth)
                h, w = sample.image.shape[:2]
                out.append(Detections(d.boxes * np.float32([w, h, w, h]), d.scores, d.labels))
            return out
        for key, dets in (("host", host), ("engine", engine_f), ("engine_uint8_input", engine_u8),
                          ("engine_resize_in_graph", engine_rs)):
            result[f"map_{key}"] = evaluate_detections(pixels(dets), samples, names).map
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="NAME=raw export .onnx")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--work", type=Path, default=Path("runs/bench/placement"))
    ap.add_argument("--map", action="append", default=[], help="NAME of a model to score (mAP) on synthetic val")
    ap.add_argument("--image-size", default=None, help="HxW: resize the dataset images to this first (e.g. 480x640)")
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--markdown", type=Path, required=True)
    args = ap.parse_args()
    results = []
    for item in args.models:
        name, _, path = item.partition("=")
        size = tuple(int(v) for v in args.image_size.split("x")) if args.image_size else None
        results.append(run_model(name, Path(path), args.work, args.images, name in args.map, size))
        print(json.dumps(results[-1], indent=1))
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    args.markdown.write_text(_markdown(results))


def _markdown(results: list[dict[str, Any]]) -> str:
    lines = ["| model | images | host detections | engine vs host | uint8 input vs host | resize in graph vs host | "
             "mAP host / engine | ms/img cv2 resize + engine / resize in graph |", "|---|---:|---:|---|---|---|---|---|"]
    def cell(d: dict[str, Any]) -> str:
        if d["equal_sets"]:
            return f"equal ({d['matched']}; box ≤ {d['max_box_diff']:.1e}, score ≤ {d['max_score_diff']:.1e})"
        return f"{d['matched']} matched, {d['only_host']} host-only, {d['only_engine']} engine-only {d.get('unmatched_kinds', '')}"
    for r in results:
        m = f"{r['map_host']:.4f} / {r['map_engine']:.4f}" if "map_host" in r else "–"
        lines.append(f"| {r['model']} ({r['precision']}) | {r['images']} | {r['detections_host']} | {cell(r['engine_vs_host'])} | "
                     f"{cell(r['engine_uint8_input_vs_host'])} | {cell(r['engine_resize_in_graph_vs_host'])} | {m} | "
                     f"{r['ms_per_image_cv2_resize_then_uint8_engine']:.2f} / {r['ms_per_image_resize_in_graph_engine']:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
