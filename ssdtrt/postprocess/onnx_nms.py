"""Per-class NMS as a standard-ONNX subgraph appended to a `decoded` graph (no plugin; TensorRT parses it natively).

Same semantics as `ssdtrt.postprocess.host_torch`, step by step:

1. per class c ≥ 1: TopK(k) of scores[:, :, c] (sorted; ties → lower prior index first), k = min(topk_candidates,
   candidates_per_class, P). `nms_settings` always sets candidates_per_class (default `NMS_CANDIDATES_PER_CLASS`
   = 2000), so every NonMaxSuppression batch item holds k ≤ 2000 boxes — within TensorRT's INMSLayer limit (it
   considers only the best 5000 boxes per batch item, 2000 on SM 5.3 / 6.2) and its TopK limit (K < 3840): the graph
   means the same on TensorRT as on ONNX Runtime, and the manifest records the cap. Only when k = P (a small model)
   every prior is a candidate in prior order (no TopK);
2. keep candidates with score > score_threshold and, if min_size > 0, width and height ≥ min_size; the rest get
   score -1 (scores are probabilities ≥ 0, so NonMaxSuppression's own score_threshold of 0 drops exactly them,
   whichever of > / ≥ a backend implements);
3. one NonMaxSuppression with batch = N·(C-1) and one class per batch entry, so every (image, class) candidate set
   stays separate; at most min(k, K) boxes kept per class;
4. kept scores are scattered back into a dense [N, (C-1)·k] matrix in (class, rank | prior) order (the rest -1) and a
   TopK(K) per image picks the best K = max_detections; TopK breaks ties by the lower index, i.e. candidate order,
   exactly as the torch path's stable sort;
5. fixed-size outputs, padded: num_detections [N] int32, boxes [N, K, 4] (xyxy normalized), scores [N, K],
   labels [N, K] int32 (1..C-1; padding rows are zeros).

Measured in onnxruntime 1.31: NonMaxSuppression keeps scores strictly above its score_threshold, suppresses only
IoU strictly above iou_threshold (as torchvision), and lists each class by descending score, ties by lower index.
The graph does not rely on the first or the last (masking + the dense TopK fix both), only on IoU > threshold.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ssdtrt.core.config import NMS_CANDIDATES_PER_CLASS, PostprocessSpec, per_class_cap

#: Names of the graph outputs of an `nms` export, in order.
NMS_OUTPUTS: tuple[str, ...] = ("num_detections", "boxes", "scores", "labels")
#: Every node of the appended subgraph has a name starting with this (fp16 / int8 keep these in fp32).
NMS_PREFIX = "nms/"
#: TensorRT limits the graph must stay within (NvInfer.h INMSLayer / ITopKLayer; onnx-tensorrt docs/operators.md).
TRT_NMS_MAX_BOXES_PER_ITEM = 5000
TRT_TOPK_MAX_K_EXCLUSIVE = 3840


class _Builder:
    """Tiny helper: named nodes and constant initializers under the `nms/` prefix."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def const(self, name: str, value: np.ndarray) -> str:
        full = f"{NMS_PREFIX}{name}"
        self.inits.append(numpy_helper.from_array(np.asarray(value), full))
        return full

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, **attrs: object) -> list[str]:
        self._n += 1
        name = f"{NMS_PREFIX}{op_type}_{self._n}"
        outs = [f"{name}_o{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=name, **attrs))
        return outs

    def one(self, op_type: str, inputs: list[str], **attrs: object) -> str:
        return self.op(op_type, inputs, 1, **attrs)[0]


def nms_settings(settings: PostprocessSpec, num_priors: int) -> PostprocessSpec:
    """`settings` with the explicit per-class candidate cap an `nms` export bakes in (and its manifest records).

    The cap is min(topk_candidates, candidates_per_class or NMS_CANDIDATES_PER_CLASS, P); a preset without a per-class
    top-k (seed 000) gets 2000. Raises ValueError for a cap or max_detections TensorRT cannot run.
    """
    cap = settings.candidates_per_class
    if cap is not None and not 1 <= cap < TRT_TOPK_MAX_K_EXCLUSIVE:
        raise ValueError(f"candidates_per_class = {cap}: must be 1..{TRT_TOPK_MAX_K_EXCLUSIVE - 1} "
                         f"(TensorRT TopK needs K < {TRT_TOPK_MAX_K_EXCLUSIVE}; its NMS takes <= "
                         f"{TRT_NMS_MAX_BOXES_PER_ITEM} boxes per item)")
    if not 1 <= settings.max_detections < TRT_TOPK_MAX_K_EXCLUSIVE:
        raise ValueError(f"max_detections = {settings.max_detections}: must be 1..{TRT_TOPK_MAX_K_EXCLUSIVE - 1} "
                         f"(the per-image TopK; TensorRT needs K < {TRT_TOPK_MAX_K_EXCLUSIVE})")
    if settings.topk_candidates is not None and settings.topk_candidates < 1:
        raise ValueError(f"topk_candidates = {settings.topk_candidates}: must be >= 1 (None = no per-class top-k)")
    cap = NMS_CANDIDATES_PER_CLASS if cap is None else cap
    topk = cap if settings.topk_candidates is None else settings.topk_candidates
    return replace(settings, candidates_per_class=min(topk, cap, num_priors))


def nms_sizes(num_priors: int, num_classes: int, settings: PostprocessSpec) -> tuple[int, int, int]:
    """(k candidates per class, boxes kept per class by NMS, K_eff = per-image TopK size before padding)."""
    cap = per_class_cap(settings.topk_candidates, settings.candidates_per_class)
    k = num_priors if cap is None else min(cap, num_priors)
    per_class = min(k, settings.max_detections)
    return k, per_class, min(settings.max_detections, (num_classes - 1) * k)


def _i64(*values: int) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)


