"""`build-engine --backend openvino --postprocess engine|host --input ...`: what gets built and recorded, and that the
engine-placed IR's detections equal the host numpy postprocess of its raw-heads reference (as sets; tolerances of
`ssdtrt.postprocess.parity`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ssdtrt.core.config import get_preset
from ssdtrt.core.errors import EngineBuildError
from ssdtrt.core.manifest import read_manifest

pytestmark = pytest.mark.openvino
pytest.importorskip("openvino")
SMALL = get_preset("ssd-small")


@pytest.fixture(scope="module")
def engine_u8(small_raw_onnx: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    from ssdtrt.engines.openvino_builder import build_openvino

    return build_openvino(small_raw_onnx, tmp_path_factory.mktemp("eng") / "small", postprocess="engine",
                          input_format="uint8-nhwc")


def test_engine_build_records_placement_input_and_keeps_the_raw_heads_reference(engine_u8) -> None:  # noqa: ANN001
    m = engine_u8.manifest
    assert (m.export_mode, m.postprocess_placement, m.input_format) == ("nms", "engine", "uint8-nhwc")
    assert [t.name for t in m.outputs] == ["num_detections", "boxes", "scores", "labels"]
    assert m.inputs[0].dtype == "uint8" and m.outputs[1].shape == ["batch", SMALL.postprocess.max_detections, 4]
    assert m.engine["postprocess"] == "engine" and m.engine["input_format"] == "uint8-nhwc"
    ref = engine_u8.engine_path.with_name(m.engine["reference_ir"])
    assert ref == engine_u8.reference.engine_path and ref.is_file() and ref.with_suffix(".bin").is_file()
    ref_m = read_manifest(ref)
    assert (ref_m.export_mode, ref_m.input_format, ref_m.postprocess_placement) == ("raw", "float32-nchw", "host")
    assert read_manifest(engine_u8.engine_path) == m  # the manifest on disk is the returned one


def test_engine_detections_equal_host_on_the_reference(engine_u8) -> None:  # noqa: ANN001
    from ssdtrt.core.priors import default_boxes
    from ssdtrt.postprocess.host_numpy import postprocess_numpy
    from ssdtrt.postprocess.parity import compare_sets
    from ssdtrt.preprocess.host import normalize_batch
    from ssdtrt.runtime.openvino_runner import OpenVINORunner

    images = np.random.default_rng(3).integers(0, 256, (6, 160, 160, 3), dtype=np.uint8)
    from ssdtrt.inference.detector import Detector

    with Detector(engine_u8.engine_path) as det, OpenVINORunner(engine_u8.reference.engine_path) as ref:
        assert det.stages.preprocessor.placement == det.stages.postprocessor.placement == "engine"
        engine = det.postprocess(det.infer(det.preprocess(list(images))), [(1, 1)] * len(images))  # 1x1: normalized
        heads = ref.infer({"images": normalize_batch(images, SMALL.preprocess)})
    host = postprocess_numpy(heads["locs"], heads["logits"], default_boxes(SMALL), **SMALL.postprocess.as_kwargs())
    diff = compare_sets(host, engine)
    assert diff.equal and diff.matched > 0, diff


def test_engine_placement_needs_raw_heads(tmp_path: Path, small_checkpoint: Path) -> None:
    from ssdtrt.engines.openvino_builder import build_openvino
    from ssdtrt.export.onnx_export import export_checkpoint

    nms = export_checkpoint(small_checkpoint, tmp_path / "nms.onnx", mode="nms").onnx_path
    with pytest.raises(EngineBuildError, match="needs a raw export"):
        build_openvino(nms, tmp_path / "x", postprocess="engine", validate=False)
    with pytest.raises(EngineBuildError, match="unknown postprocess placement"):
        build_openvino(nms, tmp_path / "x", postprocess="gpu")


def test_cli_defaults_to_engine_pre_and_postprocess_for_raw_exports(small_raw_onnx: Path, tmp_path: Path) -> None:
    from ssdtrt.cli.app import main

    assert main(["build-engine", str(small_raw_onnx), "--backend", "openvino", "--out", str(tmp_path / "e"),
                 "--no-validate"]) == 0
    default = read_manifest(tmp_path / "e.xml")
    assert (default.engine["postprocess"], default.input_format) == ("engine", "uint8-nhwc")
    assert (tmp_path / "e-heads.xml").is_file()
    assert main(["build-engine", str(small_raw_onnx), "--backend", "openvino", "--out", str(tmp_path / "h"),
                 "--postprocess", "host", "--no-validate"]) == 0
    assert read_manifest(tmp_path / "h.xml").export_mode == "raw" and not (tmp_path / "h-heads.xml").exists()
    assert main(["build-engine", str(small_raw_onnx), "--backend", "tensorrt", "--postprocess", "engine"]) == 1
