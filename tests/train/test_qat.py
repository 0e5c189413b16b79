"""QAT's fake quantization sits where the INT8 export puts Q/DQ, with the export's scales: the fake-quantized torch
model computes what ONNX Runtime computes on the exported INT8 graph (much closer to it than FP32 is), BN folding
changes nothing, and fine-tuning leaves a plain checkpoint that exports to a lint-clean INT8 graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from ssdtrt.core.manifest import read_manifest
from ssdtrt.export.graph_regions import GraphIndex

from ssdtrt.export.calibration import CalibrationConfig
from ssdtrt.export.float_variants import head_graph
from ssdtrt.export.sensitivity import HeadRunner, sqnr_db

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def calib(tmp_path_factory) -> CalibrationConfig:  # noqa: ANN001
    return CalibrationConfig("synthetic", 8, "minmax", cache_dir=tmp_path_factory.mktemp("calib"), high_precision="fp32")


def _model():  # noqa: ANN202
    from ssdtrt.model.ssd import build_model

    torch.manual_seed(0)
    model = build_model("ssd-small").eval()
    for m in model.modules():  # non-trivial BN statistics, so folding is not a no-op
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
    return model


def test_fold_batchnorm_keeps_outputs_and_state_dict_keys() -> None:
    from ssdtrt.train.qat import fold_batchnorm

    model = _model()
    x = torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        ref = model(x)
    keys = set(model.state_dict())
    assert fold_batchnorm(model) == 15
    assert set(model.state_dict()) == keys
    with torch.no_grad():
        out = model(x)
    for a, b in zip(ref, out):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


def test_fake_quant_matches_exported_int8_graph(calib) -> None:  # noqa: ANN001
    from ssdtrt.export.onnx_export import export_body
    from ssdtrt.train.qat import attach_fake_quant, detach_fake_quant, fold_batchnorm, plan_from_export

    model = _model()
    fold_batchnorm(model)
    plan, int8 = plan_from_export(model, calib)
    assert len(plan.conv_input_scales) == 25 and len(plan.block_input_scales) == 4 and not plan.block_output_scales
    x = torch.from_numpy(np.random.default_rng(1).uniform(-2, 2, (2, 3, 160, 160)).astype(np.float32))
    runner = HeadRunner(x.numpy())
    ort_int8 = runner.run(head_graph(int8))
    with torch.no_grad():
        fp32 = [t.numpy() for t in model(x)]
        handles = attach_fake_quant(model, plan)
        fq = [t.numpy() for t in model(x)]
        detach_fake_quant(model, handles)
        again = [t.numpy() for t in model(x)]
    # torch fake-quant vs ORT int8: only float summation order and int8 accumulation differ
    assert sqnr_db(ort_int8, fq) > sqnr_db(ort_int8, fp32) + 15, (sqnr_db(ort_int8, fq), sqnr_db(ort_int8, fp32))
    for a, b in zip(fp32, again):  # detaching restores the float weights exactly
        np.testing.assert_array_equal(a, b)
    body = export_body(model, mode="raw", dynamic_batch=True)
    assert sqnr_db(runner.run(head_graph(body)), fp32) > 100


@pytest.mark.slow
def test_qat_checkpoint_exports_lint_clean_int8(tmp_path: Path, small_checkpoint: Path) -> None:
    from ssdtrt.export.calibration import CalibrationConfig
    from ssdtrt.export.lint import lint_onnx
    from ssdtrt.export.onnx_export import export_checkpoint
    from ssdtrt.train.qat_run import QatConfig, run_qat

    res = run_qat(QatConfig(small_checkpoint, tmp_path, steps=3, calib_images=8, eval_limit=4, train_size=32,
                            threads=1, calib_method="minmax"))
    assert res.checkpoint.is_file() and res.metrics["steps"] == 3
    from ssdtrt.cli.app import main
    from ssdtrt.model.checkpoint import load_checkpoint
    from ssdtrt.train.qat_run import QAT_RANGES_KEY

    absmax = load_checkpoint(res.checkpoint)["extra"][QAT_RANGES_KEY]["absmax"]
    assert main(["export", str(res.checkpoint), "--mode", "nms", "--dynamic-batch", "--precision", "int8",
                 "--calib-data", "synthetic", "--calib-images", "8", "--int8-float", "fp32",
                 "--out", str(tmp_path / "qat_int8.onnx")]) == 0
    out = read_manifest(tmp_path / "qat_int8.onnx")
    assert out.source["calibration"]["fixed_ranges"] == len(absmax)
    proto = onnx.load(str(tmp_path / "qat_int8.onnx"))
    index = GraphIndex.of(proto)
    inits = {t.name: t for t in proto.graph.initializer}
    seen = set()
    for node in (n for n in proto.graph.node if n.op_type == "Conv"):  # the export's scales are QAT's
        q = index.producer[index.producer[node.input[0]].input[0]]
        scale = float(numpy_helper.to_array(inits[q.input[1]]))
        assert scale == pytest.approx(absmax[q.input[0]] / 127, rel=1e-6), node.name
        seen.add(q.input[0])
    assert seen == set(absmax)  # every quantized conv input, nothing else
    for trt in (10, 11):
        report = lint_onnx(tmp_path / "qat_int8.onnx", trt_major=trt)
        assert report.ok and not report.issues


def test_cli_qat_needs_a_checkpoint(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from ssdtrt.cli.app import main

    assert main(["train", "--qat", "--out", str(tmp_path)]) == 1
    assert "train --qat needs --from CHECKPOINT" in capsys.readouterr().err
    assert main(["train", "--qat", "--from", str(tmp_path / "missing.pt"), "--out", str(tmp_path)]) == 1
    assert "no such checkpoint file" in capsys.readouterr().err
