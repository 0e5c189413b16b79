"""Postprocess inside the OpenVINO graph: softmax + `DetectionOutput` (opset 8, Caffe SSD semantics) appended to a
raw-heads model, so the engine hands back detections instead of 2.8 MB of logits.

    from ssdtrt.runtime.openvino_runner import openvino_core  # the process's one ov.Core (it says why)

    model = append_detection_output(openvino_core().read_model("m_raw.xml"), spec, settings)

The op (checked against OpenVINO's CPU implementation and measured in `tests/engines/test_openvino_graph.py`):
scores must be `> confidence_threshold`; `top_k` keeps the best per class before NMS (ties by lower prior index);
greedy NMS per class, IoU `> nms_threshold` suppresses (float32, torchvision's formula on the clipped boxes);
`keep_top_k` cuts each image to its best (ties by lower prior index); output `[1, 1, N * keep_top_k, 7]` rows
(image, label, score, x1, y1, x2, y2) grouped by image and class, not sorted by score, ended by a row whose image
id is -1 when not full. The graph scatters those rows to per-image slots and ends in the outputs of an `nms` export
(num_detections, boxes, scores, labels; padded, not sorted): the host sorts by score (stable, so ties keep the
op's class order, which is the host numpy order) and applies a stricter threshold / cut — the `nms` stage.

Our semantics the op lacks are built in front of it, exactly:
- the exponent clamp of `decode` (exp argument <= WH_EXP_CLAMP): the w/h offsets are clamped at
  WH_EXP_CLAMP / variance before the op multiplies them by the variance;
- a minimum box size (the R50 preset's 1/300): the graph decodes and clips the boxes with `decode`'s formula and
  zeroes the class probabilities of priors whose box is smaller, so they never pass the threshold. The host applies
  the per-class top-k first and the size test second; both orders agree unless a top-k cap binds, so a build with
  both a minimum size and a per-class cap is refused (`EngineBuildError`).
The op decodes from corner-form priors (width = x2 - x1), one rounding away from our (cx, cy, w, h) priors: boxes
differ by float32 rounding (~1e-7), far inside the parity tolerance.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ssdtrt.core.boxes import cxcywh_to_xyxy
from ssdtrt.core.codec import WH_EXP_CLAMP
from ssdtrt.core.config import ModelSpec, PostprocessSpec, per_class_cap
from ssdtrt.core.errors import EngineBuildError
from ssdtrt.core.priors import default_boxes

#: Values per DetectionOutput row: image id, label, score, x1, y1, x2, y2.
ROW_SIZE = 7


def detection_output_attrs(settings: PostprocessSpec, num_classes: int) -> dict[str, Any]:
    """The op's attributes for our postprocess settings (class count comes from the input shapes)."""
    cap = per_class_cap(settings.topk_candidates, settings.candidates_per_class)
    return {
        "background_label_id": 0,
        "top_k": -1 if cap is None else int(cap),
        "variance_encoded_in_target": False,
        "keep_top_k": [int(settings.max_detections)],
        "code_type": "caffe.PriorBoxParameter.CENTER_SIZE",
        "share_location": True,
        "nms_threshold": float(settings.iou_threshold),
        "confidence_threshold": float(settings.score_threshold),
        "clip_after_nms": False,
        "clip_before_nms": True,
        "decrease_label_id": False,
        "normalized": True,
        "input_height": 1,
        "input_width": 1,
        "objectness_score": 0.0,
    }


def proposals(priors_cxcywh: np.ndarray, variances: tuple[float, ...]) -> np.ndarray:
    """The op's proposals input [1, 2, P * 4]: corner-form priors, then the variance row."""
    corners = cxcywh_to_xyxy(np.asarray(priors_cxcywh, dtype=np.float32)).astype(np.float32)
    var = np.tile(np.asarray(variances, dtype=np.float32), (corners.shape[0], 1))
    return np.stack([corners.reshape(-1), var.reshape(-1)])[None]


