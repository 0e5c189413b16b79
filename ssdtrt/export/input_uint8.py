"""`export --input uint8-nhwc`: the decoded image goes into the ONNX as it comes out of the reader (uint8, NHWC, RGB,
network size) and the graph does Cast → channel order → x * scale - shift → NHWC→NCHW, with exactly the float32
constants and arithmetic of `ssdtrt.preprocess.host.normalize_batch` (so ONNX Runtime gives the host path's
numbers). A quarter of the host→device bytes, and the normalization runs on the GPU under TensorRT.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ssdtrt.core.config import Preprocess
from ssdtrt.core.errors import ExportError

if TYPE_CHECKING:
    import onnx

#: Node names of the prepended preprocess start with this (fp16 / int8 conversion happen before it is added).
PREPROCESS_PREFIX = "preprocess/"
#: The reader's channel order (`ssdtrt.io.images` decodes to RGB).
READER_ORDER = "RGB"


def prepend_uint8_input(proto: onnx.ModelProto, spec: Preprocess, input_name: str = "images") -> onnx.ModelProto:
    """`proto` with its float NCHW input `input_name` replaced by a uint8 NHWC input of the same name."""
    from onnx import TensorProto, helper, numpy_helper

    from ssdtrt.preprocess.host import normalization_constants

    graph = proto.graph
    old = next((vi for vi in graph.input if vi.name == input_name), None)
    if old is None:
        raise ExportError(f"the graph has no input {input_name!r}")
    dims = old.type.tensor_type.shape.dim
    if len(dims) != 4:
        raise ExportError(f"input {input_name!r} has rank {len(dims)}, expected NCHW")
    inner = f"{PREPROCESS_PREFIX}normalized"
    for node in graph.node:
        node.input[:] = [inner if name == input_name else name for name in node.input]
    scale, shift = normalization_constants(spec)
    consts = {"scale": scale, "shift": shift}
    nodes = [helper.make_node("Cast", [input_name], [f"{PREPROCESS_PREFIX}float"], name=f"{PREPROCESS_PREFIX}Cast",
                              to=TensorProto.FLOAT)]
    current = f"{PREPROCESS_PREFIX}float"
    if spec.channel_order != READER_ORDER:  # the network wants BGR: reverse the reader's RGB channels
        consts["bgr"] = np.asarray([2, 1, 0], dtype=np.int64)
        nodes.append(helper.make_node("Gather", [current, f"{PREPROCESS_PREFIX}bgr"], [f"{PREPROCESS_PREFIX}ordered"],
                                      name=f"{PREPROCESS_PREFIX}Gather", axis=3))
        current = f"{PREPROCESS_PREFIX}ordered"
    nodes += [
        helper.make_node("Mul", [current, f"{PREPROCESS_PREFIX}scale"], [f"{PREPROCESS_PREFIX}scaled"],
                         name=f"{PREPROCESS_PREFIX}Mul"),
        helper.make_node("Sub", [f"{PREPROCESS_PREFIX}scaled", f"{PREPROCESS_PREFIX}shift"], [f"{PREPROCESS_PREFIX}nhwc"],
                         name=f"{PREPROCESS_PREFIX}Sub"),
        helper.make_node("Transpose", [f"{PREPROCESS_PREFIX}nhwc"], [inner], name=f"{PREPROCESS_PREFIX}Transpose",
                         perm=[0, 3, 1, 2]),
    ]
    graph.initializer.extend(numpy_helper.from_array(v, f"{PREPROCESS_PREFIX}{k}") for k, v in consts.items())
    batch = dims[0].dim_param or dims[0].dim_value
    new_input = helper.make_tensor_value_info(input_name, TensorProto.UINT8, [batch, spec.height, spec.width, 3])
    index = list(graph.input).index(old)
    graph.input.remove(old)
    graph.input.insert(index, new_input)
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + existing)
    return proto
