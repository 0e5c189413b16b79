"""FP16 and INT8 (Q/DQ) variants: the form TensorRT takes, numerically sane in ONNX Runtime, calibration caches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from ssdtrt.data import open_dataset
from ssdtrt.core.errors import ExportError
from ssdtrt.export.calibration import CalibrationConfig
from ssdtrt.export.lint import lint_onnx
from ssdtrt.export.onnx_export import export_model
from ssdtrt.model.ssd import build_model
from ssdtrt.preprocess.host import preprocess_images
from ssdtrt.runtime.onnxruntime_runner import OnnxRuntimeRunner


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(1)
    return build_model("ssd-small").eval()


@pytest.fixture(scope="module")
def batch(model) -> np.ndarray:
    ds = open_dataset("synthetic", "val", size=8)
    return preprocess_images([ds[i].image for i in range(8)], model.spec.preprocess)


@pytest.fixture(scope="module")
def torch_decoded(model, batch) -> dict[str, np.ndarray]:
    from ssdtrt.core.codec import decode
    from ssdtrt.core.priors import default_boxes

    with torch.no_grad():
        locs, logits = model(torch.from_numpy(batch))
    boxes = decode(locs, torch.from_numpy(default_boxes(model.spec)), model.spec.variances).clamp(0, 1)
    return {"boxes": boxes.numpy(), "scores": torch.softmax(logits, -1).numpy()}


def _run(path: Path, batch: np.ndarray) -> dict[str, np.ndarray]:
    with OnnxRuntimeRunner(path, providers=["CPUExecutionProvider"]) as r:
        return r.infer({"images": batch})


def test_fp16_weights_fp32_io_close_to_torch(model, batch, torch_decoded, tmp_path) -> None:
    res = export_model(model, tmp_path / "m_fp16.onnx", mode="decoded", dynamic_batch=True, precision="fp16")
    proto = onnx.load(res.onnx_path)
    conv_weights = [i for i in proto.graph.initializer if i.dims and len(i.dims) == 4]
    assert conv_weights and all(w.data_type == onnx.TensorProto.FLOAT16 for w in conv_weights)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in proto.graph.output)
    assert res.manifest.precision == "fp16"
    out = _run(res.onnx_path, batch)
    assert np.abs(out["boxes"] - torch_decoded["boxes"]).max() < 1e-2
    assert np.abs(out["scores"] - torch_decoded["scores"]).max() < 1e-2
    assert lint_onnx(res.onnx_path).ok


def _qdq_checks(proto: onnx.ModelProto) -> None:
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    q = [n for n in proto.graph.node if n.op_type == "QuantizeLinear"]
    dq = [n for n in proto.graph.node if n.op_type == "DequantizeLinear"]
    assert q and dq
    for node in q + dq:
        zp = inits[node.input[2]]
        assert zp.dtype == np.int8 and not zp.any(), f"{node.name}: zero point {zp}"
    per_channel = [n for n in dq if inits.get(n.input[1]) is not None and inits[n.input[1]].size > 1]
    assert per_channel, "weights should be quantized per channel"
    assert all(inits[n.input[0]].dtype == np.int8 for n in per_channel)
    # biases stay float (fp16 with the default --int8-float fp16): a float initializer, not a DequantizeLinear output
    producer = {o: n for n in proto.graph.node for o in n.output}

    def source(name: str) -> np.ndarray:  # follow Identity nodes back to the initializer
        while name in producer:
            node = producer[name]
            assert node.op_type == "Identity", f"bias {name} comes from a {node.op_type}"
            name = node.input[0]
        return inits[name]

    conv_bias = [n.input[2] for n in proto.graph.node if n.op_type == "Conv" and len(n.input) > 2]
    assert conv_bias and all(source(b).dtype in (np.float16, np.float32) for b in conv_bias)


def test_int8_qdq_symmetric_per_channel_and_cached(model, batch, torch_decoded, tmp_path) -> None:
    cache = tmp_path / "calib"
    cfg = CalibrationConfig("synthetic", num_images=16, method="minmax", cache_dir=cache)
    res = export_model(model, tmp_path / "m_int8.onnx", mode="decoded", batch=4, precision="int8", calibration=cfg)
    _qdq_checks(onnx.load(res.onnx_path))
    calib = res.manifest.source["calibration"]
    assert calib["num_images"] == 16 and not calib["cached"] and not calib["ranges_cached"]
    out = _run(res.onnx_path, batch[:4])
    assert np.abs(out["boxes"] - torch_decoded["boxes"][:4]).max() < 0.1  # int8 of a random net: loose but sane
    assert lint_onnx(res.onnx_path).ok

    # another method reuses the preprocessed images; the same method again reuses the ranges too
    again = export_model(model, tmp_path / "m_int8_e.onnx", mode="decoded", batch=4, precision="int8",
                         calibration=CalibrationConfig("synthetic", 16, "percentile", cache_dir=cache))
    assert again.manifest.source["calibration"]["cached"] and not again.manifest.source["calibration"]["ranges_cached"]
    third = export_model(model, tmp_path / "m_int8_2.onnx", mode="decoded", batch=4, precision="int8", calibration=cfg)
    assert third.manifest.source["calibration"]["ranges_cached"]
    assert onnx.load(third.onnx_path).SerializeToString() == onnx.load(res.onnx_path).SerializeToString()


def test_int8_nms_keeps_tail_float_and_lints_clean(model, tmp_path) -> None:
    cfg = CalibrationConfig("synthetic", num_images=8, method="minmax", cache_dir=tmp_path / "c")
    res = export_model(model, tmp_path / "n_int8.onnx", mode="nms", dynamic_batch=True, precision="int8", calibration=cfg)
    proto = onnx.load(res.onnx_path)
    nms_inputs = [n for n in proto.graph.node if n.name.startswith("nms/")]
    assert nms_inputs and not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in nms_inputs)
    report = lint_onnx(proto)
    assert report.ok, [str(i) for i in report.issues]


def test_empty_calibration_set_is_a_clear_error(model, tmp_path) -> None:
    voc = tmp_path / "VOCempty"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True)
    (voc / "ImageSets/Main/train.txt").write_text("")
    out = tmp_path / "never.onnx"
    cfg = CalibrationConfig(f"voc:{voc}", num_images=4, cache_dir=tmp_path / "c")
    with pytest.raises(ExportError, match="empty"):
        export_model(model, out, precision="int8", calibration=cfg)
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob(".never*"))


def test_unknown_calibration_method_rejected() -> None:
    with pytest.raises(ExportError, match="calibration method"):
        CalibrationConfig("synthetic", method="kl")


def test_reduce_range_stores_7_bit_weights(model, batch, torch_decoded, tmp_path) -> None:
    """--reduce-range: every quantized weight fits 7 bits (|q| <= 64), the manifest says so, accuracy stays sane."""
    cfg = CalibrationConfig("synthetic", num_images=16, method="minmax", cache_dir=tmp_path / "calib", reduce_range=True)
    res = export_model(model, tmp_path / "m_rr.onnx", mode="decoded", batch=4, precision="int8", calibration=cfg)
    proto = onnx.load(res.onnx_path)
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    weights = [inits[n.input[0]] for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
               and inits[n.input[0]].dtype == np.int8]
    assert weights, "no int8 weight initializers found"
    assert max(int(np.abs(w.astype(np.int16)).max()) for w in weights) <= 64
    assert max(int(np.abs(w.astype(np.int16)).max()) for w in weights) > 32  # the 7-bit range is used
    assert res.manifest.source["calibration"]["weight_bits"] == 7
    warnings = [i for i in lint_onnx(proto).issues if i.severity == "warning"]  # fine for CPUs, not for TensorRT
    assert len(warnings) == 1 and "--reduce-range" in warnings[0].message
    out = _run(res.onnx_path, batch[:4])
    assert np.abs(out["boxes"] - torch_decoded["boxes"][:4]).max() < 0.1
