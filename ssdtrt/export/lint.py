"""TensorRT ONNX-parser lint without TensorRT: will `trtexec --onnx` / `OnnxParser` accept this graph, and will it
mean on TensorRT what it means on ONNX Runtime?

Checks (each problem names the node), for one TensorRT major (10 or 11: `trt_supported_ops.json` keys its operator
table by major, from onnx-tensorrt's docs/operators.md, its importer sources and NVIDIA's release notes): every op
supported and the opset in range; custom domains need plugins; explicit quantization in the only form TensorRT takes
(QuantizeLinear / DequantizeLinear with int8 and zero points all 0, constant scales); operator restrictions that
matter here (TopK sorted and a constant K < 3840 — a computed K is accepted by the 10.x / 11.x importer and only
warned about; NonMaxSuppression's box budget: TensorRT considers only the best 5000 (box, class) pairs per batch item,
2000 on SM 5.3 / 6.2, so a larger NMS input silently differs from ONNX Runtime; Slice / Unsqueeze / Squeeze / Reduce
axes constants; ScatterND without reduction); dynamic dimensions only on the batch axis of inputs (what an
optimization profile covers); graph outputs with no data-dependent dimensions.

The checks are rule functions (`default_rules`): a rule takes a `LintContext` and returns `LintIssue`s; a rule
module registers by being appended to that list (or is passed as `extra_rules`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ssdtrt.core.errors import ManifestError
from ssdtrt.export.lint_issue import LintIssue
from ssdtrt.export.lint_qdq import lint_qdq

if TYPE_CHECKING:
    import onnx

#: TensorRT majors with an operator table; 10 is the default, the strictest common ground (the 11.x release notes list
#: only parser additions: Swish, DFT, opset 25).
TRT_MAJORS = (10, 11)
_AXES_INPUT = {"Slice": 3, "Unsqueeze": 1, "Squeeze": 1}  # op → index of an `axes` input that must be constant
_REDUCE_OPS = ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin",
               "ReduceProd", "ReduceSum", "ReduceSumSquare")


@dataclass
class LintReport:
    path: str
    opset: int
    num_nodes: int
    op_counts: dict[str, int]
    issues: list[LintIssue] = field(default_factory=list)
    source: str = ""
    trt_major: int = 10

    @property
    def errors(self) -> list[LintIssue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[LintIssue]:
        return [i for i in self.issues if i.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "ok": self.ok, "trt_major": self.trt_major, "opset": self.opset,
            "num_nodes": self.num_nodes, "op_counts": self.op_counts, "source": self.source,
            "issues": [i.__dict__ for i in self.issues],
        }


def supported_ops_table(trt_major: int = 10) -> dict[str, Any]:
    """The packaged operator table of one TensorRT major: the 10.x table with that major's overrides applied."""
    if trt_major not in TRT_MAJORS:
        raise ValueError(f"TensorRT major {trt_major}: lint has tables for {', '.join(map(str, TRT_MAJORS))}")
    table = json.loads(resources.files("ssdtrt.export").joinpath("trt_supported_ops.json").read_text(encoding="utf-8"))
    major = table["majors"][str(trt_major)]
    return {
        **table,
        "trt_major": trt_major,
        "source": major["source"],
        "opset_min": major["opset_min"],
        "opset_max": major["opset_max"],
        "opset_max_since": major.get("opset_max_since", {}),
        "operators": {**table["operators"], **major["operators"]},
    }


def _node_name(node: onnx.NodeProto, index: int) -> str:
    return node.name or f"node#{index}<{node.op_type}>"


