"""`export --input uint8-nhwc`: Cast / normalize / transpose inside the ONNX, against the host `normalize_batch` feeding
the float export (ONNX Runtime, same weights). Tolerance 1e-5 on the heads (the same float32 constants and operations;
observed identical up to float rounding order)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ssdtrt.core.config import get_preset
from ssdtrt.core.manifest import read_manifest
from ssdtrt.preprocess.host import normalize_batch

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
SMALL = get_preset("ssd-small")


@pytest.fixture(scope="module")
def uint8_raw_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ssdtrt.export.onnx_export import export_model
    from ssdtrt.model.ssd import build_model

    torch.manual_seed(0)  # the same weights as the `small_raw_onnx` fixture
    model = build_model("ssd-small").eval()
    out = tmp_path_factory.mktemp("export") / "small_raw_u8.onnx"
    return export_model(model, out, mode="raw", dynamic_batch=True, input_format="uint8-nhwc").onnx_path


def _run(path: Path, x: np.ndarray) -> list[np.ndarray]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"images": x})


def test_uint8_export_equals_host_normalization(uint8_raw_onnx: Path, small_raw_onnx: Path) -> None:
    manifest = read_manifest(uint8_raw_onnx)
    assert manifest.input_format == "uint8-nhwc"
    assert (manifest.inputs[0].shape, manifest.inputs[0].dtype, manifest.inputs[0].layout) == (
        ["batch", 160, 160, 3], "uint8", "NHWC")
    images = np.random.default_rng(0).integers(0, 256, (3, 160, 160, 3), dtype=np.uint8)
    got = _run(uint8_raw_onnx, images)
    ref = _run(small_raw_onnx, normalize_batch(images, SMALL.preprocess))
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def test_cli_export_input_flag_and_openvino_build(small_checkpoint: Path, tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    from ssdtrt.cli.app import main
    from ssdtrt.engines.openvino_builder import build_openvino
    from ssdtrt.runtime.openvino_runner import OpenVINORunner

    out = tmp_path / "nms_u8.onnx"
    assert main(["export", str(small_checkpoint), "--mode", "nms", "--input", "uint8-nhwc", "--out", str(out)]) == 0
    manifest = read_manifest(out)
    assert manifest.input_format == "uint8-nhwc" and manifest.export_mode == "nms"
    images = np.random.default_rng(1).integers(0, 256, (1, 160, 160, 3), dtype=np.uint8)
    num, boxes, scores, labels = _run(out, images)
    assert num.shape == (1,) and boxes.shape[-1] == 4
    built = build_openvino(out, tmp_path / "nms_u8")  # an OpenVINO build keeps the ONNX's uint8 input
    assert built.manifest.input_format == "uint8-nhwc" and built.reference is None
    with OpenVINORunner(built.engine_path) as runner:
        got = runner.infer({"images": images})
    np.testing.assert_array_equal(got["num_detections"], num)
    np.testing.assert_allclose(got["scores"][0, : num[0]], scores[0, : num[0]], atol=1e-5)


def test_triton_repository_takes_the_uint8_input(uint8_raw_onnx: Path, tmp_path: Path) -> None:
    """The repository is manifest-driven: the preprocess model hands the detector uint8 NHWC (resize only)."""
    from ssdtrt.serve.repository import RepositorySettings, export_repository
    from ssdtrt.serve.stages import stage_detector

    out = export_repository(uint8_raw_onnx, tmp_path / "repo", RepositorySettings())
    pre = next(out.glob("*pre*/config.pbtxt")).read_text()
    assert 'name: "images" data_type: TYPE_UINT8 dims: [ 160, 160, 3 ]' in pre
    stages = stage_detector(uint8_raw_onnx.with_suffix(".json"))
    batch = stages.preprocess([np.zeros((90, 120, 3), np.uint8)])
    assert batch.dtype == np.uint8 and batch.shape == (1, 160, 160, 3)