def _f32(*values: float) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


@dataclass(frozen=True)
class _Candidates:
    """Step 1's tensors: candidate boxes [N, M, 4] and scores [N, M] in (class, rank | prior) order, M = (C-1)·k, and
    the shared axis-2 / expand-to-4 constants."""

    boxes: str
    scores: str
    axis2: str
    expand4: str


def _candidates(b: _Builder, boxes_name: str, scores_name: str, num_classes: int, p: int, k: int) -> _Candidates:
    """1. per-class top-k candidates (every prior, in prior order, when k = P)."""
    c1 = num_classes - 1
    cls = b.one("Slice", [scores_name, b.const("c_start", _i64(1)), b.const("c_end", _i64(num_classes)),
                          b.const("c_axis", _i64(2))])
    cls_t = b.one("Transpose", [cls], perm=[0, 2, 1])
    shape_nm = b.const("shape_nm", _i64(0, -1))
    expand4 = b.const("expand4", _i64(1, 1, 4))
    axis2 = b.const("axis2", _i64(2))
    if k < p:
        cand_s, cand_i = b.op("TopK", [cls_t, b.const("k", _i64(k))], 2, axis=-1, largest=1, sorted=1)
        idx_flat = b.one("Reshape", [cand_i, shape_nm])  # [N, M]
        idx4 = b.one("Expand", [b.one("Unsqueeze", [idx_flat, axis2]), expand4])
        cand_boxes = b.one("GatherElements", [boxes_name, idx4], axis=1)  # [N, M, 4] in (class, rank) order
    else:
        # No per-class cap: every prior is a candidate, kept in prior order (no TopK, whose K TensorRT limits to
        # < 3840). Equal scores then rank by prior index, which is exactly the stable sort of the torch path.
        cand_s = cls_t
        per_class_boxes = b.one("Expand", [b.one("Unsqueeze", [boxes_name, b.const("axis1c", _i64(1))]),
                                           b.const("expand_c", _i64(1, c1, 1, 1))])
        cand_boxes = b.one("Reshape", [per_class_boxes, b.const("shape_nm4", _i64(0, -1, 4))])  # [N, (C-1)·P, 4]
    s_flat = b.one("Reshape", [cand_s, shape_nm])
    return _Candidates(cand_boxes, s_flat, axis2, expand4)