class _Graph:
    """Constant lookup over initializers and Constant nodes."""

    def __init__(self, proto: onnx.ModelProto) -> None:
        from onnx import numpy_helper

        g = proto.graph
        self.consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        for n in g.node:
            if n.op_type == "Constant" and n.attribute:
                for a in n.attribute:
                    if a.name == "value":
                        self.consts[n.output[0]] = numpy_helper.to_array(a.t)
                    elif a.name in ("value_int", "value_ints", "value_float", "value_floats"):
                        self.consts[n.output[0]] = np.asarray(
                            a.i if a.name == "value_int" else list(a.ints) if a.name == "value_ints"
                            else a.f if a.name == "value_float" else list(a.floats)
                        )

    def const(self, name: str) -> np.ndarray | None:
        return self.consts.get(name) if name else None


@dataclass
class LintContext:
    """What every rule sees: the model, its shape-inferred copy, its constants and the major's operator table."""

    proto: onnx.ModelProto
    inferred: onnx.ModelProto
    graph: _Graph
    table: dict[str, Any]
    opset: int

    @property
    def trt_major(self) -> int:
        return int(self.table["trt_major"])

    def shape(self, name: str) -> tuple[int | None, ...] | None:
        """Dims of a tensor after shape inference (None for a symbolic dim), or None when its rank is unknown."""
        g = self.inferred.graph
        for vi in (*g.value_info, *g.input, *g.output):
            if vi.name == name and vi.type.tensor_type.HasField("shape"):
                return tuple(d.dim_value if d.dim_value > 0 else None for d in vi.type.tensor_type.shape.dim)
        const = self.graph.const(name)
        return None if const is None else tuple(const.shape)


LintRule = Callable[[LintContext], list[LintIssue]]


def default_rules() -> list[LintRule]:
    """The rules `lint_onnx` runs, in order. A rule module (e.g. export/lint_qdq.py) registers by being added here."""
    return [_opset_rule, _operator_rule, _nms_box_budget_rule, _dynamic_dims, _qdq_rule]


def _qdq_rule(ctx: LintContext) -> list[LintIssue]:
    """Q/DQ placement and fp16/fp32 rules (export/lint_qdq.py)."""
    return lint_qdq(ctx.proto, ctx.graph.consts)


def lint_onnx(
    model: str | os.PathLike[str] | onnx.ModelProto,
    *,
    trt_major: int = 10,
    extra_rules: Sequence[LintRule] = (),
) -> LintReport:
    """Lint an ONNX file or ModelProto for TensorRT `trt_major`; `report.ok` is False when its ONNX parser would reject
    the graph or its NMS would consider fewer boxes than ONNX Runtime does."""
    import onnx

    if isinstance(model, onnx.ModelProto):
        proto, path = model, "<in-memory>"
    else:
        path = str(model)
        if not Path(path).is_file():
            raise ManifestError(f"{path}: no such ONNX file")
        try:
            proto = onnx.load(path)
        except Exception as err:  # noqa: BLE001 - protobuf decode errors
            raise ManifestError(f"{path}: not a readable ONNX model ({err})") from err
    table = supported_ops_table(trt_major)
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    except Exception:  # noqa: BLE001 - lint what we can without inference
        inferred = proto
    opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
    ctx = LintContext(proto, inferred, _Graph(proto), table, opset)
    issues: list[LintIssue] = []
    for rule in (*default_rules(), *extra_rules):
        issues += rule(ctx)
    counts: dict[str, int] = {}
    for node in proto.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return LintReport(path, opset, len(proto.graph.node), dict(sorted(counts.items())), issues, table["source"],
                      trt_major)


def _opset_rule(ctx: LintContext) -> list[LintIssue]:
    t, opset = ctx.table, ctx.opset
    if t["opset_min"] <= opset <= t["opset_max"]:
        return []
    later = {int(o): minor for o, minor in t["opset_max_since"].items()}
    if opset in later:
        return [LintIssue("warning", "model", "", f"opset {opset} needs TensorRT >= {later[opset]}")]
    return [LintIssue("error", "model", "",
                      f"opset {opset} outside TensorRT {ctx.trt_major}.x's range {t['opset_min']}..{t['opset_max']}")]


