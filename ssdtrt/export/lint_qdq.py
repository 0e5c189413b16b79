"""Placement and precision rules for INT8 / FP16 graphs that TensorRT builds strongly typed (the ONNX decides).

`lint.py` checks that each Q/DQ node has the form TensorRT's parser takes; these rules check *where* Q/DQ and
casts sit, after NVIDIA's explicit-quantization guide and onnx-tensorrt's Q/DQ importer:

- errors (the parser rejects the graph, or TensorRT computes something else than ONNX Runtime):
  a per-channel weight DequantizeLinear not on axis 0 or with a scale count ≠ output channels; a per-channel
  (non-scalar) activation scale; an L2 norm or x² computed in fp16 (TensorRT squares in the input type:
  inf once |x| ≥ 256);
- warnings (it builds but runs slower or less exactly than it should):
  a quantized graph's Conv whose input or weight is not from a DequantizeLinear (float conv); a conv-fed Add whose
  other (residual) input is not from a DequantizeLinear (no Add fusion into the INT8 conv); fp32 → fp16 → fp32
  Cast round trips; int8 weights spanning only ±64 (7-bit `--reduce-range` weights, made for AVX2-only CPUs —
  for TensorRT they throw away a bit of weight precision for nothing).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ssdtrt.export.graph_regions import LAYOUT_OPS, GraphIndex, is_square, residual_input
from ssdtrt.export.lint_issue import LintIssue

if TYPE_CHECKING:
    import onnx

#: Targets the rules apply to; `reduce_range` weights are fine for OpenVINO on AVX2-only CPUs.
TARGETS = ("tensorrt", "openvino")
#: |q| of a 7-bit (reduce_range) symmetric weight: ORT maps weights to [-64, 64].
REDUCED_RANGE_MAX = 64
_NORM_OPS = ("ReduceL2", "ReduceSumSquare")
_WEIGHT_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def lint_qdq(proto: onnx.ModelProto, consts: dict[str, np.ndarray], *, target: str = "tensorrt") -> list[LintIssue]:
    """Placement issues of `proto`; `consts` maps constant tensor names (initializers, Constant nodes) to arrays."""
    index = GraphIndex.of(proto)
    quantized = any(n.op_type == "DequantizeLinear" for n in index.nodes)
    issues = [*_qdq_scales(index, consts), *_fp16_norms(index, proto), *_cast_round_trips(index)]
    if quantized:
        from ssdtrt.export.precision import declared_float_layers

        issues += [*_conv_inputs(index, declared_float_layers(proto)), *_residual_adds(index)]
        if target == "tensorrt":
            issues += _reduced_range_weights(index, consts)
    return issues


def _issue(severity: str, node: onnx.NodeProto, message: str) -> LintIssue:
    return LintIssue(severity, node.name or f"<{node.op_type}>", node.op_type, message)


def _qdq_scales(index: GraphIndex, consts: dict[str, np.ndarray]) -> list[LintIssue]:
    """Weight DQ per-channel on axis 0 with one scale per output channel; activation scales scalar."""
    out = []
    for node in index.nodes:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 2:
            continue
        scale = consts.get(node.input[1])
        if scale is None:
            continue
        data = _weight(index, consts, node)
        if data is None:  # an activation
            if scale.size != 1:
                out.append(_issue("error", node, f"activation scale has {scale.size} values: TensorRT quantizes "
                                                 "activations per tensor (one scalar scale)"))
            continue
        if node.op_type != "DequantizeLinear" or scale.size == 1:
            continue
        axis = int(next((a.i for a in node.attribute if a.name == "axis"), 1))
        users = [u for u in index.consumers.get(node.output[0], ()) if u.op_type in _WEIGHT_OPS]
        if not users or users[0].op_type not in ("Conv",):
            continue
        if axis not in (0, -data.ndim) or scale.size != data.shape[0]:
            out.append(_issue("error", node, f"per-channel weight scales on axis {axis} with {scale.size} values for "
                                             f"weights {list(data.shape)}: TensorRT needs axis 0 and one scale per "
                                             f"output channel ({data.shape[0]})"))
    return out


def _weight(index: GraphIndex, consts: dict[str, np.ndarray], node: onnx.NodeProto) -> np.ndarray | None:
    """The constant a Q or DQ node quantizes: its own input, or for DQ(Q(w)) (float weights, modelopt) the Q's."""
    data = consts.get(node.input[0])
    src = index.producer.get(node.input[0])
    if data is None and node.op_type == "DequantizeLinear" and src is not None and src.op_type == "QuantizeLinear":
        data = consts.get(src.input[0])
    return data