def _masked_scores(b: _Builder, cand: _Candidates, settings: PostprocessSpec) -> str:
    """2. score threshold and min size → masked scores [N, M] (-1 = not a candidate)."""
    keep = b.one("Greater", [cand.scores, b.const("score_threshold", _f32(settings.score_threshold))])
    if settings.min_size > 0:
        lo = b.one("Slice", [cand.boxes, b.const("lo_s", _i64(0)), b.const("lo_e", _i64(2)), cand.axis2])
        hi = b.one("Slice", [cand.boxes, b.const("hi_s", _i64(2)), b.const("hi_e", _i64(4)), cand.axis2])
        wh = b.one("Sub", [hi, lo])
        ms = b.const("min_size", _f32(settings.min_size))
        w = b.one("Gather", [wh, b.const("i0", np.asarray(0, dtype=np.int64))], axis=2)
        w_ok = b.one("GreaterOrEqual", [w, ms])
        h = b.one("Gather", [wh, b.const("i1", np.asarray(1, dtype=np.int64))], axis=2)
        h_ok = b.one("GreaterOrEqual", [h, ms])
        keep = b.one("And", [keep, b.one("And", [w_ok, h_ok])])
    return b.one("Where", [keep, cand.scores, b.const("minus_one", _f32(-1.0))])


def _nms(b: _Builder, cand: _Candidates, masked: str, k: int, per_class: int, iou_threshold: float) -> str:
    """3. one NonMaxSuppression, one class per batch entry; returns its selected [S, 3] (batch, class 0, index)."""
    nms_boxes = b.one("Reshape", [cand.boxes, b.const("shape_bk4", _i64(-1, k, 4))])
    nms_scores = b.one("Reshape", [masked, b.const("shape_b1k", _i64(-1, 1, k))])
    return b.one(
        "NonMaxSuppression",
        [
            nms_boxes,
            nms_scores,
            b.const("max_per_class", _i64(per_class)),
            b.const("iou_threshold", _f32(iou_threshold)),
            b.const("nms_score_threshold", _f32(0.0)),
        ],
        center_point_box=0,
    )


def _best_per_image(b: _Builder, selected: str, masked: str, k: int, m: int, k_eff: int) -> tuple[str, str]:
    """4. kept scores scattered into a dense [N, M] matrix (the rest -1); TopK(K_eff) per image → (scores, indices)."""
    sel_b = b.one("Gather", [selected, b.const("col0", _i64(0))], axis=1)
    sel_j = b.one("Gather", [selected, b.const("col2", _i64(2))], axis=1)
    flat_pos = b.one("Add", [b.one("Mul", [sel_b, b.const("k_scalar", np.asarray(k, dtype=np.int64))]), sel_j])
    masked_all = b.one("Reshape", [masked, b.const("shape_flat", _i64(-1))])
    kept_scores = b.one("Gather", [masked_all, flat_pos], axis=0)
    fill = b.one("ConstantOfShape", [b.one("Shape", [masked_all])], value=numpy_helper.from_array(_f32(-1.0), "fill"))
    dense = b.one("ScatterND", [fill, b.one("Unsqueeze", [flat_pos, b.const("axis1", _i64(1))]), kept_scores])
    dense_nm = b.one("Reshape", [dense, b.const("shape_m", _i64(-1, m))])
    top_s, top_i = b.op("TopK", [dense_nm, b.const("k_final", _i64(k_eff))], 2, axis=1, largest=1, sorted=1)
    return top_s, top_i


