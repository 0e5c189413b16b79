"""Mixed-precision variants of a quantized graph without re-quantizing: chosen layers read float again.

Sensitivity needs two graphs per layer (that layer alone INT8; every layer but that one INT8) — 130 graphs for
SSD300-ResNet50. Re-running onnxruntime's quantizer for each costs seconds to minutes; rewiring the INT8 graph
costs milliseconds. A layer left float reads the tensor its input Q/DQ pair rounded and its FP32 weight (from the
FP32 graph, by node name); an Add whose conv branch is float reads its residual unrounded — exactly what
`quantize_int8` with `CalibrationConfig.float_layers` produces (`branch_quantized`; the test
`tests/export/test_int8_fallback.py` compares both).

The *head graph* of any export mode is the body up to the head concatenations (`locs`, `logits`): SQNR is measured
there, before box decoding and NMS turn small errors into discrete changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ssdtrt.core.errors import ExportError
from ssdtrt.export.graph_regions import GraphIndex, head_concats, residual_input
from ssdtrt.export.residual_qdq import branch_quantized

if TYPE_CHECKING:
    import onnx

#: Ops whose inputs `quantize_int8` quantizes (precision.INT8_OP_TYPES; repeated to keep this module light).
_WEIGHT_OPS = ("Conv", "Gemm", "MatMul")


def quantized_layers(proto: onnx.ModelProto) -> list[str]:
    """Names of the Conv/Gemm/MatMul nodes that read their input through a DequantizeLinear, in graph order."""
    index = GraphIndex.of(proto)
    return [n.name for n in index.nodes
            if n.op_type in _WEIGHT_OPS and index.source_op(n.input[0]) == "DequantizeLinear"]


def _unrounded(index: GraphIndex, tensor: str) -> str:
    """x for the output of DequantizeLinear(QuantizeLinear(x)); the tensor itself otherwise."""
    dq = index.producer.get(tensor)
    if dq is None or dq.op_type != "DequantizeLinear":
        return tensor
    q = index.producer.get(dq.input[0])
    return q.input[0] if q is not None and q.op_type == "QuantizeLinear" else tensor


def unround_inputs(proto: onnx.ModelProto, layers: Iterable[str]) -> onnx.ModelProto:
    """Make `layers` read their input unrounded, and Adds whose conv branch is float their residual (in place).

    onnxruntime's quantizer points every consumer of a tensor it quantizes for one node at the DequantizeLinear —
    excluded nodes and residual Adds too — so a float layer would read an INT8-rounded input (and `ssdtrt lint`
    would see a DQ-fed conv with a float weight)."""
    wanted = set(layers)
    index = GraphIndex.of(proto)
    for node in proto.graph.node:
        if node.name in wanted:
            node.input[0] = _unrounded(index, node.input[0])
    index = GraphIndex.of(proto)
    for add in proto.graph.node:
        res = residual_input(index, add) if add.op_type == "Add" else None
        if res is None or index.source_op(res) != "DequantizeLinear" or branch_quantized(index, add, res):
            continue
        for k, name in enumerate(add.input):
            if name == res:
                add.input[k] = _unrounded(index, res)
    return prune(proto)


def float_variant(int8: onnx.ModelProto, fp32: onnx.ModelProto, float_layers: Iterable[str]) -> onnx.ModelProto:
    """A copy of `int8` in which `float_layers` (node names) compute in float with their FP32 weights."""
    import onnx

    wanted = set(float_layers)
    out = onnx.ModelProto()
    out.CopyFrom(int8)
    if not wanted:
        return out
    fp32_nodes = {n.name: n for n in fp32.graph.node if n.op_type in _WEIGHT_OPS}
    fp32_inits = {t.name: t for t in fp32.graph.initializer}
    missing = sorted(wanted - set(fp32_nodes))
    if missing:
        raise ExportError(f"layers not in the FP32 graph: {', '.join(missing[:5])}")
    have = {t.name for t in out.graph.initializer}
    for node in out.graph.node:
        if node.name not in wanted:
            continue
        src = fp32_nodes[node.name]
        node.input[1] = src.input[1]
        if src.input[1] not in have:
            if src.input[1] not in fp32_inits:
                raise ExportError(f"{node.name}: its FP32 weight {src.input[1]!r} is not an initializer")
            out.graph.initializer.append(fp32_inits[src.input[1]])
            have.add(src.input[1])
    return unround_inputs(out, wanted)


def head_graph(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `proto` whose outputs are the head concatenations (`locs`, `logits` order), tail pruned."""
    import onnx
    from onnx import TensorProto, helper

    out = onnx.ModelProto()
    out.CopyFrom(proto)
    concats = head_concats(GraphIndex.of(out))
    if len(concats) != 2:
        raise ExportError(f"expected 2 head concatenations (locs, logits), found {len(concats)}")
    del out.graph.output[:]
    out.graph.output.extend(helper.make_tensor_value_info(c.output[0], TensorProto.FLOAT, None) for c in concats)
    return prune(out)


def prune(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Drop (in place) the nodes and initializers no graph output depends on."""
    g = proto.graph
    producer = {o: n for n in g.node for o in n.output}
    needed: set[str] = set()
    stack = [o.name for o in g.output]
    keep_ids: set[int] = set()
    while stack:
        t = stack.pop()
        if t in needed:
            continue
        needed.add(t)
        node = producer.get(t)
        if node is not None and id(node) not in keep_ids:
            keep_ids.add(id(node))
            stack.extend(i for i in node.input if i)
            stack.extend(_subgraph_inputs(node))
    nodes = [n for n in g.node if id(n) in keep_ids]
    inits = [t for t in g.initializer if t.name in needed]
    del g.node[:]
    g.node.extend(nodes)
    del g.initializer[:]
    g.initializer.extend(inits)
    return proto


def _subgraph_inputs(node: onnx.NodeProto) -> list[str]:
    """Outer-scope names read inside If/Loop bodies (the NMS tail has none, but stay correct)."""
    names: list[str] = []
    for a in node.attribute:
        for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
            names.extend(i for n in sub.node for i in n.input if i)
    return names