def _operator_rule(ctx: LintContext) -> list[LintIssue]:
    """Per node: supported by this major's parser (custom domains need plugins), then the op's own restrictions."""
    issues: list[LintIssue] = []
    ops = ctx.table["operators"]
    for i, node in enumerate(ctx.proto.graph.node):
        name, op = _node_name(node, i), node.op_type
        if node.domain not in ("", "ai.onnx"):
            issues.append(LintIssue("error", name, op, f"custom domain {node.domain!r} needs a TensorRT plugin"))
            continue
        entry = ops.get(op)
        if entry is None or not entry["supported"]:
            issues.append(LintIssue("error", name, op, f"operator not supported by the TensorRT {ctx.trt_major}.x ONNX parser"))
            continue
        since = entry.get("since", "")
        if since and since != f"{ctx.trt_major}.0":
            issues.append(LintIssue("warning", name, op, f"needs TensorRT >= {since}"))
        if "plugin" in entry.get("restrictions", ""):
            issues.append(LintIssue("warning", name, op, entry["restrictions"]))
        issues += _node_rules(node, name, ctx)
    return issues


def _nms_box_budget_rule(ctx: LintContext) -> list[LintIssue]:
    """INMSLayer considers only the best N (box, class) pairs per batch item (NvInfer.h): N = 5000, 2000 on SM 5.3 /
    6.2. ONNX Runtime considers them all, so an NMS input larger than N can give other detections on TensorRT."""
    issues: list[LintIssue] = []
    limits = ctx.table["limits"]
    hard, small = limits["NonMaxSuppression.max_boxes_per_item"], limits["NonMaxSuppression.max_boxes_per_item_sm53_sm62"]
    fix = "cap the candidates per class (ssdtrt: candidates_per_class)"
    for i, node in enumerate(ctx.proto.graph.node):
        if node.op_type != "NonMaxSuppression" or len(node.input) < 2:
            continue
        name, op = _node_name(node, i), node.op_type
        boxes, scores = ctx.shape(node.input[0]), ctx.shape(node.input[1])
        n_boxes = boxes[1] if boxes is not None and len(boxes) == 3 else None
        n_cls = scores[1] if scores is not None and len(scores) == 3 else None
        if n_boxes is None or n_cls is None:
            issues.append(LintIssue("warning", name, op, f"boxes per batch item unknown: TensorRT considers only the "
                                                         f"best {hard} ({small} on SM 5.3 / 6.2); {fix}"))
            continue
        what = f"{n_boxes} boxes x {n_cls} classes = {n_boxes * n_cls} candidates per batch item"
        if n_boxes * n_cls > hard:
            issues.append(LintIssue("error", name, op, f"{what}, but TensorRT's NMS considers only the best {hard} "
                                                       f"({small} on SM 5.3 / 6.2): detections differ from ONNX "
                                                       f"Runtime; {fix}"))
        elif n_boxes * n_cls > small:
            issues.append(LintIssue("warning", name, op, f"{what}: above TensorRT's NMS limit of {small} on SM 5.3 / "
                                                         f"6.2 ({hard} elsewhere)"))
    return issues


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _node_rules(node: onnx.NodeProto, name: str, ctx: LintContext) -> list[LintIssue]:
    graph, table = ctx.graph, ctx.table
    out: list[LintIssue] = []
    op = node.op_type
    err = lambda msg: out.append(LintIssue("error", name, op, msg))  # noqa: E731
    inputs = list(node.input)
    if op in ("QuantizeLinear", "DequantizeLinear"):
        scale = graph.const(inputs[1]) if len(inputs) > 1 else None
        if scale is None:
            err("scale must be a constant (initializer)")
        elif np.any(np.asarray(scale) <= 0):
            err("scale must be positive")
        zp_name = inputs[2] if len(inputs) > 2 else ""
        zp = graph.const(zp_name)
        if not zp_name:
            if op == "QuantizeLinear" and _attr(node, "output_dtype", 0) in (0, 2):  # default uint8
                err("no zero point: the quantized type defaults to uint8; TensorRT needs int8 with zero point 0")
        elif zp is None:
            err("zero point must be a constant")
        else:
            if zp.dtype != np.int8:
                err(f"zero point type {zp.dtype} (TensorRT takes int8 only)")
            if np.any(zp != 0):
                err(f"asymmetric quantization: zero point(s) {np.unique(zp)[:4].tolist()} (TensorRT needs all 0)")
        if op == "DequantizeLinear":
            x = graph.const(inputs[0])
            if x is not None and x.dtype != np.int8:
                err(f"quantized weights of type {x.dtype} (TensorRT takes int8)")
    elif op == "TopK":
        limit = table["limits"]["TopK.max_k_exclusive"]
        k = np.asarray(_attr(node, "k", 1)) if ctx.opset < 10 else graph.const(inputs[1] if len(inputs) > 1 else "")
        if k is None:  # ITopKLayer::setInput(1): the 10.x / 11.x importer takes a computed K
            out.append(LintIssue("warning", name, op, f"K is computed at run time: TensorRT fails if it reaches {limit}"))
        elif int(np.asarray(k).reshape(-1)[0]) >= limit:
            err(f"K = {int(np.asarray(k).reshape(-1)[0])} but TensorRT needs K < {limit}")
        if int(_attr(node, "sorted", 1)) != 1:
            err("sorted must be 1")
    # NonMaxSuppression: max_output_boxes_per_class / iou_threshold / score_threshold may be computed tensors (the
    # 10.x importer converts any tensor with convertToScalar); its box budget is `_nms_box_budget_rule`.
    elif op == "ScatterND" and _attr(node, "reduction", b"none") not in (b"none", "none"):
        err("ScatterND reduction other than 'none' is unsupported")
    elif op == "MaxPool" and len(node.output) > 1 and node.output[1]:
        err("the Indices output of MaxPool is unsupported")
    axes_idx = _AXES_INPUT.get(op, 1 if op in _REDUCE_OPS else None)
    if axes_idx is not None and len(inputs) > axes_idx and inputs[axes_idx] and graph.const(inputs[axes_idx]) is None:
        err("axes must be a constant")
    return out


