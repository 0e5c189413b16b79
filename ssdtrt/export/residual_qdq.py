"""Residual Q/DQ: quantize the skip input of every conv-fed Add, so TensorRT fuses the Add (and ReLU) into the conv.

NVIDIA's explicit-quantization guide ("quantize the residual input in skip-connections"), its pytorch-quantization
ResNet example (`out += self.residual_quantizer(identity)`) and modelopt all do this; onnxruntime's QDQ quantizer
(Q/DQ on Conv inputs only) does not. Without it TensorRT runs the conv with an FP32/FP16 output and a separate
Add + ReLU + Quantize kernel. Two cases:

- the residual is already quantized for another consumer (the block input feeding the next conv): the Add reads
  that DequantizeLinear's output (same scale, one Q/DQ pair, as modelopt places it);
- it is not (ResNet's downsample conv output, an Add of [Conv, Conv]): a new symmetric per-tensor Q/DQ pair, with
  the scale from the calibrated range of that tensor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ssdtrt.core.errors import ExportError
from ssdtrt.export.graph_regions import GraphIndex, residual_input

if TYPE_CHECKING:
    import onnx

#: Symmetric int8 activation range TensorRT uses ([-127, 127]; -128 is never produced).
INT8_ABS_MAX = 127


def symmetric_scale(range_lo: float, range_hi: float) -> np.float32:
    """Per-tensor int8 scale of a calibrated [lo, hi] range (absmax / 127; a zero range gets scale 1)."""
    absmax = max(abs(float(range_lo)), abs(float(range_hi)))
    return np.float32(absmax / INT8_ABS_MAX if absmax > 0 else 1.0)


def quantize_residuals(proto: onnx.ModelProto, ranges: dict[str, tuple[float, float]]) -> list[str]:
    """Give every conv-fed Add a DequantizeLinear on its residual input (in place); returns the Adds changed.

    `ranges` maps tensor names to calibrated (lo, hi); needed only for residuals no other node quantizes."""
    from onnx import helper, numpy_helper

    index = GraphIndex.of(proto)
    graph = proto.graph
    changed: list[str] = []
    new_nodes: dict[str, list[onnx.NodeProto]] = {}  # insert after the producer of the residual
    for add in index.nodes:
        res = residual_input(index, add) if add.op_type == "Add" else None
        if res is None or index.source_op(res) == "DequantizeLinear" or not branch_quantized(index, add, res):
            continue
        dq_out = _existing_dq(index, res)
        if dq_out is None:
            if res not in ranges:
                raise ExportError(f"residual Q/DQ: no calibrated range for {res!r} (input of {add.name})")
            scale, zero = f"{res}_residual_scale", f"{res}_residual_zero_point"
            graph.initializer.extend([
                numpy_helper.from_array(np.asarray(symmetric_scale(*ranges[res]), np.float32), scale),
                numpy_helper.from_array(np.asarray(0, np.int8), zero),
            ])
            q_out, dq_out = f"{res}_residual_q", f"{res}_residual_dq"
            new_nodes.setdefault(res, []).extend([
                helper.make_node("QuantizeLinear", [res, scale, zero], [q_out], name=f"{res}_residual_QuantizeLinear"),
                helper.make_node("DequantizeLinear", [q_out, scale, zero], [dq_out],
                                 name=f"{res}_residual_DequantizeLinear"),
            ])
            index.producer[dq_out] = new_nodes[res][-1]
        for k, name in enumerate(add.input):
            if name == res:
                add.input[k] = dq_out
        changed.append(add.name)
    if new_nodes:
        ordered: list[onnx.NodeProto] = []
        for n in graph.node:
            ordered.append(n)
            for o in n.output:
                ordered.extend(new_nodes.pop(o, ()))
        leftover = [n for nodes in new_nodes.values() for n in nodes]  # residuals that are graph inputs
        del graph.node[:]
        graph.node.extend(leftover + ordered)
    return changed


def branch_quantized(index: GraphIndex, add: onnx.NodeProto, residual: str) -> bool:
    """Whether the conv on the Add's other branch is quantized (reads a DequantizeLinear): a conv left float on
    purpose (mixed precision) fuses nothing, so its Add keeps a float residual and costs no extra rounding."""
    other = [a for a in index.activations(add) if a != residual]
    conv = index.producer.get(other[0]) if other else None
    return conv is not None and conv.op_type == "Conv" and index.source_op(conv.input[0]) == "DequantizeLinear"


def _existing_dq(index: GraphIndex, tensor: str) -> str | None:
    """The output of a QuantizeLinear → DequantizeLinear pair that already reads `tensor`, if any."""
    for q in index.consumers.get(tensor, ()):
        if q.op_type != "QuantizeLinear":
            continue
        for dq in index.consumers.get(q.output[0], ()):
            if dq.op_type == "DequantizeLinear":
                return dq.output[0]
    return None
