"""The nms export's explicit per-class candidate cap (`candidates_per_class`): the graph (ONNX Runtime), the torch
postprocess and the numpy postprocess give identical detections when a class has more candidates above the threshold
than the cap; exports record the cap in the manifest and stay within TensorRT's NMS / TopK limits.
"""

from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from ssdtrt.core.config import NMS_CANDIDATES_PER_CLASS, PostprocessSpec, get_preset
from ssdtrt.export.lint import lint_onnx
from ssdtrt.postprocess.onnx_nms import append_nms, nms_settings
from ssdtrt.postprocess.host_torch import postprocess
from ssdtrt.postprocess.host_numpy import postprocess_numpy

N_IMG, N_PRI, N_CLS = 2, 600, 4


def _nms_graph(settings: PostprocessSpec) -> onnx.ModelProto:
    """decoded boxes [N, P, 4] / scores [N, P, C] as graph inputs, the nms tail appended."""
    g = helper.make_graph(
        [helper.make_node("Identity", ["in_boxes"], ["boxes_d"]), helper.make_node("Identity", ["in_scores"], ["scores_d"])],
        "cap",
        [helper.make_tensor_value_info("in_boxes", TensorProto.FLOAT, [N_IMG, N_PRI, 4]),
         helper.make_tensor_value_info("in_scores", TensorProto.FLOAT, [N_IMG, N_PRI, N_CLS])],
        [helper.make_tensor_value_info("boxes_d", TensorProto.FLOAT, [N_IMG, N_PRI, 4]),
         helper.make_tensor_value_info("scores_d", TensorProto.FLOAT, [N_IMG, N_PRI, N_CLS])],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return append_nms(model, "boxes_d", "scores_d", num_priors=N_PRI, num_classes=N_CLS, settings=settings, batch=N_IMG)


def _inputs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    xy = rng.random((N_IMG, N_PRI, 2), dtype=np.float32) * 0.8
    wh = 0.05 + rng.random((N_IMG, N_PRI, 2), dtype=np.float32) * 0.15
    boxes = np.concatenate([xy, xy + wh], axis=-1).astype(np.float32)
    raw = rng.random((N_IMG, N_PRI, N_CLS), dtype=np.float32)
    return boxes, (raw / raw.sum(-1, keepdims=True)).astype(np.float32)  # continuous scores: no ties


def test_cap_binds_graph_torch_numpy_identical() -> None:
    import onnxruntime as ort

    # seed-000-like settings (no per-class top-k), a cap far below the ~550 candidates each class has; 3 x 50 < K = 200
    settings = nms_settings(PostprocessSpec(0.05, 0.5, None, 200, 0.0, candidates_per_class=50), N_PRI)
    assert settings.candidates_per_class == 50
    boxes, scores = _inputs()
    assert int((scores[..., 1:] > settings.score_threshold).sum(axis=1).min()) > 10 * 50
    sess = ort.InferenceSession(_nms_graph(settings).SerializeToString(), providers=["CPUExecutionProvider"])
    out = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"in_boxes": boxes, "in_scores": scores})))
    flags = dict(boxes_are_decoded=True, scores_are_probs=True)
    empty = np.zeros((0, 4), np.float32)
    ref_np = postprocess_numpy(boxes, scores, empty, **asdict(settings), **flags)
    ref_t = postprocess(torch.from_numpy(boxes), torch.from_numpy(scores), empty, **asdict(settings), **flags)
    uncapped = postprocess_numpy(boxes, scores, empty, **asdict(replace(settings, candidates_per_class=None)), **flags)
    differs = False
    for i in range(N_IMG):
        n = int(out["num_detections"][i])
        assert n == len(ref_np[i]) == len(ref_t[i]) > 0
        for ref in (ref_np[i].numpy(), ref_t[i].numpy()):
            np.testing.assert_array_equal(out["labels"][i, :n], ref.labels)
            np.testing.assert_allclose(out["boxes"][i, :n], ref.boxes, atol=1e-6, rtol=0)
            np.testing.assert_allclose(out["scores"][i, :n], ref.scores, atol=1e-7, rtol=0)
        u = uncapped[i].numpy()
        differs |= len(u) != n or not np.array_equal(u.labels, out["labels"][i, :n]) or not np.allclose(u.scores, out["scores"][i, :n])
    assert differs  # the cap changed the result: without it the graph would not match the reference settings


