"""OpenVINO engine build + runner on a real `ssd-small` export (random weights), against ONNX Runtime and PyTorch.

Tolerances: f32 heads within 1e-4 of PyTorch and ONNX Runtime (observed ~1e-6); f32 detections identical to the
PyTorch pipeline (labels, order; boxes 1e-4). bf16: a CPU with bf16 units runs it with 8-bit mantissas, so heads
are allowed 5 % of their range (BF16_REL_TOL); a CPU without them (this CI machine) compiles it as f32 and
is held to the f32 tolerance. int8 Q/DQ: convolutions must execute in 8-bit; heads within 30 % of their range of
the fp32 model (random weights, 8 calibration images: a smoke bound, mAP is checked by `ssdtrt eval`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ssdtrt.core.errors import EngineBuildError, ManifestError
from ssdtrt.io.files import sha256_file
from ssdtrt.core.manifest import read_manifest

pytestmark = pytest.mark.openvino
torch = pytest.importorskip("torch")

F32_ATOL = 1e-4
BF16_REL_TOL = 0.05
INT8_REL_TOL = 0.3


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((2, 3, 160, 160)).astype(np.float32)


@pytest.fixture(scope="module")
def torch_heads(small_checkpoint: Path, images: np.ndarray) -> dict[str, np.ndarray]:
    from ssdtrt.model.checkpoint import load_model

    model = load_model(small_checkpoint)
    with torch.no_grad():
        locs, logits = model(torch.from_numpy(images))
    return {"locs": locs.numpy(), "logits": logits.numpy()}


@pytest.fixture(scope="module")
def ov_f32(small_raw_onnx: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    from ssdtrt.engines.openvino_builder import build_openvino

    return build_openvino(small_raw_onnx, tmp_path_factory.mktemp("engines") / "small_f32")


def test_f32_heads_match_torch_and_onnxruntime(ov_f32, small_raw_onnx: Path, images, torch_heads) -> None:  # noqa: ANN001
    from ssdtrt.runtime.onnxruntime_runner import OnnxRuntimeRunner
    from ssdtrt.runtime.openvino_runner import OpenVINORunner

    with OpenVINORunner(ov_f32.engine_path) as ov_runner, OnnxRuntimeRunner(
        small_raw_onnx, providers=["CPUExecutionProvider"]
    ) as ort_runner:
        ov_out = ov_runner.infer({"images": images})
        ort_out = ort_runner.infer({"images": images})
        single = ov_runner.infer({"images": images[1:]})  # dynamic batch: another shape on the same request
        assert ov_runner.describe()["compiled_inference_precision_hint"] == "f32"
    assert set(ov_out) == {"locs", "logits"}
    for name in ("locs", "logits"):
        assert ov_out[name].shape == torch_heads[name].shape and ov_out[name].dtype == np.float32
        np.testing.assert_allclose(ov_out[name], torch_heads[name], rtol=0, atol=F32_ATOL)
        np.testing.assert_allclose(ov_out[name], ort_out[name], rtol=0, atol=F32_ATOL)
        np.testing.assert_allclose(single[name][0], ov_out[name][1], rtol=0, atol=F32_ATOL)


def test_f32_detections_identical_to_torch(ov_f32, images, torch_heads) -> None:  # noqa: ANN001
    from ssdtrt.postprocess.host_torch import postprocess
    from ssdtrt.postprocess.host_numpy import postprocess_numpy
    from ssdtrt.core.priors import default_boxes
    from ssdtrt.runtime.openvino_runner import OpenVINORunner

    priors = default_boxes("ssd-small")
    with OpenVINORunner(ov_f32.engine_path) as runner:
        out = runner.infer({"images": images})
    ours = postprocess_numpy(out["locs"], out["logits"], priors)
    ref = postprocess(torch.from_numpy(torch_heads["locs"]), torch.from_numpy(torch_heads["logits"]), priors)
    for o, r in zip(ours, ref):
        r = r.numpy()
        assert len(o) == len(r) > 0
        np.testing.assert_array_equal(o.labels, r.labels)
        np.testing.assert_allclose(o.boxes, r.boxes, rtol=0, atol=1e-4)
        np.testing.assert_allclose(o.scores, r.scores, rtol=0, atol=1e-4)


def test_bf16_build_records_hint_and_stays_within_tolerance(small_raw_onnx: Path, tmp_path: Path, images, torch_heads) -> None:  # noqa: ANN001
    from ssdtrt.engines.openvino_builder import build_openvino
    from ssdtrt.runtime.openvino_runner import OpenVINORunner

    result = build_openvino(small_raw_onnx, tmp_path / "small", precision_hint="bf16")
    assert result.manifest.precision == "bf16" and result.manifest.engine["precision_hint"] == "bf16"
    with OpenVINORunner(result.engine_path) as runner:  # the hint comes from the manifest
        assert runner.precision_hint == "bf16"
        compiled = runner.describe()["compiled_inference_precision_hint"]
        out = runner.infer({"images": images})
    assert compiled == result.manifest.engine["compiled_inference_precision"] and compiled in ("bf16", "f32")
    for name in ("locs", "logits"):
        ref = torch_heads[name]
        tol = BF16_REL_TOL * float(np.abs(ref).max()) if compiled == "bf16" else F32_ATOL
        np.testing.assert_allclose(out[name], ref, rtol=0, atol=tol)


def test_int8_qdq_model_runs_in_8_bit(tmp_path: Path, small_checkpoint: Path, images, torch_heads) -> None:  # noqa: ANN001
    from ssdtrt.engines.openvino_builder import build_openvino
    from ssdtrt.export.calibration import CalibrationConfig
    from ssdtrt.export.onnx_export import export_checkpoint
    from ssdtrt.runtime.openvino_runner import OpenVINORunner

    calib = CalibrationConfig(data="synthetic", num_images=8, cache_dir=None)
    exported = export_checkpoint(small_checkpoint, tmp_path / "small_int8.onnx", precision="int8", calibration=calib, dynamic_batch=True)
    result = build_openvino(exported.onnx_path, tmp_path / "small_int8")
    assert result.manifest.precision == "int8"
    with OpenVINORunner(result.engine_path) as runner:
        out = runner.infer({"images": images})
        conv = runner.layer_precisions()["Convolution"]
    assert set(conv) <= {"u8", "i8"}, f"convolutions should execute in 8-bit, got {conv}"
    for name in ("locs", "logits"):
        ref = torch_heads[name]
        np.testing.assert_allclose(out[name], ref, rtol=0, atol=INT8_REL_TOL * float(np.abs(ref).max()))


def test_ir_files_and_manifest(ov_f32, small_raw_onnx: Path) -> None:  # noqa: ANN001
    xml = ov_f32.engine_path
    assert xml.suffix == ".xml" and xml.with_suffix(".bin").is_file()
    assert sorted(p.name for p in xml.parent.iterdir()) == ["small_f32.bin", "small_f32.json", "small_f32.xml"]
    m = read_manifest(xml)
    src = read_manifest(small_raw_onnx)
    assert (m.kind, m.artifact, m.precision, m.export_mode) == ("openvino", "small_f32.xml", "fp32", "raw")
    assert m.source["onnx_sha256"] == sha256_file(small_raw_onnx)
    assert m.engine["precision_hint"] == "f32" and m.engine["openvino_version"]
    assert (m.spec, m.class_names, m.inputs, m.outputs) == (src.spec, src.class_names, src.inputs, src.outputs)
    assert json.loads(xml.with_suffix(".json").read_text())["format"] == "ssdtrt-manifest"


def test_default_out_path(small_raw_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ssdtrt.engines.openvino_builder import build_openvino

    monkeypatch.chdir(tmp_path)
    result = build_openvino(small_raw_onnx, precision_hint="bf16", validate=False)
    assert result.engine_path == Path("engines/small_raw_bf16.xml") and result.engine_path.is_file()


def test_build_errors(small_raw_onnx: Path, tmp_path: Path) -> None:
    from ssdtrt.engines.openvino_builder import build_openvino
    from ssdtrt.runtime.openvino_runner import OpenVINORunner

    with pytest.raises(EngineBuildError, match="precision"):
        build_openvino(small_raw_onnx, tmp_path / "x", precision_hint="fp8")
    with pytest.raises(EngineBuildError, match="no such ONNX"):
        build_openvino(tmp_path / "missing.onnx")
    with pytest.raises(EngineBuildError, match=r"\.onnx"):
        build_openvino(tmp_path / "model.xml")
    lonely = tmp_path / "lonely.onnx"
    lonely.write_bytes(small_raw_onnx.read_bytes())
    with pytest.raises(ManifestError, match="manifest not found"):
        build_openvino(lonely)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not an onnx file")
    garbage.with_suffix(".json").write_text(small_raw_onnx.with_suffix(".json").read_text())
    with pytest.raises(EngineBuildError, match="OpenVINO cannot read"):
        build_openvino(garbage, tmp_path / "out_g")
    assert not list(tmp_path.glob("out_g*")) and not list(tmp_path.glob(".out_g*")), "nothing written for a failed build"
    result = build_openvino(small_raw_onnx, tmp_path / "nobin", validate=False)
    result.engine_path.with_suffix(".bin").unlink()
    with pytest.raises(ManifestError, match="weights file"):
        OpenVINORunner(result.engine_path)


def test_cli_build_engine_openvino(small_raw_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ssdtrt.cli.app import main

    code = main(["build-engine", str(small_raw_onnx), "--backend", "openvino", "--out", str(tmp_path / "cli"), "--precision", "bf16"])
    assert code == 0
    assert read_manifest(tmp_path / "cli.xml").engine["precision_hint"] == "bf16"
    assert "cli.xml" in capsys.readouterr().out
    assert main(["build-engine", str(tmp_path / "absent.onnx"), "--backend", "openvino"]) == 1
