"""Stage placement: which postprocess stage a model gets (host-numpy, host-torch, engine), what each does with its
outputs, the override rules of an `nms` graph, and that a Detector, a stage-only `ModelStages` (Triton's python
models) and every placement give the same detections. References: the host postprocess functions called directly,
and by-hand un-padding of nms outputs."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from ssdtrt.core.config import PostprocessSpec, get_preset
from ssdtrt.core.errors import ManifestError
from ssdtrt.core.priors import default_boxes
from ssdtrt.inference.detector import Detector
from ssdtrt.inference.protocol import POSTPROCESS_PLACEMENTS, AsyncDetector, Postprocessor, Preprocessor
from ssdtrt.postprocess.host_numpy import postprocess_numpy
from ssdtrt.postprocess.settings import OVERRIDE_KEYS, effective_settings, override_values
from ssdtrt.postprocess.stages import EngineDetections, postprocessor_for
from ssdtrt.serve.stages import stage_detector

SPEC = get_preset("ssd-small")


def _heads(n: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = SPEC.priors.num_priors
    locs = rng.normal(scale=0.5, size=(n, p, 4)).astype(np.float32)
    logits = rng.normal(scale=2.0, size=(n, p, 7)).astype(np.float32)
    return locs, logits


def test_default_placement_follows_the_export_mode_and_device() -> None:
    s = SPEC.postprocess
    assert postprocessor_for("raw", SPEC, s).placement == "host-numpy"
    assert postprocessor_for("decoded", SPEC, s).placement == "host-numpy"
    assert postprocessor_for("raw", SPEC, s, device="cuda:0").placement == "host-torch"
    assert postprocessor_for("nms", SPEC, s).placement == "engine"
    assert postprocessor_for("raw", SPEC, s, placement="host-torch").placement == "host-torch"
    for mode in ("raw", "decoded", "nms"):
        stage = postprocessor_for(mode, SPEC, s)
        assert isinstance(stage, Postprocessor) and stage.placement in POSTPROCESS_PLACEMENTS


@pytest.mark.parametrize(("mode", "placement"), [("raw", "engine"), ("decoded", "engine"), ("nms", "host-numpy"),
                                                 ("nms", "host-torch")])
def test_a_placement_that_does_not_fit_the_graph_is_refused(mode: str, placement: str) -> None:
    with pytest.raises(ManifestError, match="placement"):
        postprocessor_for(mode, SPEC, SPEC.postprocess, placement=placement)
    with pytest.raises(ManifestError, match="export mode"):
        postprocessor_for("fused", SPEC, SPEC.postprocess)


def test_host_numpy_stage_is_the_numpy_postprocess() -> None:
    locs, logits = _heads()
    settings = PostprocessSpec(score_threshold=0.2, iou_threshold=0.4, topk_candidates=50, max_detections=20)
    got = postprocessor_for("raw", SPEC, settings)({"locs": locs, "logits": logits})
    ref = postprocess_numpy(locs, logits, default_boxes(SPEC), variances=SPEC.variances, **settings.as_kwargs())
    assert len(got) == len(ref) == 2 and sum(len(d) for d in ref) > 0
    for g, r in zip(got, ref):
        assert np.array_equal(g.boxes, r.boxes) and np.array_equal(g.scores, r.scores) and np.array_equal(g.labels, r.labels)


def test_host_torch_stage_agrees_with_host_numpy() -> None:
    pytest.importorskip("torch")
    locs, logits = _heads(seed=1)
    settings = PostprocessSpec(score_threshold=0.2, max_detections=30)
    numpy_dets = postprocessor_for("raw", SPEC, settings)({"locs": locs, "logits": logits})
    torch_dets = postprocessor_for("raw", SPEC, settings, placement="host-torch")({"locs": locs, "logits": logits})
    for t, n in zip(torch_dets, numpy_dets):
        assert isinstance(t.boxes, np.ndarray) and len(t) == len(n) > 0
        np.testing.assert_allclose(t.boxes, n.boxes, atol=1e-6, rtol=0)
        np.testing.assert_allclose(t.scores, n.scores, atol=1e-6, rtol=0)
        assert np.array_equal(t.labels, n.labels)


def test_decoded_outputs_skip_decode_and_softmax() -> None:
    """A decoded export's boxes/scores through the host stage = the raw heads through it (decode + softmax by hand)."""
    from ssdtrt.core.codec import decode
    from ssdtrt.postprocess.host_numpy import softmax

    locs, logits = _heads(seed=2)
    boxes = np.clip(decode(locs, default_boxes(SPEC), SPEC.variances), 0, 1).astype(np.float32)
    settings = PostprocessSpec(score_threshold=0.3)
    from_decoded = postprocessor_for("decoded", SPEC, settings)({"boxes": boxes, "scores": softmax(logits)})
    from_raw = postprocessor_for("raw", SPEC, settings)({"locs": locs, "logits": logits})
    for d, r in zip(from_decoded, from_raw):
        assert len(d) == len(r) > 0 and np.array_equal(d.labels, r.labels)
        np.testing.assert_allclose(d.boxes, r.boxes, atol=1e-6, rtol=0)
        np.testing.assert_allclose(d.scores, r.scores, atol=1e-6, rtol=0)