def check_settings(settings: PostprocessSpec) -> None:
    """Refuse settings the graph cannot reproduce exactly (see the module docstring)."""
    if settings.min_size > 0 and per_class_cap(settings.topk_candidates, settings.candidates_per_class) is not None:
        raise EngineBuildError(
            "postprocess in the engine: a minimum box size together with a per-class top-k cannot be reproduced "
            "exactly (the host caps before the size test); build with --postprocess host"
        )
    if settings.max_detections < 1:
        raise EngineBuildError(f"max_detections must be >= 1 for DetectionOutput, got {settings.max_detections}")


def append_detection_output(
    model: Any, spec: ModelSpec, settings: PostprocessSpec, *, locs: str = "locs", logits: str = "logits"
) -> Any:
    """A new `ov.Model` with the raw-heads model's inputs and the outputs of an `nms` export (`NMS_OUTPUTS`):
    num_detections [N] int32, boxes [N, K, 4], scores [N, K], labels [N, K] int32, K = max_detections, each image's
    detections first (grouped by class, in NMS order inside a class), the rest zeros.

    The op's packed rows are scattered to per-image slots in the graph (`_per_image`), so batching, un-padding and
    every consumer of `nms` outputs work unchanged. Built on the heads' producers (`result.input_value(0)`): wiring
    the op to the Result nodes' own ports makes the CPU plugin refuse the model ("cannot find op locs/sink_port_0").
    """
    import openvino as ov
    import openvino.opset8 as ops

    from ssdtrt.postprocess.onnx_nms import NMS_OUTPUTS

    check_settings(settings)
    heads = {name: _producer(model, name) for name in (locs, logits)}
    num_classes = int(heads[logits].get_partial_shape()[2].get_length())
    priors = default_boxes(spec)
    loc_src = heads[locs]
    probs = _class_softmax(ops, heads[logits])
    if settings.min_size > 0:
        big = _box_big_enough(ops, loc_src, priors, spec.variances, settings.min_size)
        probs = ops.select(ops.unsqueeze(big, -1), probs, np.float32(0.0))
    ceiling = np.asarray([np.inf, np.inf, *(WH_EXP_CLAMP / v for v in spec.variances[2:])], dtype=np.float32)
    flat = np.asarray([0, -1], dtype=np.int64)
    # clamp on the flat [N, P * 4] view with a tiled constant: the same values, ~6x faster on the CPU plugin than a
    # 4-wide broadcast over [N, P, 4] (measured with PERF_COUNT on the demo model)
    loc_clamped = ops.minimum(ops.reshape(loc_src, flat, special_zero=True), np.tile(ceiling, priors.shape[0]))
    det = ops.detection_output(
        loc_clamped,
        ops.reshape(probs, flat, special_zero=True),
        ops.constant(proposals(priors, spec.variances)),
        detection_output_attrs(settings, num_classes),
        name="postprocess/detection_output",
    )
    n_images = ops.gather(ops.shape_of(loc_src, "i64"), np.int64(0), np.int64(0))
    outputs = _per_image(ops, det, n_images, int(settings.max_detections))
    results = []
    for name, node in zip(NMS_OUTPUTS, outputs):
        res = ops.result(node)
        res.output(0).get_tensor().set_names({name})
        results.append(res)
    out = ov.Model(results, model.get_parameters(), f"{model.get_friendly_name()}_detection_output")
    out.validate_nodes_and_infer_types()
    return out


def _class_softmax(ops: Any, logits: Any) -> Any:
    """Softmax over the class axis of [N, P, C] logits, computed on the [N, C, P] view: the CPU plugin's softmax
    over a short last axis (C = 7 on the demo model) runs ~2.7x slower than over the long prior axis, and the two
    transposes cost less than the difference (demo, [8, 2390, 7], one thread: 0.86 -> 0.31 ms, values within 2.4e-7
    of the direct softmax; `benchmarks/latency/placement-variants.txt`)."""
    swap = np.asarray([0, 2, 1], dtype=np.int64)
    return ops.transpose(ops.softmax(ops.transpose(logits, swap), 1), swap)


