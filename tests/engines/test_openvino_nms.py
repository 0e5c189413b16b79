"""OpenVINO on an `nms` export (NMS in the graph): engine build and run, detections against an independent reference.

OpenVINO folds the Identity nodes that name the `nms` outputs when it compiles, so a compiled output carries the
graph-internal tensor name as well (e.g. {"num_detections", "nms/ReduceSum_28_o0"}); the runner must still report
the manifest's names, both for an engine (.xml) built from the ONNX and for the ONNX run directly.

References, through the same Detector on 4 synthetic val images:
- fp32: ONNX Runtime (CPU) on the same nms ONNX. Observed: identical labels, boxes <= 1.5e-5 px, scores <= 2.7e-7.
- int8: the same Q/DQ body exported in `raw` mode (same calibration) run by OpenVINO, with ssdtrt's numpy
  postprocess (checked against torchvision elsewhere). Not ONNX Runtime: its int8 kernels differ from OpenVINO's on
  this AVX2 CPU by up to 0.4 in the heads (OpenVINO int8 is 0.39 from the fp32 torch heads, ONNX Runtime 0.037), and
  on random weights the near-uniform scores then reorder. Observed: identical labels, boxes <= 1.5e-5 px.
Tolerances: same count, labels and order; boxes within 1e-4 px; scores within 1e-4.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ssdtrt.core.detections import Detections

pytestmark = pytest.mark.openvino
torch = pytest.importorskip("torch")

N_IMAGES = 4
BOX_ATOL_PX = 1e-4
SCORE_ATOL = 1e-4
NMS_OUTPUTS = ["num_detections", "boxes", "scores", "labels"]


@pytest.fixture(scope="module")
def val_images() -> list[np.ndarray]:
    from ssdtrt.data import open_dataset

    ds = open_dataset("synthetic", "val", size=N_IMAGES)
    return [ds[i].image for i in range(N_IMAGES)]


@pytest.fixture(scope="module", params=["fp32", pytest.param("int8", marks=pytest.mark.slow)])
def case(
    request: pytest.FixtureRequest,
    small_checkpoint: Path,
    val_images: list[np.ndarray],
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, list[Detections]]:
    """(the nms ONNX of one precision, the reference detections for it)."""
    from ssdtrt.export.calibration import CalibrationConfig
    from ssdtrt.export.onnx_export import export_checkpoint

    precision = request.param
    kwargs = {}
    if precision == "int8":
        kwargs["calibration"] = CalibrationConfig(data="synthetic", num_images=8, cache_dir=None)
    folder = tmp_path_factory.mktemp("export")

    def export(mode: str) -> Path:
        out = folder / f"small_{mode}_{precision}.onnx"
        result = export_checkpoint(small_checkpoint, out, mode=mode, precision=precision, dynamic_batch=True, **kwargs)
        return result.onnx_path

    nms_onnx = export("nms")
    if precision == "fp32":
        ref = _detect(nms_onnx, val_images, backend="onnxruntime", providers=["CPUExecutionProvider"])
    else:
        ref = _detect(export("raw"), val_images, backend="openvino")
    return nms_onnx, ref


def _detect(model: Path, images: list[np.ndarray], **kwargs: object) -> list[Detections]:
    from ssdtrt.inference.detector import Detector

    with Detector(model, batch_size=N_IMAGES, **kwargs) as det:
        return det.detect(images)


def _assert_same(ours: list[Detections], ref: list[Detections]) -> None:
    assert len(ours) == len(ref) == N_IMAGES
    assert sum(len(r.labels) for r in ref) > 0, "the reference found nothing: the comparison would be vacuous"
    for i, (a, b) in enumerate(zip(ours, ref)):
        assert len(a.labels) == len(b.labels), f"image {i}: {len(a.labels)} vs {len(b.labels)} detections"
        np.testing.assert_array_equal(a.labels, b.labels, err_msg=f"image {i}")
        np.testing.assert_allclose(a.boxes, b.boxes, rtol=0, atol=BOX_ATOL_PX, err_msg=f"image {i}")
        np.testing.assert_allclose(a.scores, b.scores, rtol=0, atol=SCORE_ATOL, err_msg=f"image {i}")


def test_engine_from_nms_onnx(
    case: tuple[Path, list[Detections]], val_images: list[np.ndarray], tmp_path: Path
) -> None:
    from ssdtrt.engines.openvino_builder import build_openvino
    from ssdtrt.runtime.openvino_runner import OpenVINORunner

    nms_onnx, ref = case
    result = build_openvino(nms_onnx, tmp_path / nms_onnx.stem)  # validates: compiles and checks the output names
    assert [t.name for t in result.manifest.outputs] == NMS_OUTPUTS
    with OpenVINORunner(result.engine_path) as runner:
        out = runner.infer({"images": np.zeros((2, 3, 160, 160), np.float32)})
    assert list(out) == NMS_OUTPUTS
    assert out["num_detections"].shape == (2,) and out["boxes"].shape[:2] == out["scores"].shape == out["labels"].shape
    _assert_same(_detect(result.engine_path, val_images), ref)


def test_nms_onnx_run_directly_by_openvino(case: tuple[Path, list[Detections]], val_images: list[np.ndarray]) -> None:
    nms_onnx, ref = case
    _assert_same(_detect(nms_onnx, val_images, backend="openvino"), ref)
