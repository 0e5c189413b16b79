"""Postprocess and preprocess inside the OpenVINO graph, against the host numpy postprocess / preprocess.

Reference: `postprocess_numpy` on the raw heads of the same IR (and `normalize_batch` for the input). Tolerances: the
placement parity of issue 20 — the same detections as sets (label equal, box within 1e-4, score within 1e-5). The
op's own semantics are checked on hand-made inputs whose decoded boxes are exact in float32 (dyadic priors, zero
offsets), so the facts the graph relies on (`>` threshold, per-class top-k before NMS, IoU `>` suppresses,
keep_top_k, class-grouped padded output) are measured, not assumed.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ssdtrt.core.config import PostprocessSpec, get_preset
from ssdtrt.core.detections import Detections
from ssdtrt.core.errors import EngineBuildError
from ssdtrt.core.priors import default_boxes
from ssdtrt.postprocess.host_numpy import postprocess_numpy
from ssdtrt.postprocess.onnx_nms import NMS_OUTPUTS
from ssdtrt.postprocess.parity import compare_sets
from ssdtrt.runtime.openvino_runner import openvino_core

pytestmark = pytest.mark.openvino
ov = pytest.importorskip("openvino")
F32 = {"INFERENCE_PRECISION_HINT": "f32"}
SMALL = get_preset("ssd-small")


def _compile(model):  # noqa: ANN001, ANN202
    return openvino_core().compile_model(model, "CPU", F32)


def _detections(compiled, inputs, threshold: float = -1.0, keep: int | None = None) -> list[Detections]:  # noqa: ANN001
    """Run an engine-placed model; its `nms` outputs → Detections per image (score order, stable), optionally cut."""
    out = compiled(inputs)
    num, boxes, scores, labels = (out[compiled.output(name)] for name in NMS_OUTPUTS)
    assert num.dtype == labels.dtype == np.int32 and boxes.shape[:2] == scores.shape == labels.shape
    dets = []
    for i in range(boxes.shape[0]):
        n = int(num[i])
        assert not boxes[i, n:].any() and not scores[i, n:].any()  # padding rows are zeros
        order = np.argsort(-scores[i, :n], kind="stable")
        ok = order[scores[i, order] > threshold][:keep]
        dets.append(Detections(boxes[i, ok], scores[i, ok], labels[i, ok].astype(np.int64)))
    return dets


def _heads_model(num_priors: int, num_classes: int):  # noqa: ANN202
    """A model whose outputs `locs` / `logits` are its inputs (to feed hand-made heads through the appended graph)."""
    import openvino.opset8 as ops

    locs = ops.parameter([-1, num_priors, 4], np.float32, name="locs")
    logits = ops.parameter([-1, num_priors, num_classes], np.float32, name="logits")
    results = []
    for param, name in ((locs, "locs"), (logits, "logits")):
        res = ops.result(ops.multiply(param, np.float32(1.0)))
        res.output(0).get_tensor().set_names({name})
        results.append(res)
    return ov.Model(results, [locs, logits], "heads")


def _bare_op(priors_xyxy: np.ndarray, num_classes: int, settings: PostprocessSpec):  # noqa: ANN202
    """DetectionOutput alone, fed probabilities [N, P * C] and offsets [N, P * 4] (variance row 1)."""
    import openvino.opset8 as ops

    from ssdtrt.postprocess.openvino_graph import detection_output_attrs

    p = priors_xyxy.shape[0]
    box = ops.parameter([1, p * 4], np.float32, name="box")
    conf = ops.parameter([1, p * num_classes], np.float32, name="conf")
    prop = np.stack([priors_xyxy.reshape(-1), np.ones(p * 4)]).astype(np.float32)[None]
    det = ops.detection_output(box, conf, ops.constant(prop), detection_output_attrs(settings, num_classes))
    return _compile(ov.Model([ops.result(det)], [box, conf], "do"))


def _run_bare(settings: PostprocessSpec, priors_xyxy: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """The op's rows up to the end marker (image id -1; the rows after it are zeros)."""
    compiled = _bare_op(priors_xyxy, probs.shape[1], settings)
    rows = compiled([np.zeros((1, priors_xyxy.size), np.float32), probs.reshape(1, -1).astype(np.float32)])[0]
    rows = rows.reshape(-1, 7)
    end = np.flatnonzero(rows[:, 0] == -1)
    if end.size:
        assert not rows[end[0] + 1 :].any()  # zero padding after the marker
    return rows[: end[0]] if end.size else rows


# four dyadic boxes: IoU(0, 1) = IoU(1, 2) = 0.5 exactly, IoU(0, 2) = 0.25, 3 is apart
PRIORS_XYXY = np.array([[0, 0, 0.5, 0.5], [0, 0, 0.5, 0.25], [0, 0, 0.25, 0.25], [0.75, 0.75, 1, 1]], np.float32)