def _nms_outputs() -> dict[str, np.ndarray]:
    """Two images, K = 4 rows each: image 0 has 3 detections (not sorted by score), image 1 has none."""
    boxes = np.zeros((2, 4, 4), np.float32)
    boxes[0, :3] = [[0.1, 0.1, 0.2, 0.2], [0.3, 0.3, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]]
    scores = np.zeros((2, 4), np.float32)
    scores[0, :3] = [0.4, 0.9, 0.05]
    labels = np.zeros((2, 4), np.int32)
    labels[0, :3] = [1, 2, 3]
    return {"num_detections": np.array([[3], [0]], np.int32), "boxes": boxes, "scores": scores, "labels": labels}


def test_engine_stage_unpads_and_applies_only_stricter_settings() -> None:
    baked = PostprocessSpec(score_threshold=0.01, max_detections=4)
    same = EngineDetections(baked, baked)(_nms_outputs())
    assert [len(d) for d in same] == [3, 0]
    assert same[0].scores.tolist() == pytest.approx([0.9, 0.4, 0.05]) and same[0].labels.tolist() == [2, 1, 3]
    assert same[0].labels.dtype == np.int64 and same[0].boxes.dtype == np.float32
    stricter = EngineDetections(PostprocessSpec(score_threshold=0.3, max_detections=1), baked)(_nms_outputs())
    assert stricter[0].labels.tolist() == [2] and len(stricter[1]) == 0
    bad = _nms_outputs()
    bad["num_detections"] = np.array([[9], [-2]], np.int32)  # clamped to [0, K]
    assert [len(d) for d in EngineDetections(baked, baked)(bad)] == [4, 0]


def test_nms_overrides_that_cannot_apply_are_reported_and_clamped() -> None:
    baked = PostprocessSpec(score_threshold=0.05, iou_threshold=0.45, max_detections=100)
    settings, problems = effective_settings(baked, {"score_threshold": 0.01, "iou_threshold": 0.6,
                                                    "max_detections": 300}, "nms")
    assert len(problems) == 3
    assert (settings.score_threshold, settings.iou_threshold, settings.max_detections) == (0.05, 0.45, 100)
    settings, problems = effective_settings(baked, {"score_threshold": 0.5, "max_detections": 10}, "nms")
    assert problems == [] and (settings.score_threshold, settings.max_detections) == (0.5, 10)
    settings, problems = effective_settings(baked, {"iou_threshold": 0.6, "max_detections": None}, "raw")
    assert problems == [] and settings.iou_threshold == 0.6 and settings.max_detections == 100
    with pytest.raises(ValueError, match="unknown postprocess overrides"):
        effective_settings(baked, {"min_size": 0.1}, "raw")
    assert override_values({"score_threshold": 0.3, "iou_threshold": None, "other": 1}) == {"score_threshold": 0.3}
    assert set(OVERRIDE_KEYS) == {"score_threshold", "iou_threshold", "max_detections"}


def test_stage_only_model_stages_equal_the_detector(small_raw_onnx: Path) -> None:
    """Triton's python models run `stage_detector(manifest)` without a runner: same batch in, same detections out."""
    rng = np.random.default_rng(4)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((90, 120), (200, 64))]
    stages = stage_detector(small_raw_onnx.with_suffix(".json"), {"score_threshold": 0.05, "unrelated": 3})
    assert isinstance(stages.preprocessor, Preprocessor) and stages.preprocessor.placement == "host"
    with Detector(small_raw_onnx, score_threshold=0.05) as det:
        assert isinstance(det, AsyncDetector)
        batch = det.preprocess(images)
        assert np.array_equal(stages.preprocess(images), batch)
        outputs = det.infer(batch)
        sizes = [img.shape[:2] for img in images]
        ours, ref = stages.postprocess(outputs, sizes), det.postprocess(outputs, sizes)
    assert stages.settings == det.settings and stages.settings.score_threshold == 0.05
    for a, b in zip(ours, ref):
        assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores) and a.class_names == b.class_names


def test_detector_host_torch_placement_matches_host_numpy(small_raw_onnx: Path) -> None:
    pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(3)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with Detector(small_raw_onnx, score_threshold=0.05) as a, \
                Detector(small_raw_onnx, score_threshold=0.05, postprocess_placement="host-torch") as b:
            assert a.describe()["postprocess_placement"] == "host-numpy"
            assert b.describe()["postprocess_placement"] == "host-torch"
            for x, y in zip(a.detect(images), b.detect(images)):
                assert len(x) == len(y) and np.array_equal(x.labels, y.labels)
                np.testing.assert_allclose(x.boxes, y.boxes, atol=1e-3, rtol=0)  # pixels of a 160 px image
                np.testing.assert_allclose(x.scores, y.scores, atol=1e-6, rtol=0)
    with pytest.raises(ManifestError, match="placement"):
        Detector(small_raw_onnx, postprocess_placement="engine")
