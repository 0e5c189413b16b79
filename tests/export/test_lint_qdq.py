"""Q/DQ placement and fp16/fp32 lint rules (`ssdtrt.export.lint_qdq`): each deliberately broken graph is flagged at
the right node, its fixed twin is not."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ssdtrt.export.lint import lint_onnx
from ssdtrt.export.lint_qdq import lint_qdq

RNG = np.random.default_rng(0)


def _model(nodes, inits, out_shape=(1, 8, 8, 8), in_type=TensorProto.FLOAT, out_type=TensorProto.FLOAT, opset=19):
    x = helper.make_tensor_value_info("x", in_type, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", out_type, list(out_shape))
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=list(inits))
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _consts(proto):
    return {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}


def _flagged(proto, severity=None, target="tensorrt"):
    """{node name: message} of the placement rules' issues."""
    return {i.node: i.message for i in lint_qdq(proto, _consts(proto), target=target)
            if severity is None or i.severity == severity}


def _act_qdq(src: str, name: str, scale=0.05, axis_scales: int = 0):
    """Q/DQ on an activation (scalar scale, or `axis_scales` per-channel scales on axis 1 — the broken form)."""
    s = np.full(axis_scales, scale, np.float32) if axis_scales else np.array(scale, np.float32)
    z = np.zeros(axis_scales, np.int8) if axis_scales else np.array(0, np.int8)
    inits = [numpy_helper.from_array(s, f"{name}_s"), numpy_helper.from_array(z, f"{name}_z")]
    kw = {"axis": 1} if axis_scales else {}
    nodes = [helper.make_node("QuantizeLinear", [src, f"{name}_s", f"{name}_z"], [f"{name}_q"], name=f"{name}_Q", **kw),
             helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_z"], [f"{name}_dq"],
                              name=f"{name}_DQ", **kw)]
    return nodes, inits


def _weight_dq(name: str, c_out: int, c_in: int, *, axis: int = 0, n_scales: int | None = None, qmax: int = 127):
    """An int8 conv weight [c_out, c_in, 3, 3] with per-channel scales: `axis` / `n_scales` make broken variants."""
    w = RNG.integers(-qmax, qmax + 1, size=(c_out, c_in, 3, 3)).astype(np.int8)
    w[:, 0, 0, 0] = qmax  # every channel reaches its range (as symmetric min/max weights do)
    n = c_out if n_scales is None else n_scales
    inits = [numpy_helper.from_array(w, f"{name}_w"), numpy_helper.from_array(np.full(n, 0.01, np.float32), f"{name}_ws"),
             numpy_helper.from_array(np.zeros(n, np.int8), f"{name}_wz")]
    node = helper.make_node("DequantizeLinear", [f"{name}_w", f"{name}_ws", f"{name}_wz"], [f"{name}_wdq"],
                            name=f"{name}_weight_DQ", axis=axis)
    return [node], inits


def _qconv(src: str, name: str, c_in: int = 3, c_out: int = 8, **weight_kw):
    """DQ(activation) + DQ(weight) → Conv 3×3 pad 1 → `{name}_y`."""
    n1, i1 = _act_qdq(src, f"{name}_in")
    n2, i2 = _weight_dq(name, c_out, c_in, **weight_kw)
    conv = helper.make_node("Conv", [f"{name}_in_dq", f"{name}_wdq"], [f"{name}_y"], name=name, pads=[1, 1, 1, 1])
    return [*n1, *n2, conv], [*i1, *i2]


def _qconv_graph(**weight_kw):
    nodes, inits = _qconv("x", "conv", **weight_kw)
    nodes.append(helper.make_node("Relu", ["conv_y"], ["y"], name="relu"))
    return _model(nodes, inits)


def test_good_quantized_conv_is_clean() -> None:
    proto = _qconv_graph()
    assert _flagged(proto) == {}
    assert lint_onnx(proto).ok and not lint_onnx(proto).issues


def test_weight_dq_on_wrong_axis_flagged() -> None:
    """64 scales on the 3-channel axis 1 (default axis of DequantizeLinear): TensorRT's parser rejects it."""
    nodes, inits = _qconv("x", "conv", c_in=3, c_out=64, axis=1, n_scales=3)
    nodes.append(helper.make_node("Relu", ["conv_y"], ["y"], name="relu"))
    proto = _model(nodes, inits, out_shape=(1, 64, 8, 8))
    errors = _flagged(proto, "error")
    assert list(errors) == ["conv_weight_DQ"] and "axis 1" in errors["conv_weight_DQ"]
    assert not lint_onnx(proto).ok


def test_weight_scale_count_not_output_channels_flagged() -> None:
    proto = _qconv_graph(n_scales=4)  # 4 scales for 8 output channels, axis 0
    errors = _flagged(proto, "error")
    assert list(errors) == ["conv_weight_DQ"] and "(8)" in errors["conv_weight_DQ"]


def test_per_channel_activation_scale_flagged() -> None:
    n1, i1 = _act_qdq("x", "act", axis_scales=3)
    n2, i2 = _weight_dq("conv", 8, 3)
    nodes = [*n1, *n2, helper.make_node("Conv", ["act_dq", "conv_wdq"], ["y"], name="conv", pads=[1, 1, 1, 1])]
    errors = _flagged(_model(nodes, [*i1, *i2]), "error")
    assert set(errors) == {"act_Q", "act_DQ"} and all("per tensor" in m for m in errors.values())