def _per_image(ops: Any, det: Any, n_images: Any, k: int) -> list[Any]:
    """DetectionOutput's rows [1, 1, N * K, 7] (images one after another, ended by image id -1, zeros after) →
    (num_detections [N] i32, boxes [N, K, 4], scores [N, K], labels [N, K] i32): slot j of image n is row
    start_n + j (start_n = valid rows of the images before n) when j < count_n, else zeros (one Gather + Select;
    ~0.13 ms per batch of 8 on the demo model, PERF_COUNT)."""
    i64 = lambda v: np.asarray(v, np.int64)  # noqa: E731
    rows = ops.reshape(det, i64([-1, ROW_SIZE]), special_zero=False)
    image = ops.squeeze(ops.gather(rows, i64([0]), i64(1)), i64(1))  # [R] float
    valid = ops.equal(ops.cumsum(ops.convert(ops.equal(image, np.float32(-1.0)), "i32"), i64(0)), np.int32(0))
    image_i = ops.select(valid, ops.convert(image, "i64"), i64(-1))  # -1 after the end marker
    every = ops.range(i64(0), n_images, i64(1), "i64")  # [N]
    counts = ops.reduce_sum(ops.convert(ops.equal(ops.unsqueeze(image_i, i64(1)), ops.unsqueeze(every, i64(0))),
                                        "i64"), i64(0))  # [N]
    starts = ops.cumsum(counts, i64(0), exclusive=True)
    slot = ops.range(i64(0), i64(k), i64(1), "i64")  # [K]
    index = ops.add(ops.unsqueeze(starts, i64(1)), ops.unsqueeze(slot, i64(0)))  # [N, K]
    n_rows = ops.gather(ops.shape_of(rows, "i64"), i64(0), i64(0))
    index = ops.minimum(index, ops.subtract(n_rows, i64(1)))  # in range; masked below
    taken = ops.less(ops.unsqueeze(slot, i64(0)), ops.unsqueeze(counts, i64(1)))  # [N, K]
    table = ops.select(ops.unsqueeze(taken, i64(2)), ops.gather(rows, index, i64(0)), np.float32(0.0))  # [N, K, 7]
    column = lambda lo, hi: ops.slice(table, i64([lo]), i64([hi]), i64([1]), i64([2]))  # noqa: E731
    labels = ops.convert(ops.squeeze(column(1, 2), i64(2)), "i32")
    scores = ops.squeeze(column(2, 3), i64(2))
    return [ops.convert(counts, "i32"), column(3, 7), scores, labels]


def _producer(model: Any, name: str) -> Any:
    for port in model.outputs:
        if name in port.get_names():
            return port.get_node().input_value(0)
    raise EngineBuildError(f"the model has no output {name!r} (outputs: {[p.get_any_name() for p in model.outputs]})")


def _box_big_enough(ops: Any, locs: Any, priors: np.ndarray, variances: tuple[float, ...], min_size: float) -> Any:
    """[N, P] bool: the prior's decoded, clipped box has width and height >= min_size, with `decode`'s formula
    (`ssdtrt.core.codec.decode`, then clip to [0, 1]) in the same operation order."""
    l0, l1, l2, l3 = (ops.squeeze(part, -1) for part in ops.split(locs, -1, 4).outputs())
    pcx, pcy, pw, ph = (np.ascontiguousarray(priors[:, i]) for i in range(4))
    v = [np.float32(x) for x in variances]
    cx = ops.add(ops.multiply(ops.multiply(l0, v[0]), pw), pcx)
    cy = ops.add(ops.multiply(ops.multiply(l1, v[1]), ph), pcy)
    w = ops.multiply(ops.exp(ops.minimum(ops.multiply(l2, v[2]), np.float32(WH_EXP_CLAMP))), pw)
    h = ops.multiply(ops.exp(ops.minimum(ops.multiply(l3, v[3]), np.float32(WH_EXP_CLAMP))), ph)
    half_w, half_h = ops.multiply(w, np.float32(0.5)), ops.multiply(h, np.float32(0.5))
    clip = lambda x: ops.clamp(x, 0.0, 1.0)  # noqa: E731
    width = ops.subtract(clip(ops.add(cx, half_w)), clip(ops.subtract(cx, half_w)))
    height = ops.subtract(clip(ops.add(cy, half_h)), clip(ops.subtract(cy, half_h)))
    size = np.float32(min_size)
    return ops.logical_and(ops.greater_equal(width, size), ops.greater_equal(height, size))
