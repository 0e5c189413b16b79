"""Every command on an engine-placed OpenVINO build (uint8 NHWC input + softmax/DetectionOutput in the IR) against
the host-placed IR of the same ONNX: detect, eval, compare, stream, serve's stages, bench latency, bench throughput.

Reference: the host path (float input normalized by `normalize_batch`, numpy postprocess) on the raw-heads IR kept
beside the engine. Tolerance: identical detections as sets (label; box within 1e-4 in normalized units, i.e. 0.016 px
at 160 px; score 1e-5); mAP to 4 decimals; the CLI JSON rounds boxes to 0.01 px and scores to 1e-5, compared there.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from ssdtrt.cli.app import main
from ssdtrt.postprocess.parity import compare_sets

pytestmark = pytest.mark.openvino
pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def placed(small_raw_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{"engine": the engine-placed IR, "host": its raw-heads reference IR (host placement)}."""
    from ssdtrt.engines.openvino_builder import build_openvino

    built = build_openvino(small_raw_onnx, tmp_path_factory.mktemp("placed") / "small", postprocess="engine",
                           input_format="uint8-nhwc")
    return {"engine": built.engine_path, "host": built.reference.engine_path}


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((120, 200), (160, 160), (300, 220), (90, 90))]


def _detect(model: Path, imgs: list[np.ndarray]):  # noqa: ANN202
    from ssdtrt.inference.detector import Detector

    with Detector(model, batch_size=3) as det:
        placements = (det.stages.preprocessor.placement, det.stages.postprocessor.placement)
        return det.detect(imgs), placements


def _normalized(dets, imgs):  # noqa: ANN001, ANN202
    from ssdtrt.core.detections import Detections

    return [Detections(d.boxes / np.float32([i.shape[1], i.shape[0]] * 2), d.scores, d.labels) for d, i in zip(dets, imgs)]


def test_detector_and_stream_on_either_placement(placed: dict[str, Path], images: list[np.ndarray]) -> None:
    from ssdtrt.inference.detector import Detector

    host, host_where = _detect(placed["host"], images)
    engine, engine_where = _detect(placed["engine"], images)
    assert (host_where, engine_where) == (("host", "host-numpy"), ("engine", "engine"))
    diff = compare_sets(_normalized(host, images), _normalized(engine, images))
    assert diff.equal and diff.matched > 0, diff
    with Detector(placed["engine"], batch_size=2) as det:
        streamed = [r.detections for r in det.stream(images)]
    assert compare_sets(_normalized(streamed, images), _normalized(engine, images)).equal


def test_detect_cli(placed: dict[str, Path], images: list[np.ndarray], tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for i, img in enumerate(images):
        cv2.imwrite(str(folder / f"im{i}.png"), img[:, :, ::-1])
    keys, values = {}, {}
    for name, model in placed.items():
        assert main(["detect", str(model), str(folder), "--out", str(tmp_path / name), "--no-images"]) == 0
        records = json.loads((tmp_path / name / "detections.json").read_text())
        rows = sorted((r["file_name"], r["category_id"], *r["bbox"], r["score"]) for r in records)
        keys[name] = [row[:2] for row in rows]
        values[name] = np.asarray([row[2:] for row in rows], dtype=np.float64)
    assert keys["engine"] == keys["host"] and len(keys["host"]) > 0
    # the JSON rounds boxes to 0.01 px and scores to 1e-5: the parity tolerance (box 1e-4 normalized, i.e. <= 0.03 px
    # at these sizes; score 1e-5) plus one rounding step on each side
    np.testing.assert_allclose(values["engine"][:, :4], values["host"][:, :4], rtol=0, atol=0.05)
    np.testing.assert_allclose(values["engine"][:, 4], values["host"][:, 4], rtol=0, atol=2e-5)


def test_eval_cli_same_map(placed: dict[str, Path], tmp_path: Path) -> None:
    maps = {}
    for name, model in placed.items():
        out = tmp_path / f"{name}.json"
        assert main(["eval", str(model), "--data", "synthetic", "--limit", "24", "--json", str(out)]) == 0
        maps[name] = json.loads(out.read_text())["map"]
    assert round(maps["engine"], 4) == round(maps["host"], 4)


def test_compare_cli_across_placements(placed: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "cmp.json"
    assert main(["compare", str(placed["host"]), str(placed["engine"]), "--images", "8", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["matched"] == report["detections_a"] == report["detections_b"] > 0


def test_serve_stages_of_an_engine_placed_model(placed: dict[str, Path], images: list[np.ndarray]) -> None:
    from ssdtrt.runtime.openvino_runner import OpenVINORunner
    from ssdtrt.serve.stages import stage_detector

    stages = stage_detector(placed["engine"].with_suffix(".json"))
    batch = stages.preprocess(images[:2])
    assert batch.dtype == np.uint8 and batch.shape == (2, 160, 160, 3)
    with OpenVINORunner(placed["engine"]) as runner:
        dets = stages.postprocess(runner.infer({"images": batch}), [img.shape[:2] for img in images[:2]])
    engine, _ = _detect(placed["engine"], images[:2])
    assert compare_sets(_normalized(dets, images[:2]), _normalized(engine, images[:2])).equal


def test_bench_latency_and_throughput_on_both_placements(placed: dict[str, Path], tmp_path: Path) -> None:
    from ssdtrt.bench.throughput import ThroughputSettings, bench_throughput

    out = tmp_path / "lat.json"
    assert main(["bench", "latency", str(placed["host"]), str(placed["engine"]), "--precision", "fp32", "--batch-sizes", "1", "--warmup",
                 "1", "--iters", "3", "--max-seconds", "2", "--min-iters", "2", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["results"]
    assert len(rows) == 2 and all(r.get("error") is None for r in rows), rows
    report = bench_throughput([placed["engine"]], ThroughputSettings(seconds=1.0, warmup_seconds=0.2, rounds=1,
                                                                      sequential=False, num_images=4))
    assert not report.errors, report.errors
    result = report.results[0]
    assert result.settings["bare_reference"] == f"raw-heads IR {placed['host'].name}"
    assert result.images_per_second > 0 and result.bare_images_per_second > 0


def test_throughput_stream_fixes_a_dynamic_batch(placed: dict[str, Path]) -> None:
    """A throughput-mode stream recompiles the dynamic-batch engine at its batch (`fix_batch`); the short last
    batch is padded; detections equal the latency-mode (dynamic) detector's as sets."""
    from ssdtrt.inference.detector import Detector

    rng = np.random.default_rng(11)
    frames = [rng.integers(0, 256, (120, 200, 3), dtype=np.uint8) for _ in range(7)]
    with Detector(placed["engine"], batch_size=7) as latency:
        expected = latency.detect(frames)
        assert latency.static_batch is None and not latency.fix_batch(3)  # LATENCY hint: the model stays dynamic
    with Detector(placed["engine"], mode="throughput") as det:
        assert det.static_batch is None and not det.fix_batch(1)  # batch 1 keeps the dynamic model
        streamed = [r.detections for r in det.stream(frames, batch_size=3)]  # 3 + 3 + 1 (padded to 3)
        assert det.static_batch == 3 and det.runner.compiled_model.inputs[0].get_partial_shape()[0].get_length() == 3
        assert not det.fix_batch(3)
        assert det.runner.optimal_in_flight() == 2 * int(
            det.runner.compiled_model.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))  # one queued per stream
    assert len(streamed) == 7
    diff = compare_sets(_normalized(expected, frames), _normalized(streamed, frames))
    assert diff.equal and diff.matched > 0, diff