def _fixed_outputs(b: _Builder, cand: _Candidates, top_s: str, top_i: str, k: int, k_eff: int,
                   max_detections: int) -> dict[str, str]:
    """5. num_detections, boxes, scores, labels; padding rows zero, padded to `max_detections` when K_eff is less."""
    valid = b.one("Greater", [top_s, b.const("minus_half", _f32(-0.5))])
    num = b.one("ReduceSum", [b.one("Cast", [valid], to=TensorProto.INT32), b.const("axis1b", _i64(1))], keepdims=0)
    top_i4 = b.one("Expand", [b.one("Unsqueeze", [top_i, cand.axis2]), cand.expand4])
    valid4 = b.one("Unsqueeze", [valid, cand.axis2])
    out_boxes = b.one("Where", [valid4, b.one("GatherElements", [cand.boxes, top_i4], axis=1), b.const("zero_f", _f32(0.0))])
    out_scores = b.one("Where", [valid, top_s, b.const("zero_s", _f32(0.0))])
    label = b.one("Add", [b.one("Div", [top_i, b.const("k_div", np.asarray(k, dtype=np.int64))]),
                          b.const("one", np.asarray(1, dtype=np.int64))])
    out_labels = b.one("Where", [valid, b.one("Cast", [label], to=TensorProto.INT32),
                                 b.const("zero_i", np.asarray(0, dtype=np.int32))])
    outputs = {"num_detections": num, "boxes": out_boxes, "scores": out_scores, "labels": out_labels}
    if k_eff < max_detections:  # fewer candidates than K in total: pad to the fixed size
        extra = max_detections - k_eff
        outputs["boxes"] = b.one("Pad", [out_boxes, b.const("pad3", _i64(0, 0, 0, 0, extra, 0)), b.const("pad_f", _f32(0.0))])
        outputs["scores"] = b.one("Pad", [out_scores, b.const("pad2", _i64(0, 0, 0, extra)), b.const("pad_s", _f32(0.0))])
        outputs["labels"] = b.one(
            "Pad", [out_labels, b.const("pad2l", _i64(0, 0, 0, extra)), b.const("pad_i", np.asarray(0, dtype=np.int32))]
        )
    for name, src in outputs.items():  # give the final tensors their public names
        b.nodes.append(helper.make_node("Identity", [src], [name], name=f"{NMS_PREFIX}out_{name}"))
    return outputs


def _replace_outputs(model: onnx.ModelProto, b: _Builder, batch: int | str, max_detections: int) -> None:
    """Add the built nodes and constants to `model` and make the four NMS tensors its only outputs."""
    graph = model.graph
    graph.node.extend(b.nodes)
    graph.initializer.extend(b.inits)
    kk = max_detections
    new_outputs = [
        helper.make_tensor_value_info("num_detections", TensorProto.INT32, [batch]),
        helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [batch, kk, 4]),
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, kk]),
        helper.make_tensor_value_info("labels", TensorProto.INT32, [batch, kk]),
    ]
    del graph.output[:]
    graph.output.extend(new_outputs)


def append_nms(
    model: onnx.ModelProto,
    boxes_name: str,
    scores_name: str,
    *,
    num_priors: int,
    num_classes: int,
    settings: PostprocessSpec,
    batch: int | str,
) -> onnx.ModelProto:
    """Replace the graph outputs `boxes_name [N,P,4]` / `scores_name [N,P,C]` with the fixed-size NMS outputs
    (steps 1-5 of the module docstring, one function each)."""
    if settings.score_threshold < 0:
        raise ValueError("score_threshold must be >= 0 for the nms export (scores are probabilities)")
    settings = nms_settings(settings, num_priors)
    k, per_class, k_eff = nms_sizes(num_priors, num_classes, settings)
    b = _Builder()
    cand = _candidates(b, boxes_name, scores_name, num_classes, num_priors, k)
    masked = _masked_scores(b, cand, settings)
    selected = _nms(b, cand, masked, k, per_class, settings.iou_threshold)
    top_s, top_i = _best_per_image(b, selected, masked, k, (num_classes - 1) * k, k_eff)
    _fixed_outputs(b, cand, top_s, top_i, k, k_eff, settings.max_detections)
    _replace_outputs(model, b, batch, settings.max_detections)
    return model
