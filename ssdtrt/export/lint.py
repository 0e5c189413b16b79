"""TensorRT ONNX-parser lint without TensorRT: will `trtexec --onnx` / `OnnxParser` accept this graph?

Checks (each problem names the node): every op in TensorRT's supported-operator list (`trt_supported_ops.json`,
taken from onnx-tensorrt's docs/operators.md) and the opset in its range; custom domains need plugins; explicit
quantization in the only form TensorRT takes (QuantizeLinear / DequantizeLinear with int8 and zero points all 0,
constant scales); operator restrictions that matter here (TopK K a constant < 3840 and sorted, NMS thresholds and
Slice / Unsqueeze / Squeeze / Reduce axes constants, ScatterND without reduction); dynamic dimensions only on the
batch axis of inputs (what an optimization profile covers); graph outputs with no data-dependent dimensions.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ssdtrt.errors import ManifestError

if TYPE_CHECKING:
    import onnx

_AXES_INPUT = {"Slice": 3, "Unsqueeze": 1, "Squeeze": 1}  # op → index of an `axes` input that must be constant
_REDUCE_OPS = ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin",
               "ReduceProd", "ReduceSum", "ReduceSumSquare")


@dataclass(frozen=True)
class LintIssue:
    severity: str  # error | warning
    node: str  # node name (or "graph input X" / "graph output X" / "model")
    op_type: str
    message: str

    def __str__(self) -> str:
        where = f"{self.node} ({self.op_type})" if self.op_type else self.node
        return f"{self.severity}: {where}: {self.message}"


@dataclass
class LintReport:
    path: str
    opset: int
    num_nodes: int
    op_counts: dict[str, int]
    issues: list[LintIssue] = field(default_factory=list)
    source: str = ""

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
            "path": self.path, "ok": self.ok, "opset": self.opset, "num_nodes": self.num_nodes,
            "op_counts": self.op_counts, "source": self.source,
            "issues": [i.__dict__ for i in self.issues],
        }


def supported_ops_table() -> dict[str, Any]:
    """The packaged TensorRT operator table (see its `source`)."""
    text = resources.files("ssdtrt.export").joinpath("trt_supported_ops.json").read_text(encoding="utf-8")
    return json.loads(text)


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


def lint_onnx(model: str | os.PathLike[str] | onnx.ModelProto) -> LintReport:
    """Lint an ONNX file or ModelProto; `report.ok` is False when TensorRT's parser would reject it."""
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
    table = supported_ops_table()
    ops = table["operators"]
    issues: list[LintIssue] = []
    add = lambda sev, node, op, msg: issues.append(LintIssue(sev, node, op, msg))  # noqa: E731

    opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if not table["opset_min"] <= opset <= table["opset_max"]:
        add("error", "model", "", f"opset {opset} outside TensorRT's range {table['opset_min']}..{table['opset_max']}")
    graph = _Graph(proto)
    counts: dict[str, int] = {}
    for i, node in enumerate(proto.graph.node):
        name = _node_name(node, i)
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
        if node.domain not in ("", "ai.onnx"):
            add("error", name, node.op_type, f"custom domain {node.domain!r} needs a TensorRT plugin")
            continue
        entry = ops.get(node.op_type)
        if entry is None or not entry["supported"]:
            add("error", name, node.op_type, "operator not supported by the TensorRT ONNX parser")
            continue
        issues += _node_rules(node, name, graph, table)
    issues += _dynamic_dims(proto)
    from ssdtrt.export.lint_qdq import lint_qdq  # Q/DQ placement and fp16/fp32 rules (own module)

    issues += lint_qdq(proto, graph.consts)
    return LintReport(path, opset, len(proto.graph.node), dict(sorted(counts.items())), issues, table.get("source", ""))


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _node_rules(node: onnx.NodeProto, name: str, graph: _Graph, table: dict[str, Any]) -> list[LintIssue]:
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
        k = graph.const(inputs[1]) if len(inputs) > 1 else None
        limit = table.get("limits", {}).get("TopK.max_k_exclusive", 3840)
        if k is None:
            err("K must be a constant")
        elif int(np.asarray(k).reshape(-1)[0]) >= limit:
            err(f"K = {int(np.asarray(k).reshape(-1)[0])} but TensorRT needs K < {limit}")
        if int(_attr(node, "sorted", 1)) != 1:
            err("sorted must be 1")
    elif op == "NonMaxSuppression":
        for idx, what in ((2, "max_output_boxes_per_class"), (3, "iou_threshold"), (4, "score_threshold")):
            if len(inputs) > idx and inputs[idx] and graph.const(inputs[idx]) is None:
                err(f"{what} must be a constant")
    elif op == "ScatterND" and _attr(node, "reduction", b"none") not in (b"none", "none"):
        err("ScatterND reduction other than 'none' is unsupported")
    elif op == "MaxPool" and len(node.output) > 1 and node.output[1]:
        err("the Indices output of MaxPool is unsupported")
    axes_idx = _AXES_INPUT.get(op, 1 if op in _REDUCE_OPS else None)
    if axes_idx is not None and len(inputs) > axes_idx and inputs[axes_idx] and graph.const(inputs[axes_idx]) is None:
        err("axes must be a constant")
    return out


def _dynamic_dims(proto: onnx.ModelProto) -> list[LintIssue]:
    """Inputs: only axis 0 may be dynamic. Outputs: every dim static or the inputs' batch dim (after inference)."""
    import onnx

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
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    except Exception:  # noqa: BLE001 - lint what we can without inference
        inferred = proto
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