def _conv_inputs(index: GraphIndex, declared_float: set[str]) -> list[LintIssue]:
    """In a quantized graph every Conv reads its input and weight through DequantizeLinear, except the layers the
    graph's metadata declares float (mixed precision: `precision.mark_float_layers`), which read neither."""
    out = []
    for node in index.nodes:
        if node.op_type != "Conv":
            continue
        missing = [what for what, name in (("input", node.input[0]), ("weight", node.input[1]))
                   if index.source_op(name) != "DequantizeLinear"]
        if len(missing) == 2 and node.name in declared_float:
            continue
        if missing:
            out.append(_issue("warning", node, f"{' and '.join(missing)} not from a DequantizeLinear: TensorRT runs "
                                               "this conv in float inside an INT8 graph"))
    return out


def _residual_adds(index: GraphIndex) -> list[LintIssue]:
    """A conv-fed Add (of a quantized conv) needs its other input from a DequantizeLinear to fuse into the conv."""
    out = []
    for node in index.nodes:
        if node.op_type != "Add":
            continue
        res = residual_input(index, node)
        if res is None or index.source_op(res) == "DequantizeLinear":
            continue
        convs = [index.producer[a] for a in index.activations(node) if a != res and index.source_op(a) == "Conv"]
        if convs and index.source_op(convs[0].input[0]) == "DequantizeLinear":
            src = index.producer.get(res)
            out.append(_issue("warning", node, f"residual input {res!r} ({src.op_type if src else 'graph input'}) is "
                                               "not from a DequantizeLinear: TensorRT cannot fuse this Add into the "
                                               "INT8 conv (quantize the skip input)"))
    return out


def _elem_types(proto: onnx.ModelProto) -> dict[str, int]:
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(proto)
    except Exception:  # noqa: BLE001 - rules that need types are skipped for tensors without one
        inferred = proto
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*g.value_info, *g.input, *g.output)}
    types.update({t.name: t.data_type for t in g.initializer})
    for n in g.node:
        if n.op_type == "Constant":
            types.update({o: a.t.data_type for a in n.attribute if a.name == "value" for o in n.output})
    return types


def _fp16_norms(index: GraphIndex, proto: onnx.ModelProto) -> list[LintIssue]:
    """ReduceL2 / ReduceSumSquare / x·x / Pow(x, 2) on an fp16 tensor: TensorRT squares in fp16."""
    from onnx import TensorProto

    candidates = [n for n in index.nodes if n.op_type in _NORM_OPS or is_square(index, n)]
    if not candidates:
        return []
    types = _elem_types(proto)
    msg = "squares an fp16 tensor (TensorRT imports L2 norms as x·x → sum): inf once |x| ≥ 256; keep it in fp32"
    return [_issue("error", n, msg)
            for n in candidates if types.get(n.input[0]) == TensorProto.FLOAT16]


def _cast_to(node: onnx.NodeProto) -> int | None:
    return next((a.i for a in node.attribute if a.name == "to"), None) if node.op_type == "Cast" else None


def _cast_round_trips(index: GraphIndex) -> list[LintIssue]:
    """Cast(fp16) whose result reaches a Cast(fp32) through layout-only ops: fp16 rounding for nothing."""
    from onnx import TensorProto

    out = []
    for node in index.nodes:
        if _cast_to(node) != TensorProto.FLOAT16:
            continue
        frontier, back = list(node.output), None
        while frontier and back is None:
            nxt = []
            for t in frontier:
                for user in index.consumers.get(t, ()):
                    if _cast_to(user) == TensorProto.FLOAT:
                        back = user
                    elif user.op_type in LAYOUT_OPS or user.op_type in ("Concat", "Slice", "Gather", "Split"):
                        nxt.extend(user.output)
            frontier = nxt
        if back is not None:
            out.append(_issue("warning", node, f"fp32 → fp16 → fp32 round trip (cast back by {back.name!r}): the "
                                               "values lose fp16 precision and gain nothing; keep them fp32"))
    return out


def _reduced_range_weights(index: GraphIndex, consts: dict[str, np.ndarray]) -> list[LintIssue]:
    """int8 weights within ±64 on every quantized layer: 7-bit `--reduce-range` weights, one warning for the graph."""
    spans = []
    for node in index.nodes:
        if node.op_type != "DequantizeLinear":
            continue
        w = consts.get(node.input[0])
        if w is None or w.dtype != np.int8 or w.size < 2:
            continue
        if any(u.op_type in _WEIGHT_OPS for u in index.consumers.get(node.output[0], ())):
            spans.append((node, int(np.abs(w.astype(np.int16)).max())))
    narrow = [n for n, m in spans if 0 < m <= REDUCED_RANGE_MAX]
    if not narrow:
        return []
    return [_issue("warning", narrow[0], f"int8 weights of {len(narrow)} of {len(spans)} quantized layers span only "
                                         f"±{REDUCED_RANGE_MAX} (7-bit --reduce-range weights, meant for AVX2-only "
                                         "CPUs): TensorRT loses a bit of weight precision for nothing; re-export "
                                         "without --reduce-range")]