def test_conv_input_not_from_dq_flagged() -> None:
    n2, i2 = _weight_dq("conv", 8, 3)
    n3, i3 = _qconv("x", "ok_conv")  # makes the graph a quantized one
    nodes = [*n2, helper.make_node("Conv", ["x", "conv_wdq"], ["c"], name="float_input_conv", pads=[1, 1, 1, 1]),
             *n3, helper.make_node("Add", ["c", "ok_conv_y"], ["y"], name="add")]
    warnings = _flagged(_model(nodes, [*i2, *i3]), "warning")
    assert "float_input_conv" in warnings and "input not from a DequantizeLinear" in warnings["float_input_conv"]
    assert "ok_conv" not in warnings


def test_residual_add_not_from_dq_flagged() -> None:
    """Add(conv, identity) with the identity straight from the block input, and Add(conv, conv) (downsample)."""
    n1, i1 = _qconv("x", "stem")
    n1.append(helper.make_node("Relu", ["stem_y"], ["block_in"], name="stem_relu"))
    n2, i2 = _qconv("block_in", "main1", c_in=8)
    n3, i3 = _qconv("main1_y", "main2", c_in=8)
    n4, i4 = _qconv("block_in", "down", c_in=8)
    nodes = [*n1, *n2, *n3, *n4,
             helper.make_node("Add", ["main2_y", "block_in"], ["a1"], name="identity_add"),
             helper.make_node("Add", ["main2_y", "down_y"], ["a2"], name="downsample_add"),
             helper.make_node("Add", ["a1", "a2"], ["y"], name="plain_add")]
    warnings = _flagged(_model(nodes, [*i1, *i2, *i3, *i4]), "warning")
    assert "'block_in'" in warnings["identity_add"] and "'down_y'" in warnings["downsample_add"]
    assert "plain_add" not in warnings  # no conv feeds it

    # fixed: both residuals read a DequantizeLinear → clean
    n5, i5 = _act_qdq("down_y", "down_res")
    fixed = [*n1, *n2, *n3, *n4, *n5,
             helper.make_node("Add", ["main2_y", "main1_in_dq"], ["a1"], name="identity_add"),
             helper.make_node("Add", ["main2_y", "down_res_dq"], ["a2"], name="downsample_add"),
             helper.make_node("Add", ["a1", "a2"], ["y"], name="plain_add")]
    assert _flagged(_model(fixed, [*i1, *i2, *i3, *i4, *i5])) == {}


@pytest.mark.parametrize("form", ["ReduceL2", "ReduceSumSquare", "MulSelf", "Pow2"])
def test_fp16_l2_norm_flagged_fp32_not(form) -> None:
    def graph(dtype: int):
        inits = [numpy_helper.from_array(np.array([1], np.int64), "axes")]
        if form == "Pow2":
            inits.append(numpy_helper.from_array(np.array(2, np.float16 if dtype == TensorProto.FLOAT16 else np.float32),
                                                 "two"))
        cast = helper.make_node("Cast", ["x"], ["xc"], name="cast", to=dtype)
        if form in ("ReduceL2", "ReduceSumSquare"):
            sq = [helper.make_node(form, ["xc", "axes"], ["n"], name="norm", keepdims=1)]
        else:
            op = helper.make_node("Mul", ["xc", "xc"], ["sq"], name="norm") if form == "MulSelf" else \
                helper.make_node("Pow", ["xc", "two"], ["sq"], name="norm")
            sq = [op, helper.make_node("ReduceSum", ["sq", "axes"], ["n"], name="sum", keepdims=1)]
        back = helper.make_node("Cast", ["n"], ["y"], name="out", to=TensorProto.FLOAT)
        return _model([cast, *sq, back], inits, out_shape=(1, 1, 8, 8))

    errors = _flagged(graph(TensorProto.FLOAT16), "error")
    assert list(errors) == ["norm"] and "|x| ≥ 256" in errors["norm"]
    assert _flagged(graph(TensorProto.FLOAT)) == {}


def test_cast_round_trip_flagged() -> None:
    shape = numpy_helper.from_array(np.array([1, 3, 64], np.int64), "shape")
    nodes = [helper.make_node("Softmax", ["x"], ["p"], name="softmax", axis=1),
             helper.make_node("Cast", ["p"], ["p16"], name="to_fp16", to=TensorProto.FLOAT16),
             helper.make_node("Reshape", ["p16", "shape"], ["r16"], name="reshape"),
             helper.make_node("Cast", ["r16"], ["y"], name="to_fp32", to=TensorProto.FLOAT)]
    warnings = _flagged(_model(nodes, [shape], out_shape=(1, 3, 64)), "warning")
    assert list(warnings) == ["to_fp16"] and "'to_fp32'" in warnings["to_fp16"]
    # a real fp16 computation between the casts is not a round trip
    nodes[2] = helper.make_node("Relu", ["p16"], ["r16"], name="fp16_work")
    assert _flagged(_model(nodes, [], out_shape=(1, 3, 8, 8))) == {}


def test_reduced_range_weights_flagged_for_tensorrt_only() -> None:
    narrow = _qconv_graph(qmax=64)
    warnings = _flagged(narrow, "warning")
    assert list(warnings) == ["conv_weight_DQ"] and "--reduce-range" in warnings["conv_weight_DQ"]
    assert _flagged(narrow, target="openvino") == {}
    assert _flagged(_qconv_graph(qmax=127)) == {}