def test_op_keeps_scores_strictly_above_threshold_and_iou_equal_threshold_does_not_suppress() -> None:
    probs = np.array([[0.5, 0.5], [0.25, 0.75], [0.75, 0.25], [0.875, 0.125]], np.float32)  # class 1 column
    rows = _run_bare(PostprocessSpec(0.25, 0.5, None, 10, 0.0), PRIORS_XYXY, probs)
    kept = rows
    # 0.25 == threshold is dropped (prior 2); prior 1 (IoU 0.5 with prior 0) is not suppressed at threshold 0.5
    assert sorted(kept[:, 2].tolist()) == [0.5, 0.75]
    np.testing.assert_array_equal(kept[np.argmax(kept[:, 2]), 3:], PRIORS_XYXY[1])
    # just below: 0.5 (prior 0) and 0.25 (prior 2) are suppressed by 0.75 (prior 1; IoU 0.5 each > 0.49)
    rows = _run_bare(PostprocessSpec(0.1, 0.49, None, 10, 0.0), PRIORS_XYXY, probs)
    assert sorted(rows[:, 2].tolist()) == [0.125, 0.75]


def test_op_applies_top_k_per_class_before_nms_and_keep_top_k_after() -> None:
    probs = np.array([[0.1, 0.6, 0.3], [0.1, 0.5, 0.4], [0.5, 0.2, 0.3], [0.3, 0.3, 0.4]], np.float32)
    # top_k 2 per class before NMS: class 1 keeps priors 0, 1; class 2 priors 1 and 3 (0.4 each, lower index first)
    rows = _run_bare(PostprocessSpec(0.01, 0.9, 2, 10, 0.0), PRIORS_XYXY, probs)
    kept = rows
    assert kept[:, 1].tolist() == [1, 1, 2, 2]  # grouped by class (not by score)
    np.testing.assert_allclose(kept[:, 2], [0.6, 0.5, 0.4, 0.4])
    np.testing.assert_array_equal(kept[2:, 3:], PRIORS_XYXY[[1, 3]])
    # top_k caps before NMS: with IoU 0.4, class 1's prior 1 is suppressed by prior 0 and prior 2 is not a candidate
    rows = _run_bare(PostprocessSpec(0.01, 0.4, 2, 10, 0.0), PRIORS_XYXY, probs)
    assert rows[rows[:, 1] == 1][:, 2].tolist() == [pytest.approx(0.6)]
    # keep_top_k 3 keeps the image's best 3 over all classes, still grouped by class; the buffer is exactly full
    rows = _run_bare(PostprocessSpec(0.01, 0.9, 2, 3, 0.0), PRIORS_XYXY, probs)
    assert rows.shape[0] == 3 and rows[:, 1].tolist() == [1, 1, 2]
    np.testing.assert_allclose(rows[:, 2], [0.6, 0.5, 0.4])
    np.testing.assert_array_equal(rows[2, 3:], PRIORS_XYXY[1])  # the tie at the cut goes to the lower prior index


@pytest.fixture(scope="module")
def small_heads_and_engine(small_raw_onnx: Path):  # noqa: ANN201
    """Raw heads of the IR on 8 random images, the engine-placed model of the same IR, and the images."""
    from ssdtrt.postprocess.openvino_graph import append_detection_output

    core = openvino_core()
    x = np.random.default_rng(0).standard_normal((8, 3, 160, 160)).astype(np.float32)
    raw = _compile(core.read_model(str(small_raw_onnx)))
    out = raw(x)
    heads = {port.get_any_name(): out[port] for port in raw.outputs}
    engine = _compile(append_detection_output(core.read_model(str(small_raw_onnx)), SMALL, SMALL.postprocess))
    return heads, engine, x


def test_engine_detections_equal_host_numpy_as_sets(small_heads_and_engine) -> None:  # noqa: ANN001
    heads, compiled, x = small_heads_and_engine
    host = postprocess_numpy(heads["locs"], heads["logits"], default_boxes(SMALL), **SMALL.postprocess.as_kwargs())
    engine = _detections(compiled, x)
    diff = compare_sets(host, engine)
    assert diff.equal and diff.matched == sum(len(d.scores) for d in host) > 0, diff
    assert diff.max_box_diff <= 1e-6 and diff.max_score_diff <= 1e-6
    for h, e in zip(host, engine):  # same order too: score descending, ties by class then rank
        np.testing.assert_array_equal(h.labels, e.labels)
    # a tighter threshold and cut on the host side of the engine output equal the host's own
    tight = _detections(compiled, x, threshold=0.2, keep=5)
    host_tight = postprocess_numpy(heads["locs"], heads["logits"], default_boxes(SMALL),
                                   **replace(SMALL.postprocess, score_threshold=0.2, max_detections=5).as_kwargs())
    assert compare_sets(host_tight, tight).equal
    # one image alone gives that image's rows of the batch (per-image slots, whatever the batch)
    assert compare_sets(engine[5:6], _detections(compiled, x[5:6])).equal


