"""`ssdtrt eval` scores every backend through the one route (`Detector.detect`): a checkpoint in torch (postprocess
in torch, as the training loop's evaluation), its ONNX export in ONNX Runtime and OpenVINO. Same weights (seed 0),
so the detections agree; the training-loop hook (`model_detector`) gives the checkpoint's detections exactly and
puts the model back in training mode."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ssdtrt.cli.app import main  # noqa: E402
from ssdtrt.cli.evaluate import make_predict_fn  # noqa: E402
from ssdtrt.data import open_dataset  # noqa: E402
from ssdtrt.evaluate import model_detector  # noqa: E402


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    val = open_dataset("synthetic", "val")
    return [val[i].image for i in range(5)]


def _assert_close(a: list, b: list, px_tol: float) -> None:  # noqa: ANN001 - lists of Detections
    assert len(a) == len(b) and sum(len(d) for d in a) > 0
    for x, y in zip(a, b):
        assert len(x) == len(y) and np.array_equal(x.labels, y.labels)
        np.testing.assert_allclose(x.boxes, y.boxes, atol=px_tol, rtol=0)
        np.testing.assert_allclose(x.scores, y.scores, atol=1e-4, rtol=0)


@pytest.mark.parametrize("backend", ["onnxruntime", pytest.param("openvino", marks=pytest.mark.openvino)])
def test_every_backend_is_scored_through_the_detector(
    small_checkpoint: Path, small_raw_onnx: Path, images: list[np.ndarray], backend: str
) -> None:
    ref = make_predict_fn(small_checkpoint, batch_size=2)
    other = make_predict_fn(small_raw_onnx, batch_size=2, backend=backend)
    try:
        assert ref.detector.describe()["postprocess_placement"] == "host-torch"
        assert other.detector.describe()["postprocess_placement"] == "host-numpy"
        assert other.detector.runner.backend == backend and backend in other.description
        _assert_close(other.predict_fn(images), ref.predict_fn(images), px_tol=0.05)
    finally:
        ref.detector.close()
        other.detector.close()


def test_training_hook_equals_the_checkpoint_route(small_checkpoint: Path, images: list[np.ndarray]) -> None:
    from ssdtrt.model.checkpoint import load_model

    model = load_model(small_checkpoint).train()
    with model_detector(model, "cpu", batch_size=2) as det:
        assert not model.training
        ours = det.detect(images)
    assert model.training  # back in training mode after the evaluation
    info = make_predict_fn(small_checkpoint, batch_size=2)
    try:
        ref = info.predict_fn(images)
    finally:
        info.detector.close()
    for x, y in zip(ours, ref, strict=True):
        assert np.array_equal(x.boxes, y.boxes) and np.array_equal(x.scores, y.scores)


def test_eval_cli_scores_an_onnx_export(small_raw_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "onnx.json"
    assert main(["eval", str(small_raw_onnx), "--limit", "4", "--batch-size", "2", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result) == {"map", "map50", "per_class"} and 0.0 <= result["map"] <= 1.0
