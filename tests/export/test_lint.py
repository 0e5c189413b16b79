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


# the batch-axis choices tests/export/test_matrix_lint.py does not make (it exports raw static, the others dynamic)
@pytest.mark.parametrize(
    "mode,precision,dynamic",
    [("raw", "fp16", True), ("nms", "fp16", False), ("nms", "int8", False)],
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


# --- per-major operator table (TensorRT 10 vs 11) and the rules the 10.x / 11.x importer relaxed -----------------


def _lint_both(proto):
    return {major: lint_onnx(proto, trt_major=major) for major in (10, 11)}


def test_topk_with_computed_k_accepted_with_a_warning() -> None:
    """onnx-tensorrt 10.x imports K with ITopKLayer::setInput(1) from any tensor: no error, a K < 3840 reminder."""
    idx = numpy_helper.from_array(np.array([2], np.int64), "idx")
    nodes = [
        helper.make_node("Flatten", ["x"], ["f"], name="flat", axis=1),
        helper.make_node("Shape", ["x"], ["sh"], name="shape"),
        helper.make_node("Gather", ["sh", "idx"], ["k"], name="k_from_shape", axis=0),
        helper.make_node("TopK", ["f", "k"], ["v", "i"], name="dyn_topk", axis=1),
        helper.make_node("ReduceMax", ["v"], ["y"], name="best", axes=[1], keepdims=1),
    ]
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])
    for major, report in _lint_both(_model(nodes, [_x((1, 3, 40, 50))], [y], [idx])).items():
        assert report.ok, (major, [str(i) for i in report.issues])
        assert [(i.node, i.severity) for i in report.issues] == [("dyn_topk", "warning")]
        assert "3840" in report.issues[0].message


def test_nms_with_computed_parameters_accepted() -> None:
    """max_output_boxes_per_class, iou_threshold and score_threshold as graph inputs / computed tensors."""
    nodes = [
        helper.make_node("ReduceMax", ["max_boxes_in"], ["max_boxes"], name="computed_max", axes=[0], keepdims=0),
        helper.make_node("NonMaxSuppression", ["boxes", "scores", "max_boxes", "iou", "score_thr"], ["sel"], name="nms"),
        helper.make_node("Shape", ["sel"], ["sel_shape"], name="sel_shape"),
    ]
    ins = [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 100, 4]),
           helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 3, 100]),
           helper.make_tensor_value_info("max_boxes_in", TensorProto.INT64, [2]),
           helper.make_tensor_value_info("iou", TensorProto.FLOAT, [1]),
           helper.make_tensor_value_info("score_thr", TensorProto.FLOAT, [1])]
    out = [helper.make_tensor_value_info("sel_shape", TensorProto.INT64, [2])]
    for major, report in _lint_both(_model(nodes, ins, out)).items():
        assert report.ok and not report.issues, (major, [str(i) for i in report.issues])


def test_swish_dft_and_opset25_by_major() -> None:
    """Swish: TensorRT 11.0 added it (10.x rejects); DFT from 11.2 (a warning under 11); opset 25 from 11.5."""
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, 8, 8])
    swish = _model([helper.make_node("Swish", ["x"], ["y"], name="act")], [_x()], [y], opset=24)
    r = _lint_both(swish)
    assert [(i.node, i.severity) for i in r[10].issues] == [("act", "error")] and "10.x" in r[10].issues[0].message
    assert r[11].ok and not r[11].issues
    dft = _model([helper.make_node("DFT", ["x", "", "ax"], ["y"], name="fft")], [_x()], [y],
                 [numpy_helper.from_array(np.array(3, np.int64), "ax")], opset=20)
    r = _lint_both(dft)
    assert not r[10].ok and any(i.node == "fft" and i.severity == "error" for i in r[10].issues)
    assert r[11].ok and any(i.node == "fft" and "11.2" in i.message for i in r[11].warnings)
    op25 = _model([helper.make_node("Relu", ["x"], ["y"], name="r")], [_x()], [y], opset=25)
    r = _lint_both(op25)
    assert not r[10].ok and r[11].ok and any("11.5" in i.message for i in r[11].warnings)
    assert supported_ops_table(11)["operators"]["Swish"]["supported"] and "Swish" not in supported_ops_table(10)["operators"]
    with pytest.raises(ValueError):
        supported_ops_table(9)


@pytest.mark.parametrize("boxes,classes,severity", [(3000, 2, "error"), (1500, 2, "warning"), (2000, 1, None)])
def test_nms_box_budget(boxes, classes, severity) -> None:
    """INMSLayer considers only the best 5000 (box, class) pairs per batch item, 2000 on SM 5.3 / 6.2 (NvInfer.h)."""
    inits = [numpy_helper.from_array(np.array([100], np.int64), "mb"),
             numpy_helper.from_array(np.array([0.5], np.float32), "iou")]
    nodes = [helper.make_node("NonMaxSuppression", ["b", "s", "mb", "iou"], ["sel"], name="nms"),
             helper.make_node("Shape", ["sel"], ["n"], name="n")]
    ins = [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, boxes, 4]),
           helper.make_tensor_value_info("s", TensorProto.FLOAT, [1, classes, boxes])]
    out = [helper.make_tensor_value_info("n", TensorProto.INT64, [2])]
    found = [i for i in lint_onnx(_model(nodes, ins, out, inits)).issues if i.node == "nms"]
    assert [i.severity for i in found] == ([severity] if severity else [])
    if severity == "error":
        assert "6000" in found[0].message and "5000" in found[0].message and "candidates_per_class" in found[0].message


def test_cli_lint_trt_major(tmp_path, capsys) -> None:
    from ssdtrt.cli.app import main

    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, 8, 8])
    path = tmp_path / "swish.onnx"
    onnx.save(_model([helper.make_node("Swish", ["x"], ["y"], name="act")], [_x()], [y], opset=24), path)
    assert main(["lint", str(path)]) == 1  # default: TensorRT 10
    assert main(["lint", str(path), "--trt", "11"]) == 0
    assert "TensorRT 11.x" in capsys.readouterr().out