def test_minimum_box_size_is_applied_in_the_graph(small_raw_onnx: Path) -> None:
    """Hand-made heads where a third of the confident priors decode to boxes below the minimum size."""
    from ssdtrt.postprocess.openvino_graph import append_detection_output

    priors = default_boxes(SMALL)
    p, c = priors.shape[0], SMALL.default_num_classes
    rng = np.random.default_rng(1)
    logits = (0.3 * rng.standard_normal((2, p, c))).astype(np.float32)
    logits[:, ::7, 3] += 6.0  # confident class-3 priors
    locs = (0.5 * rng.standard_normal((2, p, 4))).astype(np.float32)
    locs[:, ::21, 2:] = -12.0  # exp(-2.4) * prior: below 0.02 for the smaller priors
    settings = PostprocessSpec(0.5, 0.45, None, 1000, min_size=0.02)
    engine = _compile(append_detection_output(_heads_model(p, c), SMALL, settings))
    got = _detections(engine, [locs, logits])
    host = postprocess_numpy(locs, logits, priors, **settings.as_kwargs())
    no_min = postprocess_numpy(locs, logits, priors, **replace(settings, min_size=0.0).as_kwargs())
    assert sum(len(d.scores) for d in no_min) > sum(len(d.scores) for d in host) > 0  # the size test removes some
    assert compare_sets(host, got).equal


def test_min_size_with_a_per_class_cap_is_refused() -> None:
    from ssdtrt.postprocess.openvino_graph import check_settings

    with pytest.raises(EngineBuildError, match="minimum box size"):
        check_settings(PostprocessSpec(0.05, 0.5, 200, 100, 0.01))
    check_settings(PostprocessSpec(0.05, 0.5, None, 100, 0.01))  # the R50 preset: no cap, fine


def test_uint8_input_gives_the_host_normalized_heads(small_raw_onnx: Path) -> None:
    """The PrePostProcessor input (uint8 NHWC RGB) against `normalize_batch` + the float IR: heads within 1e-5."""
    from ssdtrt.preprocess.host import normalize_batch
    from ssdtrt.preprocess.openvino_ppp import add_uint8_input

    core = openvino_core()
    images = np.random.default_rng(2).integers(0, 256, (3, 160, 160, 3), dtype=np.uint8)
    raw = _compile(core.read_model(str(small_raw_onnx)))
    ppp = _compile(add_uint8_input(core.read_model(str(small_raw_onnx)), SMALL.preprocess))
    assert ppp.inputs[0].get_element_type() == ov.Type.u8
    a, b = raw(normalize_batch(images, SMALL.preprocess)), ppp(images)
    for pa, pb in zip(raw.outputs, ppp.outputs):
        np.testing.assert_allclose(b[pb], a[pa], rtol=0, atol=1e-5)
    bgr = replace(SMALL.preprocess, channel_order="BGR")  # a BGR network: the graph swaps the reader's RGB
    swapped = _compile(add_uint8_input(core.read_model(str(small_raw_onnx)), bgr))(images)
    ref = raw(normalize_batch(images, bgr))
    np.testing.assert_allclose(swapped[0], ref[0], rtol=0, atol=1e-5)


def test_resnet50_preset_on_random_heads_equals_host() -> None:
    """The SSD300-ResNet50 preset's settings (score 0.05, IoU 0.5, no per-class top-k, min size 1/300, 100 per image)
    on its 8,732 priors x 81 classes, heads drawn so thousands of scores pass and some boxes are under the minimum
    size: the engine-placed graph equals the host numpy postprocess as sets, over 4 images (no difference allowed)."""
    from ssdtrt.postprocess.openvino_graph import append_detection_output

    r50 = get_preset("ssd300-resnet50")
    priors = default_boxes(r50)
    p, c = priors.shape[0], r50.default_num_classes
    rng = np.random.default_rng(7)
    logits = rng.standard_normal((4, p, c)).astype(np.float32)
    logits[..., 0] += 2.0
    locs = rng.standard_normal((4, p, 4)).astype(np.float32)
    locs[:, ::13, 2:] -= 9.0  # tiny boxes: exp(-1.8) x the small priors is under 1/300
    engine = _compile(append_detection_output(_heads_model(p, c), r50, r50.postprocess))
    got = _detections(engine, [locs, logits])
    host = postprocess_numpy(locs, logits, priors, **r50.postprocess.as_kwargs())
    candidates = int((postprocess_numpy(locs, logits, priors, **replace(r50.postprocess, max_detections=100000,
                                                                          iou_threshold=1.0).as_kwargs())[0].scores.size))
    assert candidates > 1000  # the keep_top_k cut and NMS both have work to do
    diff = compare_sets(host, got)
    assert diff.equal and diff.matched == 400, diff