def test_nms_settings_per_preset() -> None:
    """seed 000 (no per-class top-k) → 2000; presets with a smaller top-k keep it; out-of-range caps are refused."""
    r50, vgg, small = (get_preset(n) for n in ("ssd300-resnet50", "ssd300-vgg16", "ssd-small"))
    assert r50.postprocess.topk_candidates is None and r50.postprocess.candidates_per_class is None
    assert nms_settings(r50.postprocess, r50.priors.num_priors).candidates_per_class == NMS_CANDIDATES_PER_CLASS == 2000
    assert nms_settings(vgg.postprocess, vgg.priors.num_priors).candidates_per_class == 400
    assert nms_settings(small.postprocess, small.priors.num_priors).candidates_per_class == 200
    assert nms_settings(replace(small.postprocess, topk_candidates=None), 300).candidates_per_class == 300  # k = P
    for bad in (0, 3840, 5000):
        with pytest.raises(ValueError, match="candidates_per_class"):
            nms_settings(replace(r50.postprocess, candidates_per_class=bad), r50.priors.num_priors)
    with pytest.raises(ValueError, match="topk_candidates"):
        nms_settings(replace(r50.postprocess, topk_candidates=0), r50.priors.num_priors)
    with pytest.raises(ValueError, match="max_detections"):
        nms_settings(replace(r50.postprocess, max_detections=4000), r50.priors.num_priors)


def test_export_records_cap_and_lint_passes(tmp_path) -> None:
    """An nms export of ssd-small without a per-class top-k (P = 2390 > 2000) bakes k = 2000 and says so."""
    from ssdtrt.export.onnx_export import export_model
    from ssdtrt.core.manifest import read_manifest
    from ssdtrt.model.ssd import build_model

    torch.manual_seed(0)
    model = build_model("ssd-small").eval()
    settings = replace(model.spec.postprocess, topk_candidates=None)
    res = export_model(model, tmp_path / "n.onnx", mode="nms", batch=1, postprocess=settings)
    pp = read_manifest(res.manifest_path).postprocess
    assert pp["candidates_per_class"] == 2000 and pp["topk_candidates"] is None
    report = lint_onnx(res.onnx_path)
    assert report.ok, [str(i) for i in report.issues]
    assert not [i for i in report.issues if i.op_type == "NonMaxSuppression"]


def test_detector_reproduces_nms_export_with_its_manifest_settings(tmp_path) -> None:
    """A decoded export carrying the nms export's manifest settings (cap 20 per class, binding: 6 x 20 < K = 200)
    gives, through Detector's numpy postprocess, exactly the detections of the nms graph."""
    from ssdtrt.data import open_dataset
    from ssdtrt.export.onnx_export import export_model
    from ssdtrt.model.ssd import build_model
    from ssdtrt.inference.detector import Detector

    torch.manual_seed(3)
    model = build_model("ssd-small").eval()
    settings = replace(model.spec.postprocess, topk_candidates=None, max_detections=200, candidates_per_class=20)
    nms = export_model(model, tmp_path / "n.onnx", mode="nms", dynamic_batch=True, postprocess=settings)
    baked = PostprocessSpec(**nms.manifest.postprocess)
    assert baked.candidates_per_class == 20
    dec = export_model(model, tmp_path / "d.onnx", mode="decoded", dynamic_batch=True, postprocess=baked)
    ds = open_dataset("synthetic", "val", size=6)
    images = [ds[i].image for i in range(6)]
    with Detector(nms.onnx_path) as a, Detector(dec.onnx_path) as b:
        assert b.settings.candidates_per_class == 20
        got, ref = a.detect(images), b.detect(images)
        b.settings = replace(b.settings, candidates_per_class=None)
        uncapped = b.detect(images)
    assert sum(len(d) for d in uncapped) > sum(len(d) for d in got)  # the cap binds
    for g, r in zip(got, ref):
        g, r = g.numpy(), r.numpy()
        assert 0 < len(g) == len(r) <= 6 * 20
        np.testing.assert_array_equal(g.labels, r.labels)
        np.testing.assert_allclose(g.boxes, r.boxes, atol=1e-3, rtol=0)  # pixels
        np.testing.assert_allclose(g.scores, r.scores, atol=1e-6, rtol=0)
