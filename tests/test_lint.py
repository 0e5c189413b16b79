"""`ssdtrt lint`: every export mode and precision is clean; deliberately broken graphs are flagged by node."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from ssdtrt.export.calibration import CalibrationConfig
from ssdtrt.export.lint import lint_onnx, supported_ops_table
from ssdtrt.export.onnx_export import export_model
from ssdtrt.model.ssd import build_model


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(2)
    return build_model("ssd-small").eval()


@pytest.mark.parametrize(
    "mode,precision,dynamic",
    [("raw", "fp32", False), ("decoded", "fp32", True), ("nms", "fp32", True), ("raw", "fp16", True),
     ("nms", "fp16", False), ("decoded", "int8", True), ("nms", "int8", False)],
)
def test_every_export_lints_clean(model, tmp_path_factory, mode, precision, dynamic) -> None:
    tmp = tmp_path_factory.mktemp("lint")
    cfg = CalibrationConfig("synthetic", num_images=4, cache_dir=tmp / "c") if precision == "int8" else None
    res = export_model(model, tmp / "m.onnx", mode=mode, precision=precision, dynamic_batch=dynamic, calibration=cfg)
    report = lint_onnx(res.onnx_path)
    assert report.ok, [str(i) for i in report.issues]
    assert not report.issues


def test_table_has_its_source_and_the_ops_we_emit() -> None:
    table = supported_ops_table()
    assert "onnx-tensorrt" in table["source"] and table["opset_min"] <= 17 <= table["opset_max"]
    ops = table["operators"]
    for op in ("Conv", "NonMaxSuppression", "TopK", "ScatterND", "GatherElements", "QuantizeLinear", "Softmax"):
        assert ops[op]["supported"], op
    assert not ops["Unique"]["supported"]


def _model(nodes, inputs, outputs, inits=(), opset=17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _x(shape=("batch", 3, 8, 8)):
    return helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))


def _issues(proto, severity="error"):
    return [i for i in lint_onnx(proto).issues if i.severity == severity]


def test_asymmetric_and_uint8_qdq_flagged() -> None:
    inits = [
        numpy_helper.from_array(np.array(0.1, np.float32), "s"),
        numpy_helper.from_array(np.array(3, np.int8), "zp_asym"),
        numpy_helper.from_array(np.array(0, np.uint8), "zp_u8"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "zp_asym"], ["q1"], name="q_asym"),
        helper.make_node("DequantizeLinear", ["q1", "s", "zp_asym"], ["d1"], name="dq_asym"),
        helper.make_node("QuantizeLinear", ["d1", "s", "zp_u8"], ["q2"], name="q_uint8"),
        helper.make_node("DequantizeLinear", ["q2", "s", "zp_u8"], ["y"], name="dq_uint8"),
    ]
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, 8, 8])
    errs = _issues(_model(nodes, [_x()], [y], inits))
    flagged = {(i.node, "asymmetric" in i.message, "uint8" in i.message) for i in errs}
    assert ("q_asym", True, False) in flagged and ("dq_asym", True, False) in flagged
    assert ("q_uint8", False, True) in flagged and ("dq_uint8", False, True) in flagged


def test_unsupported_and_custom_ops_flagged() -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="fine"),
        helper.make_node("Unique", ["r"], ["u"], name="the_unique"),
        helper.make_node("MyPlugin", ["r"], ["p"], name="plugin", domain="com.example"),
    ]
    outs = [helper.make_tensor_value_info("u", TensorProto.FLOAT, [None]),
            helper.make_tensor_value_info("p", TensorProto.FLOAT, ["batch", 3, 8, 8])]
    proto = _model(nodes, [_x()], outs)
    proto.opset_import.append(helper.make_opsetid("com.example", 1))
    errs = _issues(proto)
    by_node = {i.node: i.message for i in errs}
    assert "not supported" in by_node["the_unique"]
    assert "plugin" in by_node["plugin"]
    assert "fine" not in by_node
    assert any(i.node == "graph output u" and "data-dependent" in i.message for i in errs)


def test_dynamic_spatial_size_flagged_batch_allowed() -> None:
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, "h", "w"])
    proto = _model([helper.make_node("Relu", ["x"], ["y"], name="r")], [_x(("batch", 3, "h", "w"))], [y])
    errs = _issues(proto)
    inputs = [i for i in errs if i.node == "graph input x"]
    assert {("axis 2" in i.message) or ("axis 3" in i.message) for i in inputs} == {True} and len(inputs) == 2
    ok = _model([helper.make_node("Relu", ["x"], ["y"], name="r")], [_x()],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, 8, 8])])
    assert lint_onnx(ok).ok


def test_nonzero_output_and_big_topk_flagged() -> None:
    k = numpy_helper.from_array(np.array([5000], np.int64), "k")
    nodes = [
        helper.make_node("Flatten", ["x"], ["f"], name="flat", axis=0),
        helper.make_node("TopK", ["f", "k"], ["v", "i"], name="big_topk", axis=1),
        helper.make_node("NonZero", ["x"], ["nz"], name="nonzero"),
    ]
    outs = [helper.make_tensor_value_info("v", TensorProto.FLOAT, [1, 5000]),
            helper.make_tensor_value_info("nz", TensorProto.INT64, [4, None])]
    errs = _issues(_model(nodes, [_x((1, 3, 40, 50))], outs, [k]))
    assert any(i.node == "big_topk" and "3840" in i.message for i in errs)
    assert any(i.node == "graph output nz" and "data-dependent" in i.message for i in errs)


def test_opset_out_of_range_flagged() -> None:
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, 8, 8])
    proto = _model([helper.make_node("Relu", ["x"], ["y"], name="r")], [_x()], [y], opset=7)
    assert any("opset 7" in i.message for i in _issues(proto))