def _dynamic_dims(ctx: LintContext) -> list[LintIssue]:
    """Inputs: only axis 0 may be dynamic. Outputs: every dim static or the inputs' batch dim (after inference)."""
    proto, inferred = ctx.proto, ctx.inferred
    out: list[LintIssue] = []
    init_names = {t.name for t in proto.graph.initializer}
    batch_names: set[str] = set()
    for vi in proto.graph.input:
        if vi.name in init_names:
            continue
        for axis, d in enumerate(vi.type.tensor_type.shape.dim):
            dynamic = bool(d.dim_param) or d.dim_value <= 0
            if dynamic and axis == 0:
                batch_names.add(d.dim_param)
            elif dynamic:
                label = d.dim_param or "?"
                out.append(LintIssue("error", f"graph input {vi.name}", "",
                                     f"dynamic dimension {label!r} on axis {axis}: only the batch axis (0) can be "
                                     "covered by an optimization profile here; export a fixed input size"))
    declared = {vi.name: vi for vi in proto.graph.output}
    for vi in inferred.graph.output:
        dims = vi.type.tensor_type.shape.dim or declared[vi.name].type.tensor_type.shape.dim
        if not vi.type.tensor_type.HasField("shape"):
            out.append(LintIssue("error", f"graph output {vi.name}", "", "unknown rank: data-dependent output shape"))
            continue
        for axis, d in enumerate(dims):
            if d.dim_value > 0 or (d.dim_param and d.dim_param in batch_names):
                continue
            label = d.dim_param or "?"
            out.append(LintIssue("error", f"graph output {vi.name}", "",
                                 f"dimension {label!r} on axis {axis} is data-dependent (needs an IOutputAllocator); "
                                 "pad to a fixed size instead"))
    return out
